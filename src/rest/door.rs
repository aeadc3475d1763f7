//! The REST door: every `/api/v1` route is one [`Operation`] — a type stating its method,
//! path, status and message, its GraphQL document, the types of its path, query and body,
//! the GraphQL result it reads and the REST object it answers. One generic handler,
//! monomorphised per operation, reads and checks the request, runs the document (parsed
//! and validated once at start-up) on the schema, and writes the envelope. The OpenAPI
//! document is generated from the same types ([`super::openapi`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{InputType, Name, Request, Value as ConstValue};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, RawPathParamsRejection};
use axum::extract::{RawPathParams, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use utoipa::{IntoParams, ToSchema};

use super::input::{Checker, nul_message};
use crate::error::ErrorCode;
use crate::graphql::errors::{code_of, retry_after_of};
use crate::graphql::{AppSchema, RequestAuth};
use crate::http::envelope::{RestError, success};
use crate::http::errors::InternalCauses;

/// What the OpenAPI document says of an operation beyond its types.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Doc {
    pub operation_id: &'static str,
    /// The group it is listed under.
    pub tag: &'static str,
    pub summary: &'static str,
    /// Whether it needs `Authorization: Bearer`.
    pub auth: bool,
}

/// One REST route, mapped onto one GraphQL operation.
pub(crate) trait Operation: Send + Sync + 'static {
    const METHOD: Method;
    const PATH: &'static str;
    /// The success status (`204`: no body).
    const STATUS: StatusCode;
    /// The envelope's `message`.
    const MESSAGE: &'static str;
    const DOC: Doc;
    /// The path parameters.
    type Path: PathParams;
    /// The query string (`NoQuery` refuses any parameter).
    type Query: DeserializeOwned + IntoParams + Variables + Send;
    /// The JSON body (`NoBody`: none is read).
    type Body: Body;
    /// What the document's `data` alias holds.
    type Data: DeserializeOwned;
    /// The REST `data` (`NoContent` for `204`), made of the GraphQL result.
    type Out: Reply + From<Self::Data>;
    /// The GraphQL document; its result sits under the alias `data`. Its variables are
    /// what the path, the query and the body give ([`Variables`]).
    fn document() -> String;
}

/// The GraphQL variables a part of the request gives its document.
pub(crate) trait Variables {
    fn variables(self, out: &mut Vec<(&'static str, ConstValue)>);
}

/// A body is the schema's input object: the variable `$input`.
impl<T: InputType> Variables for T {
    fn variables(self, out: &mut Vec<(&'static str, ConstValue)>) {
        out.push(("input", self.to_value()));
    }
}

/// An optional variable: left out when absent, so the document's default applies.
pub(crate) fn optional<T: InputType>(
    out: &mut Vec<(&'static str, ConstValue)>,
    name: &'static str,
    value: Option<T>,
) {
    if let Some(value) = value {
        out.push((name, value.to_value()));
    }
}

/// A route's path parameters.
pub(crate) trait PathParams: Variables + Sized + Send {
    /// Their names, as in the path.
    const NAMES: &'static [&'static str];
    /// Those of them that are numbers (the others are ids).
    const NUMBERS: &'static [&'static str] = &[];
    fn from_path(raw: Option<&RawPathParams>) -> Result<Self, RestError>;
}

/// No path parameters.
pub(crate) struct NoPath;

impl Variables for NoPath {
    fn variables(self, _: &mut Vec<(&'static str, ConstValue)>) {}
}

impl PathParams for NoPath {
    const NAMES: &'static [&'static str] = &[];
    fn from_path(_: Option<&RawPathParams>) -> Result<NoPath, RestError> {
        Ok(NoPath)
    }
}

/// `{id}`: an object's id (the GraphQL resolver parses it, and refuses what is not a
/// UUID).
pub(crate) struct IdPath {
    pub id: String,
}

impl PathParams for IdPath {
    const NAMES: &'static [&'static str] = &["id"];
    fn from_path(raw: Option<&RawPathParams>) -> Result<IdPath, RestError> {
        let id = raw
            .and_then(|params| params.iter().find(|(name, _)| *name == "id"))
            .map(|(_, value)| value)
            .ok_or_else(|| RestError::code(ErrorCode::ResourceNotFound))?;
        if id.contains('\0') {
            return Err(RestError::validation(nul_message("id")));
        }
        Ok(IdPath { id: id.to_string() })
    }
}

/// `{id}/chapters/{chapter_number}`: a story's id and one of its chapters' numbers.
pub(crate) struct ChapterPath {
    pub id: IdPath,
    pub chapter_number: i32,
}

impl PathParams for ChapterPath {
    const NAMES: &'static [&'static str] = &["id", "chapter_number"];
    const NUMBERS: &'static [&'static str] = &["chapter_number"];
    fn from_path(raw: Option<&RawPathParams>) -> Result<ChapterPath, RestError> {
        let id = IdPath::from_path(raw)?;
        let number = raw
            .and_then(|params| params.iter().find(|(name, _)| *name == "chapter_number"))
            .map(|(_, value)| value)
            .ok_or_else(|| RestError::code(ErrorCode::ResourceNotFound))?;
        let chapter_number = number
            .parse::<i32>()
            .ok()
            .filter(|n| (1..=MAX_CHAPTER_NUMBER).contains(n))
            .ok_or_else(|| {
                RestError::validation(format!(
                    "`chapter_number`은(는) 1~{MAX_CHAPTER_NUMBER} 사이의 정수여야 합니다."
                ))
            })?;
        Ok(ChapterPath { id, chapter_number })
    }
}

