//! Jjongal (쫑알쫑알): interactive, AI-written children's stories.
//!
//! One service with three doors onto one core: the REST facade (`rest`), the
//! conversation WebSocket, and GraphQL (`graphql`), where behaviour lives; the rules are
//! in `domain`, storage in `store`.

pub mod app;
pub mod body_guard;
pub mod config;
pub mod docs;
pub mod domain;
pub mod error;
pub mod events;
pub mod gateway;
pub mod graphql;
pub mod http;
pub mod jobs;
pub mod media;
pub mod metrics;
pub mod providers;
pub mod rest;
pub mod server;
pub mod shutdown;
pub mod stack_limit;
pub mod store;
pub mod talk;
pub mod tally;
pub mod telemetry;
pub mod vocabulary;
pub mod ws;
