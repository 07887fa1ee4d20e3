//! Rate limiting: a token bucket per route and caller (the user when signed in, the client
//! address otherwise). A bucket holds `burst` tokens and refills at `requests` per `per`; a
//! request takes one token or is refused with 429.
//!
//! The arithmetic is [`take`], with no I/O; [`LocalStore`] keeps buckets in this process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A route's limit, as configured (`rate_limit = { requests = 60, per = "1m", burst = 10 }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitConfig {
    /// Requests allowed per `per`, on average.
    pub requests: u32,
    /// The period of `requests`.
    #[serde(with = "humantime_serde")]
    pub per: Duration,
    /// Requests allowed at once after a quiet spell; `requests` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// A checked limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Tokens a full bucket holds.
    pub capacity: u32,
    /// Time to earn one token, in milliseconds (fractional).
    pub refill_ms: f64,
}

impl Limit {
    /// Checks a configured limit; the error says what is wrong.
    pub fn new(config: &RateLimitConfig) -> Result<Self, String> {
        if config.requests == 0 {
            return Err("requests must be at least 1".into());
        }
        if config.per < Duration::from_millis(1) {
            return Err("per must be at least 1ms".into());
        }
        let capacity = config.burst.unwrap_or(config.requests);
        if capacity == 0 {
            return Err("burst must be at least 1".into());
        }
        Ok(Self {
            capacity,
            refill_ms: config.per.as_secs_f64() * 1000.0 / f64::from(config.requests),
        })
    }
}

/// A bucket: tokens left, as of a time (ms).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Tokens, fractional.
    pub tokens: f64,
    /// When `tokens` was true, ms.
    pub at: i64,
}

/// What a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether it may pass.
    pub allowed: bool,
    /// The bucket's capacity (`RateLimit-Limit`).
    pub limit: u32,
    /// Whole tokens left after this request (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Until the bucket is full again (`RateLimit-Reset`).
    pub reset: Duration,
    /// Until the next token, for a refused request (`Retry-After`).
    pub retry_after: Duration,
}

/// Takes a token from `bucket` (a new, full one when `None`) at `now` (ms): the bucket after,
/// and the decision.
pub fn take(bucket: Option<Bucket>, limit: &Limit, now: i64) -> (Bucket, Decision) {
    let capacity = f64::from(limit.capacity);
    let tokens = match bucket {
        None => capacity,
        Some(b) => {
            let elapsed = (now - b.at).max(0) as f64;
            (b.tokens + elapsed / limit.refill_ms).min(capacity)
        }
    };
    let allowed = tokens >= 1.0;
    let left = if allowed { tokens - 1.0 } else { tokens };
    (
        Bucket {
            tokens: left,
            at: now,
        },
        decide(allowed, left, limit),
    )
}

/// The decision for a request that was `allowed` and left `left` tokens in its bucket.
pub fn decide(allowed: bool, left: f64, limit: &Limit) -> Decision {
    let capacity = f64::from(limit.capacity);
    let millis = |ms: f64| Duration::from_millis(ms.max(0.0).ceil() as u64);
    Decision {
        allowed,
        limit: limit.capacity,
        remaining: left.floor() as u32,
        reset: millis((capacity - left) * limit.refill_ms),
        retry_after: if allowed {
            Duration::ZERO
        } else {
            millis((1.0 - left) * limit.refill_ms)
        },
    }
}

/// Most buckets kept before full ones are forgotten (a full bucket is the same as none).
const MAX_BUCKETS: usize = 100_000;

/// Buckets in this process.
#[derive(Debug, Default)]
pub struct LocalStore {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl LocalStore {
    /// Takes a token for `key`.
    pub fn take(&self, key: &str, limit: &Limit, now: i64) -> Decision {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            let capacity = f64::from(limit.capacity);
            buckets.retain(|_, b| {
                let refilled = b.tokens + (now - b.at).max(0) as f64 / limit.refill_ms;
                refilled < capacity
            });
        }
        if let Some(bucket) = buckets.get_mut(key) {
            let (next, decision) = take(Some(*bucket), limit, now);
            *bucket = next;
            return decision;
        }
        let (bucket, decision) = take(None, limit, now);
        buckets.insert(key.to_owned(), bucket);
        decision
    }
}

