//! Carts in Redis, for several cart replicas: one hash per cart (`sku` → quantity) that Redis
//! expires after the idle time. Each change is one Lua script, which Redis runs atomically, so
//! concurrent changes to one cart never lose an increment. The scripts apply the rules of
//! [`Cart::apply`] and [`Cart::merge`]; the conformance tests run against both stores.

use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::Script;
use redis::aio::ConnectionManager;

use super::{CartStore, StoreError, ttl_millis};
use crate::domain::{Cart, Change, LimitError, Limits};

/// KEYS[1]: the cart. ARGV: op (add, set, remove), sku, quantity, max lines, max units, ttl ms.
const UPDATE: &str = r"
local key, op, sku = KEYS[1], ARGV[1], ARGV[2]
local n, max_lines, max_units, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local current = tonumber(redis.call('HGET', key, sku) or '0')
local q = n
if op == 'remove' then q = 0 elseif op == 'add' then q = current + n end
if q == 0 then
  redis.call('HDEL', key, sku)
else
  if q > max_units then return redis.error_reply('CARTLIMIT UNITS') end
  if current == 0 and redis.call('HLEN', key) >= max_lines then return redis.error_reply('CARTLIMIT LINES') end
  redis.call('HSET', key, sku, q)
end
if redis.call('EXISTS', key) == 1 then redis.call('PEXPIRE', key, ttl) end
return redis.call('HGETALL', key)
";

/// KEYS[1]: from, KEYS[2]: into. ARGV: max lines, max units, ttl ms. Lines are taken in sku
/// order, as `Cart::merge` does, so both stores drop the same lines when the cart is full.
const MERGE: &str = r"
local max_lines, max_units, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local flat = redis.call('HGETALL', KEYS[1])
local skus, quantities = {}, {}
for i = 1, #flat, 2 do
  table.insert(skus, flat[i])
  quantities[flat[i]] = tonumber(flat[i + 1])
end
table.sort(skus)
for _, sku in ipairs(skus) do
  local current = tonumber(redis.call('HGET', KEYS[2], sku) or '0')
  if current > 0 then
    redis.call('HSET', KEYS[2], sku, math.min(current + quantities[sku], max_units))
  elseif redis.call('HLEN', KEYS[2]) < max_lines then
    redis.call('HSET', KEYS[2], sku, math.min(quantities[sku], max_units))
  end
end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ttl) end
return redis.call('HGETALL', KEYS[2])
";

/// The Redis store.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
    ttl: i64,
    update: Script,
    merge: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://127.0.0.1:6379`); keys start with `prefix`.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "cart.connect", otel.kind = "client", db.namespace = "cart", db.operation.name = "connect"))]
    pub async fn connect(url: &str, prefix: &str, ttl: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(StoreError::backend)?;
        let connection = ConnectionManager::new(client)
            .await
            .map_err(StoreError::backend)?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
            ttl: ttl_millis(ttl),
            update: Script::new(UPDATE),
            merge: Script::new(MERGE),
        })
    }

    fn key(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }
}

/// Turns `HGETALL`'s flat list into a cart.
fn cart_from(flat: Vec<String>) -> Result<Cart, StoreError> {
    let mut cart = Cart::default();
    for pair in flat.chunks(2) {
        if let [sku, quantity] = pair {
            let quantity: u32 = quantity.parse().map_err(StoreError::backend)?;
            cart.lines.insert(sku.clone(), quantity);
        }
    }
    Ok(cart)
}

/// The scripts answer a broken limit with the error `CARTLIMIT UNITS` or `CARTLIMIT LINES`.
fn script_error(error: redis::RedisError, limits: Limits) -> StoreError {
    match (error.code(), error.detail()) {
        (Some("CARTLIMIT"), Some("UNITS")) => LimitError::TooManyUnits(limits.max_quantity).into(),
        (Some("CARTLIMIT"), Some("LINES")) => LimitError::TooManyLines(limits.max_lines).into(),
        _ => StoreError::backend(error),
    }
}

impl CartStore for RedisStore {
    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Cart>, StoreError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let flat: Vec<String> = redis::cmd("HGETALL")
                .arg(self.key(id))
                .query_async(&mut connection)
                .await
                .map_err(StoreError::backend)?;
            if flat.is_empty() {
                Ok(None)
            } else {
                cart_from(flat).map(Some)
            }
        })
    }

    fn update<'a>(
        &'a self,
        id: &'a str,
        change: &'a Change,
        limits: Limits,
    ) -> BoxFuture<'a, Result<Cart, StoreError>> {
        Box::pin(async move {
            let (op, sku, quantity) = match change {
                Change::Add { sku, quantity } => ("add", sku, *quantity),
                Change::Set { sku, quantity } => ("set", sku, *quantity),
                Change::Remove { sku } => ("remove", sku, 0),
            };
            let mut connection = self.connection.clone();
            let flat: Vec<String> = self
                .update
                .key(self.key(id))
                .arg(op)
                .arg(sku)
                .arg(quantity)
                .arg(limits.max_lines)
                .arg(limits.max_quantity)
                .arg(self.ttl)
                .invoke_async(&mut connection)
                .await
                .map_err(|e| script_error(e, limits))?;
            cart_from(flat)
        })
    }

    fn merge<'a>(
        &'a self,
        from: &'a str,
        into: &'a str,
        limits: Limits,
    ) -> BoxFuture<'a, Result<Cart, StoreError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let flat: Vec<String> = self
                .merge
                .key(self.key(from))
                .key(self.key(into))
                .arg(limits.max_lines)
                .arg(limits.max_quantity)
                .arg(self.ttl)
                .invoke_async(&mut connection)
                .await
                .map_err(|e| script_error(e, limits))?;
            cart_from(flat)
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let _: i64 = redis::cmd("DEL")
                .arg(self.key(id))
                .query_async(&mut connection)
                .await
                .map_err(StoreError::backend)?;
            Ok(())
        })
    }

    fn purge_expired(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        // Redis expires idle carts itself (PEXPIRE on every change).
        Box::pin(async { Ok(0) })
    }
}
