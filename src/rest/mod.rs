//! The REST facade: `/api/v1` exactly as the spec says, every route mapped onto the
//! GraphQL schema through the declarative table in [`routes`].

pub mod envelope;
pub mod facade;
pub mod openapi;
pub mod routes;
pub mod schemas;
pub mod shapes;

pub use envelope::RestError;