/// The token bucket in Redis, atomic for every gateway sharing it: refill by the server's
/// clock, take a token if there is one, and let the key expire once the bucket would be full
/// anyway. Returns `{allowed (0 or 1), tokens left}`.
const TAKE: &str = r"
local capacity = tonumber(ARGV[1])
local refill_ms = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = capacity
if bucket[1] then
  tokens = math.min(capacity, tonumber(bucket[1]) + math.max(0, now - tonumber(bucket[2])) / refill_ms)
end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) * refill_ms) + 1000)
return {allowed, tostring(tokens)}
";

/// Buckets in Redis, shared by every gateway that uses the same server and prefix.
pub struct RedisStore {
    client: redis::Client,
    /// Made on first use, so a gateway starts while Redis is down.
    connection: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    prefix: String,
    script: redis::Script,
    /// This gateway's own buckets: every check takes a token here too, so they are current
    /// when Redis does not answer in time ([`OnStoreError::Local`]).
    own: LocalStore,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The store at `url` (checked now, connected on first use); keys start with `prefix`.
    pub fn new(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            connection: tokio::sync::OnceCell::new(),
            prefix: prefix.to_owned(),
            script: redis::Script::new(TAKE),
            own: LocalStore::default(),
        })
    }

    /// The connection, made on first use (or by [`RedisStore::connect`]).
    async fn connection(&self) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
        let connection = self
            .connection
            .get_or_try_init(|| {
                // Fail fast: a rate-limit check must never hold a request up for long.
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_millis(250)))
                    .set_response_timeout(Some(Duration::from_millis(250)))
                    .set_number_of_retries(1);
                redis::aio::ConnectionManager::new_with_config(self.client.clone(), config)
            })
            .await?;
        Ok(connection.clone())
    }

    /// Connects now, so the first burst of requests does not also wait for the connection
    /// (and fail open together if making it is slow).
    pub async fn connect(&self) -> Result<(), redis::RedisError> {
        self.connection().await.map(drop)
    }

    /// Takes a token for `key`.
    pub async fn take(&self, key: &str, limit: &Limit) -> Result<Decision, redis::RedisError> {
        let mut connection = self.connection().await?;
        let (allowed, left): (i64, String) = self
            .script
            .key(format!("{}{key}", self.prefix))
            .arg(limit.capacity)
            .arg(limit.refill_ms)
            .invoke_async(&mut connection)
            .await?;
        let left: f64 = left.parse().unwrap_or(0.0);
        Ok(decide(allowed == 1, left, limit))
    }
}

/// What to do when the shared store cannot be asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreError {
    /// Decide with this gateway's own buckets (the default): the limit still holds, per
    /// gateway instead of across them, and an outage of Redis is not an outage of the shop.
    #[default]
    Local,
    /// Let the request through.
    Open,
    /// Refuse it with 503.
    Closed,
}

/// Where buckets live.
#[derive(Debug)]
pub enum Limiter {
    /// In this process.
    Local(LocalStore),
    /// In Redis, shared, with what to do when it fails.
    Redis(Box<RedisStore>, OnStoreError),
}

/// The shared store did not answer a check.
#[derive(Debug, thiserror::Error)]
#[error("the rate-limit store did not answer")]
pub struct StoreFailure {
    /// Why.
    #[source]
    pub error: redis::RedisError,
    /// What this gateway's own bucket decided.
    pub own: Decision,
}

impl Limiter {
    /// Takes a token for `key`.
    pub async fn take(&self, key: &str, limit: &Limit, now: i64) -> Result<Decision, StoreFailure> {
        match self {
            Self::Local(store) => Ok(store.take(key, limit, now)),
            Self::Redis(store, _) => {
                let own = store.own.take(key, limit, now);
                // Boxed, so the local store's callers do not carry the Redis call's future.
                Box::pin(store.take(key, limit))
                    .await
                    .map_err(|error| StoreFailure { error, own })
            }
        }
    }

    /// Connects to the shared store, if there is one; a store that is down is not an error
    /// here (each check tries again).
    pub async fn connect(&self) {
        if let Self::Redis(store, _) = self
            && let Err(error) = store.connect().await
        {
            tracing::warn!(
                error = %chassis::error::ErrorChain(&error),
                "the rate-limit store is not reachable yet"
            );
        }
    }

