//! Integration tests: the real server on port 0, real HTTP, a fresh database per test.

mod accounts;
mod cli;
mod conversation_ws;
mod docs;
mod export;
mod facade;
mod fakes;
mod fuzz;
mod gateway;
mod generation;
mod graphql;
mod graphql_limits;
mod helpers;
mod media;
mod migrations;
mod ops;
mod pagination;
mod providers;
mod reliability;
mod retention;
mod sockets;
mod stack_limit;
mod stories;
mod subscriptions;
mod tokens;
mod turns;
