//! What every door shares (REST, GraphQL over HTTP and its socket, the conversation
//! socket, the documentation pages): the bearer token of a request, who the client is,
//! the envelope and refusals every door answers with, the one place internal causes are
//! logged, the WebSocket closing handshake, and the media files behind their signed URLs.
//!
//! The doors depend on this layer and on the core below it; nothing here depends on a
//! door.

pub(crate) mod bearer;
pub(crate) mod book;
pub(crate) mod client;
pub(crate) mod envelope;
pub(crate) mod errors;
pub(crate) mod export;
pub(crate) mod media;
pub(crate) mod socket_close;
pub(crate) mod socket_writer;

pub(crate) use bearer::bearer;
pub(crate) use client::{ClientAddr, ClientIp};
pub(crate) use envelope::{RestError, refusal};
