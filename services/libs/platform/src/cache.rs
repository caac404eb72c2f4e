//! Cache-aside for hot rows in Redis (`[cache] kind = "redis"`).
//!
//! - **Only what the store returned enters the cache.** A reader that
//!   missed fills the entry with the row it read from the store, carrying
//!   the row's position. The projector never writes row values: after each
//!   store write it *invalidates* every cached row it wrote, leaving a
//!   marker holding the new position and no value.
//! - **Positions order every cache write** (two Lua scripts, atomic in
//!   Redis). An invalidation at P replaces an entry older than P; a fill at
//!   P is accepted only over an entry older than P, or over the marker of
//!   P itself. So a reader that read the store before the projector's
//!   write and fills after its invalidation is refused: a stale entry is
//!   never stored after the projection moved past it, whatever the order in
//!   which the two arrive. A marker is a miss; the next reader fills it from
//!   the store, which already holds the marker's position or newer.
//! - **Redis is never needed.** Every operation has a short timeout; an
//!   error or a timeout is a miss (reads go to the store) or a skipped
//!   invalidation, logged at most every few seconds. After a few failures
//!   in a row a circuit breaker skips Redis outright (probing it again
//!   after a pause), so reads during an outage cost a store read, not a
//!   timeout first. The connection manager reconnects by itself; the
//!   cache refills on the next misses.
//! - The one window: Redis reachable from gateways but not from a projector
//!   (a partial partition) keeps an entry the projector could not
//!   invalidate until its TTL (`cache.ttl_seconds`) ends it.
//!
//! Keys: `<key_prefix>row:<table>:<hex partition>:<hex clustering>`, a hash
//! of `p` (the position, decimal) and `v` (the row bytes; absent in a
//! marker), expiring after `ttl_seconds`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use crate::breaker::{Breaker, BreakerPolicy};
use crate::config::{CacheConfig, ConfigError};
use crate::store::{RowKey, StoredRow};

/// A fill at ARGV[1] (position), ARGV[2] (bytes), ARGV[3] (ttl).
const FILL: &str = r"
local p = redis.call('HGET', KEYS[1], 'p')
if p then
  local current = tonumber(p)
  local new = tonumber(ARGV[1])
  if current > new then return 0 end
  if current == new and redis.call('HEXISTS', KEYS[1], 'v') == 1 then return 0 end