/// The most chapters a story has (`long`).
pub(crate) const MAX_CHAPTER_NUMBER: i32 = 7;

/// `$id`, `$chapterNumber`.
impl Variables for ChapterPath {
    fn variables(self, out: &mut Vec<(&'static str, ConstValue)>) {
        self.id.variables(out);
        out.push((
            "chapterNumber",
            ConstValue::Number(self.chapter_number.into()),
        ));
    }
}

/// `$id`.
impl Variables for IdPath {
    fn variables(self, out: &mut Vec<(&'static str, ConstValue)>) {
        out.push(("id", ConstValue::String(self.id)));
    }
}

/// A type's schema as the OpenAPI document publishes it: its component name, and the
/// components it and the types it names need.
pub(crate) struct Published {
    pub name: String,
    pub schemas: Vec<(String, RefOr<Schema>)>,
}

impl Published {
    fn of<T: ToSchema>() -> Published {
        let mut schemas = vec![(T::name().into_owned(), T::schema())];
        T::schemas(&mut schemas);
        Published {
            name: T::name().into_owned(),
            schemas,
        }
    }
}

/// A route's body.
pub(crate) trait Body: Variables + Sized + Send {
    /// The published schema's name and the schemas it needs; `None` reads no body.
    fn schema() -> Option<Published>;
    fn read(
        checker: Option<&Checker>,
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
        max_text: usize,
    ) -> Result<Self, RestError>;
}

/// No body: whatever is sent is not read.
pub(crate) struct NoBody;

impl Variables for NoBody {
    fn variables(self, _: &mut Vec<(&'static str, ConstValue)>) {}
}

impl Body for NoBody {
    fn schema() -> Option<Published> {
        None
    }
    fn read(
        _: Option<&Checker>,
        _: &HeaderMap,
        _: Result<Bytes, BytesRejection>,
        _: usize,
    ) -> Result<NoBody, RestError> {
        Ok(NoBody)
    }
}

impl<T: DeserializeOwned + ToSchema + InputType + Send> Body for T {
    fn schema() -> Option<Published> {
        Some(Published::of::<T>())
    }
    fn read(
        checker: Option<&Checker>,
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
        max_text: usize,
    ) -> Result<T, RestError> {
        checker
            .expect("a body type has its checker")
            .read_body(headers, body, max_text)
    }
}

/// A route's answer.
pub(crate) trait Reply {
    /// The published schema's name and the schemas it needs; `None` for `204`.
    fn schema() -> Option<Published>;
    fn respond(self, status: StatusCode, message: &str) -> Response;
}

/// `204 No Content`.
pub(crate) struct NoContent;

/// A `204` route's document answers `true`.
impl From<bool> for NoContent {
    fn from(_: bool) -> NoContent {
        NoContent
    }
}

impl Reply for NoContent {
    fn schema() -> Option<Published> {
        None
    }
    fn respond(self, status: StatusCode, _: &str) -> Response {
        status.into_response()
    }
}

impl<T: Serialize + ToSchema> Reply for T {
    fn schema() -> Option<Published> {
        Some(Published::of::<T>())
    }
    fn respond(self, status: StatusCode, message: &str) -> Response {
        success(status, message, self)
    }
}

/// Something done for every operation: the router mounts them, the OpenAPI
/// document describes them — from one list ([`super::operations::each`]).
pub(crate) trait Visit {
    fn visit<O: Operation>(&mut self);
}

/// An operation ready to serve: its parsed document and its checkers.
struct Door<O: Operation> {
    document: ExecutableDocument,
    source: String,
    query: Checker,
    body: Option<Checker>,
    max_text: usize,
    _op: std::marker::PhantomData<fn() -> O>,
}

/// Collects the routes by path (axum wants each path once, with all its methods).
struct Mounter<'a> {
    components: &'a Value,
    max_text: usize,
    paths: BTreeMap<&'static str, (MethodRouter<AppSchema>, Vec<String>)>,
}

impl Visit for Mounter<'_> {
    fn visit<O: Operation>(&mut self) {
        let source = O::document();
        let document = async_graphql::parser::parse_query(&source)
            .unwrap_or_else(|e| panic!("route {} {}: {e}", O::METHOD, O::PATH));
        let parameters = super::openapi::query_parameters::<O::Query>();
        let door = Arc::new(Door::<O> {
            document,
            source,
            query: Checker::query(&parameters, self.components),
            body: O::Body::schema().map(|p| Checker::body(&p.name, self.components)),
            max_text: self.max_text,
            _op: std::marker::PhantomData,
        });
        let filter = MethodFilter::try_from(O::METHOD)
            .unwrap_or_else(|e| panic!("route {} {}: {e}", O::METHOD, O::PATH));
        let handler = on(
            filter,
            move |State(schema): State<AppSchema>,
                  path: Result<RawPathParams, _>,
                  RawQuery(query): RawQuery,
                  headers: HeaderMap,
                  body: Result<Bytes, BytesRejection>| {
                let door = door.clone();
                async move {
                    serve(&door, schema, path, query, headers, body)
                        .await
                        .unwrap_or_else(IntoResponse::into_response)
                }
            },
        );
        let (methods, names) = self
            .paths
            .entry(O::PATH)
            .or_insert_with(|| (MethodRouter::new(), Vec::new()));
        *methods = std::mem::take(methods).merge(handler);
        names.push(O::METHOD.to_string());
    }
}

/// The `/api/v1` router. `components` are the OpenAPI document's component schemas, which
/// the checkers validate against. Panics at start-up if a document does not parse (a
/// programming error, caught by every test).
pub(crate) fn router(components: &Value, max_text: usize) -> Router<AppSchema> {
    let mut mounter = Mounter {
        components,
        max_text,
        paths: BTreeMap::new(),
    };
    super::operations::each(&mut mounter);
    let mut router = Router::new();
    for (path, (methods, mut names)) in mounter.paths {
        // axum answers HEAD with the GET route.
        if names.iter().any(|m| m == "GET") {
            names.push("HEAD".into());
        }
        let allow = names.join(", ");
        let methods = methods.fallback(move || {
            let allow = allow.clone();
            async move {
                RestError {
                    allow: Some(allow),
                    ..RestError::code(ErrorCode::MethodNotAllowed)
                }
            }
        });
        router = router.route(path, methods);
    }
    router
}

/// The one handler: read the request in the operation's types, run its document, answer
/// in the envelope with the status derived from `extensions.code`.
async fn serve<O: Operation>(
    door: &Door<O>,
    schema: AppSchema,
    path: Result<RawPathParams, RawPathParamsRejection>,
    query: Option<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RestError> {
    // A path parameter axum cannot read (not UTF-8 once decoded) is a malformed id.
    let path = match path {
        Ok(path) => O::Path::from_path(Some(&path))?,
        Err(_) => return Err(RestError::validation("`id`은(는) UUID여야 합니다.")),
    };
    let query = door.query.read_query::<O::Query>(query.as_deref())?;
    let body = O::Body::read(door.body.as_ref(), &headers, body, door.max_text)?;
    let mut given = Vec::new();
    path.variables(&mut given);
    query.variables(&mut given);
    body.variables(&mut given);
    let mut variables = async_graphql::Variables::default();
    for (name, value) in given {
        variables.insert(Name::new(name), value);
    }
    let auth = RequestAuth::new(crate::http::bearer(&headers));
    let mut request = Request::new(door.source.clone())
        .variables(variables)
        .data(auth);
    request.set_parsed_query(door.document.clone());
    // The operations' own documents: checked when the router was built.
    let response = crate::graphql::execute(&schema, None, request).await;
    if let Some(err) = response.errors.first() {
        // The body and the parameters were checked above in REST's words, so what comes
        // back is the resolvers' own answer (already the catalogue's words).
        let code = code_of(err).unwrap_or(ErrorCode::ServerError);
        return Err(RestError {
            retry_after: retry_after_of(err),
            causes: InternalCauses::of(&response.errors),
            ..RestError::new(code, err.message.clone())
        });
    }
    let data = match response.data {
        ConstValue::Object(mut root) => root.swap_remove("data").unwrap_or(ConstValue::Null),
        _ => ConstValue::Null,
    };
    let data: O::Data = async_graphql::from_value(data).map_err(|e| {
        tracing::error!(error = %e, route = O::PATH, method = %O::METHOD,
            "the GraphQL result does not fit the route's type");
        RestError::code(ErrorCode::ServerError)
    })?;
    Ok(O::Out::from(data).respond(O::STATUS, O::MESSAGE))
}
