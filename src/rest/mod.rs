//! The REST facade: `/api/v1` exactly as the spec says, every route one typed
//! [`door::Operation`] mapped onto the GraphQL schema ([`operations`]).

pub(crate) mod door;
pub(crate) mod input;
pub mod openapi;
pub(crate) mod operations;
pub(crate) mod selection;
pub(crate) mod types;

/// The GraphQL document of `GET /api/v1/stories` (the load benchmark sends it to
/// `/graphql` to compare the two doors on the same work).
pub fn story_page_document() -> String {
    <operations::ListStories as door::Operation>::document()
}
