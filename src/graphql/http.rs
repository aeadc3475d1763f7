//! GraphQL over HTTP at `/graphql`: POST (any operation), GET (queries only), and a
//! GraphiQL page for browsers. Status follows GraphQL-over-HTTP for
//! `application/json`: 200 once execution happened, 400 when the request could not be
//! parsed or validated.

use async_graphql::parser::types::OperationType;
use async_graphql::{Request, Response, ServerError};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse};
use serde::Deserialize;

use super::limits::DocumentLimits;
use super::{AppSchema, RequestAuth};
use crate::domain::Domain;
use crate::error::ErrorCode;
use crate::http::errors::InternalCauses;

fn auth_of(headers: &HeaderMap) -> RequestAuth {
    RequestAuth::new(crate::http::bearer(headers))
}

fn error_response(status: StatusCode, code: ErrorCode, message: &str) -> axum::response::Response {
    let body = serde_json::json!({
        "errors": [{"message": message, "extensions": {"code": code.as_str()}}]
    });
    (status, axum::Json(body)).into_response()
}

/// A request that failed before execution (it did not parse, validate or pass a limit)
/// is `400` with `errors` only: the GraphQL-over-HTTP spec has no `data` entry then
/// (`"data": null` would claim execution ran and yielded null).
/// Internal causes of the errors go to the log (`http::errors`), never into the body.
fn respond(mut response: Response) -> axum::response::Response {
    super::errors::graphql_words(&mut response.errors);
    let causes = InternalCauses::of(&response.errors);
    let mut answer = if super::errors::is_request_error(&response) {
        let body = serde_json::json!({"errors": response.errors});
        (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
    } else {
        (StatusCode::OK, axum::Json(response)).into_response()
    };
    causes.attach(&mut answer);
    answer
}

/// The request's auth, with the viewer resolved up front so operator-only fields are
/// visible to operators in introspection.
async fn prepared_auth(domain: &Domain, headers: &HeaderMap) -> RequestAuth {
    let auth = auth_of(headers);
    auth.preload(domain).await;
    auth
}

pub(crate) async fn post(
    State(schema): State<AppSchema>,
    Extension(domain): Extension<Domain>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> axum::response::Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                ErrorCode::PayloadTooLarge.default_message(),
            );
        }
        Err(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::ValidationError,
                "the request body could not be read",
            );
        }
    };
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim();
            m.eq_ignore_ascii_case("application/json")
                || m.eq_ignore_ascii_case("application/graphql-response+json")
        });
    if !is_json {
        return error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::ValidationError,
            "Content-Type must be application/json",
        );
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::ValidationError,
            "batched requests (a JSON array) are not supported: send one operation per \
             request, or use /graphql/ws for many",
        );
    }
    let request: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::ValidationError,
                &format!("request body is not a GraphQL request: {e}"),
            );
        }
    };
    let auth = prepared_auth(&domain, &headers).await;
    let limits = DocumentLimits::from_config(&domain.config().graphql);
    respond(super::execute(&schema, Some(&limits), request.data(auth)).await)
}

#[derive(Deserialize)]
pub(crate) struct GetParams {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
}

pub(crate) async fn get(
    State(schema): State<AppSchema>,
    Extension(domain): Extension<Domain>,
    headers: HeaderMap,
    params: Result<Query<GetParams>, QueryRejection>,
) -> axum::response::Response {
    let mut request = match get_request(&headers, params) {
        Ok(request) => request,
        Err(refused) => return *refused,
    };
    // Admitted here (scanned, parsed, checked): deciding "query or not" needs the document.
    let limits = DocumentLimits::from_config(&domain.config().graphql);
    if let Err(refused) = limits.admit(&mut request) {
        return respond(super::refusal(refused));
    }
    // GET is for queries only: a mutation must not ride on a link or an <img>.
    if let Err(refused) = queries_only(&mut request) {
        return *refused;
    }
    let auth = prepared_auth(&domain, &headers).await;
    // Admitted above.
    respond(super::execute(&schema, None, request.data(auth)).await)
}

/// The answer refusing a request (boxed: a response is large to return by value).
type Refusal = Box<axum::response::Response>;

/// The request a `GET /graphql` carries in its query string (GraphiQL's page for a
/// browser that asks for none), or the answer refusing it.
fn get_request(
    headers: &HeaderMap,
    params: Result<Query<GetParams>, QueryRejection>,
) -> Result<Request, Refusal> {
    let Ok(Query(params)) = params else {
        return Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::ValidationError,
            "malformed query string",
        )));
    };
    let GetParams {
        query: Some(query),
        operation_name,
        variables,
    } = params
    else {
        let wants_html = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
        if wants_html {
            return Err(Box::new(
                (
                    [(header::CONTENT_SECURITY_POLICY, crate::docs::PAGE_CSP)],
                    Html(crate::docs::GRAPHIQL_PAGE),
                )
                    .into_response(),
            ));
        }
        return Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::ValidationError,
            "GET /graphql needs a `query` parameter",
        )));
    };
    if !preflighted(headers) {
        return Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::ValidationError,
            "GET /graphql needs a `GraphQL-Require-Preflight: 1` header (or a JSON Content-Type), \
             so that no other site can send it from a browser; or use POST",
        )));
    }
    let mut request = Request::new(query);
    if let Some(name) = operation_name {
        request = request.operation_name(name);
    }
    if let Some(vars) = variables {
        match serde_json::from_str(&vars) {
            Ok(v) => request = request.variables(async_graphql::Variables::from_json(v)),
            Err(_) => {
                return Err(Box::new(error_response(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::ValidationError,
                    "`variables` must be a JSON object",
                )));
            }
        }
    }
    Ok(request)
}

/// Refuses a GET whose operation is not a query (405) or cannot be told (400).
fn queries_only(request: &mut Request) -> Result<(), Refusal> {
    match only_queries(request) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Box::new(
            (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, "POST")],
                axum::Json(serde_json::json!({
                    "errors": [{"message": "only queries may be sent with GET; use POST",
                        "extensions": {"code": ErrorCode::MethodNotAllowed.as_str()}}]
                })),
            )
                .into_response(),
        )),
        Err(e) => {
            let mut response = Response::from_errors(vec![e]);
            response.errors[0]
                .extensions
                .get_or_insert_with(Default::default)
                .set("code", ErrorCode::ValidationError.as_str());
            Err(Box::new(respond(response)))
        }
    }
}

/// CSRF protection for GET: a browser sends a cross-site GET without asking first only
/// with "simple" headers, so a custom header (or a non-simple `Content-Type`) proves the
/// request passed CORS. (POST already insists on a JSON body.)
fn preflighted(headers: &HeaderMap) -> bool {
    let custom = [
        "graphql-require-preflight",
        "apollo-require-preflight",
        "x-apollo-operation-name",
    ]
    .iter()
    .any(|name| headers.get(*name).is_some_and(|v| !v.is_empty()));
    let non_simple_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| {
            !matches!(
                m.as_str(),
                "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
            )
        });
    custom || non_simple_type
}

/// Whether the operation the request selects is a query.
fn only_queries(request: &mut Request) -> Result<bool, ServerError> {
    let name = request.operation_name.clone();
    let doc = request.parsed_query()?;
    let ty = match name {
        Some(name) => doc
            .operations
            .iter()
            .find(|(n, _)| n.map(|n| n.as_str()) == Some(name.as_str()))
            .map(|(_, op)| op.node.ty),
        None => doc.operations.iter().next().map(|(_, op)| op.node.ty),
    };
    Ok(ty.is_none_or(|t| t == OperationType::Query))
}
