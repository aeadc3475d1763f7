//! What every door shares (REST, GraphQL over HTTP and its socket, the conversation
//! socket, the documentation pages): the bearer token of a request, who the client is,
//! the envelope and refusals every door answers with, the one place internal causes are
//! logged, the WebSocket closing handshake, and the media files behind their signed URLs.
//!
//! The doors depend on this layer and on the core below it; nothing here depends on a
//! door.

pub mod bearer;
pub mod client;
pub mod envelope;
pub mod errors;
pub mod media;
pub mod socket_close;

pub use bearer::bearer;
pub use client::{ClientAddr, ClientIp};
pub use envelope::{RestError, refusal};
