//! State that stateless gateway replicas must share, in Redis: first-wins
//! reservations (idempotency-key records) and per-window counters (rate
//! limits). Unlike [`crate::cache`], a failure here is an error the caller
//! decides about, never a silent miss: each caller documents what it does
//! while Redis is away (ARCHITECTURE.md, *Shared gateway state*).
//!
//! Both operations are one Lua script each, so they are atomic in Redis
//! whatever the number of replicas calling at once. Calls share the
//! cache's circuit breaker policy: while Redis keeps failing they fail at
//! once instead of after their timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use redis::Script;

use crate::config::{ConfigError, Secret};

/// Stores ARGV[1] at KEYS[1] for ARGV[2] seconds unless the key exists;
/// answers nil when it stored, else the value already there.
const RESERVE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])
";

/// Counts one more at KEYS[1]; the first count of a window starts its
/// ARGV[1] milliseconds. Answers the count and the window's remaining ms.
const COUNT: &str = r"
local count = redis.call('INCR', KEYS[1])
local remaining = redis.call('PTTL', KEYS[1])
if remaining < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  remaining = tonumber(ARGV[1])
end
return {count, remaining}
";

#[derive(Debug, thiserror::Error)]
pub enum SharedStateError {
    /// Redis did not answer in time or the connection failed: transient,
    /// the connection manager reconnects by itself.
    #[error("shared state unavailable: {0}")]
    Unavailable(String),
}

impl SharedStateError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// One window's count for a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowCount {
    /// Counts in this window, this one included.
    pub count: u64,
    /// Until the window ends and the count starts again.
    pub resets_in: Duration,
}

pub struct SharedState {
    manager: ConnectionManager,
    key_prefix: String,
    timeout: Duration,
    reserve: Script,
    count: Script,
    last_warning: AtomicU64,
    breaker: crate::breaker::Breaker,
}

/// Seconds between two warnings about an unreachable Redis.
const WARN_EVERY_SECONDS: u64 = 10;

impl std::fmt::Debug for SharedState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: it is not kept here to be shown.
        formatter
            .debug_struct("SharedState")
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SharedState {
    /// Shared state in the Redis at `url`, every key under `key_prefix`.
    /// Connects on first use, so a Redis that is down does not stop a
    /// role from starting.
    pub fn new(
        url: &Secret,
        key_prefix: &str,
        timeout: Duration,
    ) -> Result<SharedState, ConfigError> {
        Ok(SharedState {
            manager: crate::cache::lazy_connection(url, timeout)?,
            key_prefix: key_prefix.to_owned(),
            timeout,
            reserve: Script::new(RESERVE),
            count: Script::new(COUNT),
            last_warning: AtomicU64::new(0),
            breaker: crate::cache::redis_breaker("redis shared state")?,
        })
    }

    /// Whether a caller that met an error should log it now: at most once
    /// every few seconds, so an outage does not log once per request.
    pub fn should_warn(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or(0);
        let last = self.last_warning.load(Ordering::Relaxed);
        now.saturating_sub(last) >= WARN_EVERY_SECONDS
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// The Redis key of `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.key_prefix)
    }

    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, SharedStateError> {
        if !self.breaker.permits() {
            return Err(SharedStateError::Unavailable(
                "redis failed repeatedly; calls are paused before the next probe".to_owned(),
            ));
        }
        let answer = tokio::time::timeout(self.timeout, work).await;
        self.breaker.record(matches!(answer, Ok(Ok(_))));
        match answer {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(SharedStateError::Unavailable(error.to_string())),
            Err(_) => Err(SharedStateError::Unavailable(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// Stores `value` under `name` for `ttl` unless something is there:
    /// `None` when this call stored it (it won), else the value stored
    /// first. Atomic across every caller.
    pub async fn reserve(
        &self,
        name: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, SharedStateError> {
        let mut invocation = self.reserve.key(self.key(name));
        invocation.arg(value).arg(ttl.as_secs().max(1));
        let mut connection = self.manager.clone();
        self.bounded(async move { invocation.invoke_async(&mut connection).await })
            .await
    }

    /// Counts one more for `name` in its current window of `window`
    /// (started by the window's first count).
    pub async fn count(
        &self,
        name: &str,
        window: Duration,
    ) -> Result<WindowCount, SharedStateError> {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut invocation = self.count.key(self.key(name));
        invocation.arg(window_ms);
        let mut connection = self.manager.clone();
        let (count, remaining_ms): (u64, u64) = self
            .bounded(async move { invocation.invoke_async(&mut connection).await })
            .await?;
        Ok(WindowCount {
            count,
            resets_in: Duration::from_millis(remaining_ms),
        })
    }
}
