//! Domain services: the rules. Every door (REST, GraphQL, WebSocket) reaches data only
//! through here, so authorisation cannot be skipped.

pub mod accounts;
pub mod tokens;

use std::sync::Arc;

use crate::config::Config;
use crate::db::Pool;
use tokens::TokenKeys;

/// Shared handle to the domain services.
#[derive(Clone)]
pub struct Domain {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    keys: TokenKeys,
    config: Config,
}

impl Domain {
    pub fn new(config: Config, pool: Pool) -> Domain {
        Domain {
            inner: Arc::new(Inner {
                keys: TokenKeys::new(&config.jwt_secret),
                pool,
                config,
            }),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn keys(&self) -> &TokenKeys {
        &self.inner.keys
    }
}

/// Counts Unicode scalar values, the unit of every text limit in the contract.
pub fn char_len(s: &str) -> usize {
    s.chars().count()
}
