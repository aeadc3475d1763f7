//! `GET /api/v1/stories/{id}/book.epub`: a completed story as an EPUB 3 picture book
//! ([`crate::domain::book`]), streamed as `application/epub+zip`. The caller is the
//! bearer token's account, or a `ticket` from GraphQL `prepareBook` (a URL a reading
//! app can open); only the story's owner gets it; failures are the REST envelope.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::bearer::bearer;
use super::envelope::RestError;
use crate::domain::Domain;
use crate::error::AppError;
use crate::vocabulary::{StoryId, parse_id};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BookQuery {
    ticket: Option<String>,
}

pub(crate) async fn book(
    State(domain): State<Domain>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<BookQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match start(&domain, &id, &headers, query).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn start(
    domain: &Domain,
    id: &str,
    headers: &HeaderMap,
    query: Result<Query<BookQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, RestError> {
    let Ok(Query(query)) = query else {
        return Err(RestError::validation(
            "알 수 없는 쿼리 파라미터입니다 (ticket만 받습니다).",
        ));
    };
    let id: StoryId = parse_id("id", id)?;
    let viewer = match (&query.ticket, bearer(headers)) {
        (Some(ticket), _) => {
            let owner = domain.books().ticket_owner(ticket, id)?;
            domain
                .accounts()
                .find_user(owner)
                .await?
                .ok_or_else(AppError::invalid_token)?
        }
        (None, token) => domain.accounts().authenticate(token.as_deref()).await?,
    };
    let story = domain.books().story(&viewer, id).await?;
    let name = format!("attachment; filename=\"jjongal-{}.epub\"", story.id);
    let mut response = Body::from_stream(domain.books().book(story)).into_response();
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/epub+zip"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
