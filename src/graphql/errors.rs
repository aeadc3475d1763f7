//! Domain errors → GraphQL errors with `extensions.code`, and every other error (parse,
//! validation, input coercion) given a code too.

use std::sync::Arc;

use async_graphql::{ErrorExtensionValues, Response, Value};

use crate::error::{AppError, ErrorCode};

/// The public part becomes the message and extensions; an internal cause rides along as
/// the error's `source` (never serialised) to the door that logs it (`http::errors`).
impl From<AppError> for async_graphql::Error {
    fn from(e: AppError) -> async_graphql::Error {
        let public = e.into_public();
        let mut err = async_graphql::Error::new(public.message);
        if let Some(cause) = public.cause {
            err.source = Some(Arc::new(cause));
        }
        let ext = err
            .extensions
            .get_or_insert_with(ErrorExtensionValues::default);
        ext.set("code", public.code.as_str());
        if let Some(secs) = public.retry_after {
            ext.set("retryAfter", secs);
        }
        err
    }
}

/// The code of a GraphQL error, if it has one we know.
pub(crate) fn code_of(err: &async_graphql::ServerError) -> Option<ErrorCode> {
    match err.extensions.as_ref()?.get("code")? {
        Value::String(s) => ErrorCode::parse(s),
        _ => None,
    }
}

/// The `retryAfter` extension of a rate-limit error, in seconds.
pub(crate) fn retry_after_of(err: &async_graphql::ServerError) -> Option<u64> {
    match err.extensions.as_ref()?.get("retryAfter")? {
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// The GraphQL door's own words in its error messages: the rules' messages name fields
/// as REST does (`conversation_id`, `start_cursor`, `story_id`, `user_preferences.theme`);
/// here they are the arguments and fields GraphQL has (`conversationId`, `after`, `id`,
/// `userPreferences.theme`). The REST door keeps the messages as they are.
pub(crate) fn graphql_words(errors: &mut [async_graphql::ServerError]) {
    for err in errors {
        err.message = graphql_message(&err.message);
    }
}

fn graphql_message(message: &str) -> String {
    let message = message
        .replace("start_cursor", "`after`")
        .replace("status/sort_by/order", "status/sortBy/order");
    // Every backticked snake_case path becomes camelCase.
    let mut out = String::with_capacity(message.len());
    for (i, piece) in message.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        let is_path = i % 2 == 1
            && piece.contains('_')
            && piece
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.[]".contains(c));
        if is_path {
            let mut upper = false;
            for c in piece.chars() {
                match c {
                    '_' => upper = true,
                    c if upper => {
                        out.push(c.to_ascii_uppercase());
                        upper = false;
                    }
                    c => out.push(c),
                }
            }
        } else {
            out.push_str(piece);
        }
    }
    out
}

/// A parse error as the client reads it: where, and what was expected — not the
/// parser's drawing of the line (` --> 1:18 | … ^--- = expected value`).
fn parse_message(message: &str) -> Option<String> {
    let rest = message.trim_start().strip_prefix("--> ")?;
    let position = rest.split_whitespace().next()?;
    let (line, column) = position.split_once(':')?;
    let expected = message
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("= "))
        .unwrap_or("unexpected input");
    Some(format!(
        "GraphQL 문서를 읽을 수 없습니다 ({line}번째 줄, {column}번째 칸): {expected}"
    ))
}

/// Gives every error without a code `VALIDATION_ERROR`: errors the resolvers did not raise
/// (the document failed to parse or validate, or an argument could not be coerced) are the
/// client's. [`super::execute`] and [`super::execute_stream`] apply it to every response.
pub(crate) fn ensure_codes(errors: &mut [async_graphql::ServerError]) {
    for err in errors {
        if let Some(short) = parse_message(&err.message) {
            err.message = short;
        }
        if code_of(err).is_none() {
            err.extensions
                .get_or_insert_with(ErrorExtensionValues::default)
                .set("code", ErrorCode::ValidationError.as_str());
        }
    }
}

/// True when the request never executed (it could not be parsed or validated): every
/// error is positionless and there is no data. GraphQL-over-HTTP answers these with 400.
pub(crate) fn is_request_error(response: &Response) -> bool {
    !response.errors.is_empty()
        && matches!(response.data, Value::Null)
        && response.errors.iter().all(|e| e.path.is_empty())
}

#[cfg(test)]
mod words {
    #[test]
    fn graphql_speaks_its_own_names() {
        use super::graphql_message as g;
        assert_eq!(
            g("`story_id`은(는) UUID여야 합니다."),
            "`storyId`은(는) UUID여야 합니다."
        );
        assert_eq!(
            g("`conversation_id`은(는) UUID여야 합니다."),
            "`conversationId`은(는) UUID여야 합니다."
        );
        assert_eq!(
            g("start_cursor가 올바르지 않습니다."),
            "`after`가 올바르지 않습니다."
        );
        assert_eq!(
            g("`user_preferences.theme`은(는) 1~200자"),
            "`userPreferences.theme`은(는) 1~200자"
        );
        assert_eq!(g("`first`는 1~100"), "`first`는 1~100");
        let parsed = super::parse_message(" --> 1:18\n  |\n1 | { stories(first: }\n  |                  ^---\n  |\n  = expected value").unwrap();
        assert_eq!(
            parsed,
            "GraphQL 문서를 읽을 수 없습니다 (1번째 줄, 18번째 칸): expected value"
        );
        assert!(super::parse_message("필수 필드").is_none());
    }
}