end
redis.call('HSET', KEYS[1], 'p', ARGV[1], 'v', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
";

/// Invalidates KEYS[i] at position ARGV[i + 1]; ARGV[1] is the ttl.
const INVALIDATE: &str = r"
local invalidated = 0
for i, key in ipairs(KEYS) do
  local position = tonumber(ARGV[i + 1])
  local p = redis.call('HGET', key, 'p')
  if not p or tonumber(p) < position then
    redis.call('DEL', key)
    redis.call('HSET', key, 'p', ARGV[i + 1])
    redis.call('EXPIRE', key, ARGV[1])
    invalidated = invalidated + 1
  end
end
return invalidated
";

/// Seconds between two warnings about an unreachable cache.
const WARN_EVERY_SECONDS: u64 = 10;

pub struct RowCache {
    manager: ConnectionManager,
    key_prefix: String,
    tables: Vec<String>,
    ttl_seconds: u64,
    timeout: Duration,
    fill: Script,
    invalidate: Script,
    last_warning: AtomicU64,
    breaker: Breaker,
}

impl std::fmt::Debug for RowCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: only the shape is shown.
        formatter
            .debug_struct("RowCache")
            .field("key_prefix", &self.key_prefix)
            .field("tables", &self.tables)
            .field("ttl_seconds", &self.ttl_seconds)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Consecutive failed Redis calls that open the breaker.
const FAILURES_TO_OPEN: u32 = 3;

/// The breaker every Redis client of the platform sits behind, so a Redis
/// that is down costs a request nothing instead of a timeout per call:
/// after [`FAILURES_TO_OPEN`] consecutive failures calls are refused for a
/// second, then probed again (a failed probe pauses another second); the
/// first success closes it.
pub(crate) fn redis_breaker(name: &str) -> Result<Breaker, ConfigError> {
    Breaker::new(
        name,
        &BreakerPolicy::consecutive(FAILURES_TO_OPEN, Duration::from_secs(1)),
    )
    .map_err(|error| ConfigError::Invalid(format!("{name} breaker: {error}")))
}

/// A self-reconnecting connection to the Redis at `url` that connects on
/// first use, every wait bounded by `timeout`.
pub(crate) fn lazy_connection(
    url: &crate::config::Secret,
    timeout: Duration,
) -> Result<ConnectionManager, ConfigError> {
    let client = redis::Client::open(url.expose())
        .map_err(|error| ConfigError::Invalid(format!("cache.url: {error}")))?;
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_lazy_with_config(client, manager_config)
        .map_err(|error| ConfigError::Invalid(format!("cache: {error}")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl RowCache {
    /// A cache on `config.url`; connects on first use, never at start-up,
    /// so a Redis that is down does not stop a role from starting.
    pub fn new(config: &CacheConfig) -> Result<RowCache, ConfigError> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let manager = lazy_connection(&config.url, timeout)?;
        Ok(RowCache {
            manager,
            key_prefix: config.key_prefix.clone(),
            tables: config.tables.clone(),
            ttl_seconds: config.ttl_seconds,
            timeout,
            fill: Script::new(FILL),
            invalidate: Script::new(INVALIDATE),
            last_warning: AtomicU64::new(0),
            breaker: redis_breaker("redis cache")?,
        })
    }

    pub fn caches(&self, table: &str) -> bool {
        self.tables.iter().any(|cached| cached == table)
    }

    pub fn key(&self, key: &RowKey) -> String {
        format!(
            "{}row:{}:{}:{}",
            self.key_prefix,
            key.table,
            hex(&key.partition),
            hex(&key.clustering)
        )
    }

    fn degraded(&self, action: &str, error: impl std::fmt::Display) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or(0);
        let last = self.last_warning.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY_SECONDS
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(%error, action, "cache unavailable, serving from the store");
        }
    }

    async fn bounded<T>(
        &self,
        action: &str,
        work: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        if !self.breaker.permits() {
            return None;
        }
        let answer = tokio::time::timeout(self.timeout, work).await;
        self.breaker.record(matches!(answer, Ok(Ok(_))));
        match answer {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                self.degraded(action, error);
                None
            }
            Err(_) => {
                self.degraded(action, format!("no answer within {:?}", self.timeout));
                None
            }
        }
    }

    /// The cached row, `None` on a miss, a marker or any cache failure.
    pub async fn get(&self, key: &RowKey) -> Option<StoredRow> {
        let mut connection = self.manager.clone();
        let cache_key = self.key(key);
        let (position, value): (Option<i64>, Option<Vec<u8>>) = self
            .bounded("read", async move {
                redis::cmd("HMGET")
                    .arg(&cache_key)
                    .arg("p")
                    .arg("v")
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        Some(StoredRow {
            position: position?,
            value: value?,
        })
    }

    /// Stores a row read from the store, unless the cache knows a newer
    /// position. Returns whether it was stored (`false` also on failure).
    pub async fn fill(&self, key: &RowKey, row: &StoredRow) -> bool {
        let mut connection = self.manager.clone();
        let mut invocation = self.fill.key(self.key(key));
        invocation
            .arg(row.position)
            .arg(row.value.as_slice())
            .arg(self.ttl_seconds);
        self.bounded("fill", async move {
            invocation.invoke_async::<i64>(&mut connection).await
        })
        .await
        .is_some_and(|stored| stored == 1)
    }

    /// Marks every cached row of `upserts` as moved to its new position
    /// (one round trip); rows of tables not cached are ignored.
    pub async fn invalidate(&self, upserts: &[(RowKey, StoredRow)]) {
        let hot: Vec<&(RowKey, StoredRow)> = upserts
            .iter()
            .filter(|(key, _)| self.caches(key.table))
            .collect();
        if hot.is_empty() {
            return;
        }
        let mut invocation = self.invalidate.prepare_invoke();
        invocation.arg(self.ttl_seconds);
        for (key, row) in &hot {
            invocation.key(self.key(key)).arg(row.position);
        }
        let mut connection = self.manager.clone();
        self.bounded("invalidate", async move {
            invocation.invoke_async::<i64>(&mut connection).await
        })
        .await;
    }
}
