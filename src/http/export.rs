//! `GET /api/v1/users/me/export`: the guardian's archive of the family's data
//! ([`crate::domain::export`]), streamed as `application/x-tar`. The caller is the
//! bearer token's account, or a `ticket` from GraphQL `prepareExport` (a URL a browser
//! can open); failures are the REST envelope.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::bearer::bearer;
use super::envelope::RestError;
use crate::domain::Domain;
use crate::error::AppError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportQuery {
    ticket: Option<String>,
}

pub(crate) async fn export(
    State(domain): State<Domain>,
    headers: HeaderMap,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match start(&domain, &headers, query).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn start(
    domain: &Domain,
    headers: &HeaderMap,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, RestError> {
    let Ok(Query(query)) = query else {
        return Err(RestError::validation(
            "알 수 없는 쿼리 파라미터입니다 (ticket만 받습니다).",
        ));
    };
    let owner = match (&query.ticket, bearer(headers)) {
        (Some(ticket), _) => {
            let id = domain.exports().ticket_owner(ticket)?;
            domain
                .accounts()
                .find_user(id)
                .await?
                .ok_or_else(AppError::invalid_token)?
        }
        (None, token) => domain.accounts().authenticate(token.as_deref()).await?,
    };
    domain.exports().begin(&owner).await?;
    let name = format!(
        "attachment; filename=\"jjongal-export-{}.tar\"",
        crate::store::now().format("%Y%m%d")
    );
    let mut response = Body::from_stream(domain.exports().archive(owner)).into_response();
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
