//! The REST facade: `/api/v1` exactly as the spec says, every route mapped onto the
//! GraphQL schema through the declarative table in [`routes`].

pub(crate) mod facade;
pub(crate) mod names;
pub mod openapi;
pub mod routes;
pub(crate) mod schemas;
pub(crate) mod shapes;
