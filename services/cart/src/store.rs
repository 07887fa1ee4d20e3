//! Where carts live: one trait, two stores. [`embedded::EmbeddedStore`] (redb, a file under the
//! data directory, no server) is the default; [`redis::RedisStore`] serves several cart replicas
//! from one Redis. Every store makes each change atomic, so concurrent updates to one cart never
//! lose an increment, and forgets carts idle for longer than the configured time.

pub mod embedded;
pub mod redis;

use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::domain::{Cart, Change, LimitError, Limits};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The change would break a limit; nothing changed.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The store failed.
    #[error("cart store failure")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Wraps a backend failure.
    pub fn backend(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Backend(error.into())
    }
}

/// A key-value store of carts.
pub trait CartStore: Send + Sync + std::fmt::Debug {
    /// The cart `id`, if it exists and has not expired.
    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Cart>, StoreError>>;

    /// Applies `change` to cart `id` (creating it) atomically; renews its idle time.
    fn update<'a>(
        &'a self,
        id: &'a str,
        change: &'a Change,
        limits: Limits,
    ) -> BoxFuture<'a, Result<Cart, StoreError>>;

    /// Moves cart `from` into cart `into` atomically (see [`Cart::merge`]) and deletes `from`.
    fn merge<'a>(
        &'a self,
        from: &'a str,
        into: &'a str,
        limits: Limits,
    ) -> BoxFuture<'a, Result<Cart, StoreError>>;

    /// Deletes cart `id`.
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Deletes carts idle for longer than the store's time to live; returns how many. Stores
    /// that expire keys themselves (Redis) do nothing.
    fn purge_expired(&self) -> BoxFuture<'_, Result<usize, StoreError>>;
}

/// How long an idle cart lives, in milliseconds, for stores that keep times.
pub fn ttl_millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}
