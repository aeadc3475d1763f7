//! The REST facade: `/api/v1` exactly as the spec says, every route mapped onto the
//! GraphQL schema through the declarative table in [`routes`].

pub mod facade;
pub mod names;
pub mod openapi;
pub mod routes;
pub mod schemas;
pub mod shapes;