    /// What to do when the store fails.
    pub fn on_error(&self) -> OnStoreError {
        match self {
            Self::Local(_) => OnStoreError::Local,
            Self::Redis(_, policy) => *policy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests: u32, per_ms: u64, burst: Option<u32>) -> Limit {
        Limit::new(&RateLimitConfig {
            requests,
            per: Duration::from_millis(per_ms),
            burst,
        })
        .expect("valid")
    }

    #[test]
    fn a_full_bucket_allows_its_burst_then_refuses() {
        let l = limit(10, 1000, Some(3));
        let mut bucket = None;
        let mut allowed = Vec::new();
        for _ in 0..4 {
            let (b, d) = take(bucket, &l, 0);
            bucket = Some(b);
            allowed.push((d.allowed, d.remaining));
        }
        assert_eq!(allowed, [(true, 2), (true, 1), (true, 0), (false, 0)]);
        let (_, refused) = take(bucket, &l, 0);
        assert_eq!(
            refused.retry_after,
            Duration::from_millis(100),
            "one token per 100 ms"
        );
        assert_eq!(refused.reset, Duration::from_millis(300));
    }

    #[test]
    fn tokens_come_back_at_the_rate_and_never_beyond_capacity() {
        let l = limit(10, 1000, Some(3));
        let (b, _) = take(None, &l, 0);
        let (b, _) = take(Some(b), &l, 0);
        let (b, _) = take(Some(b), &l, 0);
        let (_, d) = take(Some(b), &l, 250);
        assert!(d.allowed, "2.5 tokens came back in 250 ms");
        assert_eq!(d.remaining, 1);
        let (_, d) = take(Some(b), &l, 60_000);
        assert_eq!(d.remaining, 2, "capped at capacity, minus this request");
    }

    #[test]
    fn configurations_are_checked() {
        let bad = |requests, per_ms, burst| {
            Limit::new(&RateLimitConfig {
                requests,
                per: Duration::from_millis(per_ms),
                burst,
            })
            .is_err()
        };
        assert!(bad(0, 1000, None));
        assert!(bad(1, 0, None));
        assert!(bad(1, 1000, Some(0)));
        assert_eq!(limit(60, 60_000, None).capacity, 60);
    }

    #[test]
    fn the_local_store_keeps_one_bucket_per_key() {
        let store = LocalStore::default();
        let l = limit(1, 60_000, None);
        assert!(store.take("a", &l, 0).allowed);
        assert!(!store.take("a", &l, 1).allowed);
        assert!(
            store.take("b", &l, 1).allowed,
            "another caller has its own bucket"
        );
    }

    #[tokio::test]
    async fn a_store_that_is_down_at_start_is_tried_again_at_each_check() {
        let address = chassis::testing::dead_address();
        let store = RedisStore::new(&format!("redis://{address}"), "test:").expect("a Redis URL");
        assert!(store.connect().await.is_err(), "nothing listens there");
        let limiter = Limiter::Redis(Box::new(store), OnStoreError::Open);
        let one_a_second = limit(1, 1000, None);
        // Not an error for the gateway's start: it logs, and each check tries again.
        limiter.connect().await;
        assert!(limiter.take("a", &one_a_second, 0).await.is_err());
        // Something listens there now (and never answers): the next check connects to it.
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .expect("binds again");
        let (check, accepted) =
            tokio::join!(limiter.take("a", &one_a_second, 0), listener.accept());
        assert!(accepted.is_ok(), "the check connected");
        assert!(check.is_err(), "and got no answer in time");
    }

    #[tokio::test]
    #[ignore = "needs Redis at 127.0.0.1:6379"]
    async fn the_gateways_own_buckets_follow_the_checks_redis_answers() {
        let prefix = format!("test:{}:", std::process::id());
        let store = RedisStore::new("redis://127.0.0.1:6379", &prefix).expect("a Redis URL");
        let limiter = Limiter::Redis(Box::new(store), OnStoreError::Local);
        let three = limit(3, 3_600_000, None);
        let key = format!("own-{}", chassis::db::now_millis());
        for _ in 0..3 {
            let decision = limiter.take(&key, &three, 0).await.expect("Redis answers");
            assert!(decision.allowed);
        }
        let Limiter::Redis(store, _) = &limiter else {
            unreachable!("made above")
        };
        assert!(
            !store.own.take(&key, &three, 0).allowed,
            "a check Redis failed now would be refused here too"
        );
        let client = redis::Client::open("redis://127.0.0.1:6379").expect("a Redis URL");
        let mut redis = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis answers");
        let _: i64 = redis::cmd("DEL")
            .arg(format!("{prefix}{key}"))
            .query_async(&mut redis)
            .await
            .expect("deleted");
    }
}
