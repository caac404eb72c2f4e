//! Per-client rate limits (`gateway.rate_limit`): past `requests` in a
//! window a client is answered 429 with `Retry-After`, before anything else
//! of the request is done.
//!
//! - `local`: each replica limits on its own (GCRA from `governor`: a burst
//!   of `requests`, one more every `window / requests`).
//! - `redis`: one count per client in Redis (`INCR`, the window starting at
//!   the client's first request and ending `window_seconds` later), shared
//!   by every replica behind the load balancer. While Redis does not answer
//!   within `timeout_ms` the replica's local limiter decides instead: a rate
//!   limit protects, it is not a correctness property, so an outage loosens
//!   it (to at most `requests` per replica) rather than refusing everyone.
//!
//! The client is the value of `client_header` when configured and present
//! (the trusted proxy in front sets it), else the peer's IP address.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use foldline_platform::config::{CacheConfig, ConfigError, GatewayConfig, RateLimitKind};
use foldline_platform::shared_state::SharedState;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};

/// Longest client identity taken from a header; longer values are cut.
const MAX_CLIENT_LEN: usize = 256;
/// How many checks between two sweeps of idle clients from the local
/// limiter's memory.
const SWEEP_EVERY_CHECKS: u64 = 4096;

/// The answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Limited { retry_after: Duration },
}

pub struct RateLimit {
    requests: u64,
    window: Duration,
    client_header: Option<String>,
    local: DefaultKeyedRateLimiter<String>,
    shared: Option<SharedState>,
    checks: AtomicU64,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RateLimit")
            .field("requests", &self.requests)
            .field("window", &self.window)
            .field("client_header", &self.client_header)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

impl RateLimit {
    /// The configured limit, `None` when `kind = "none"`.
    pub fn from_config(
        gateway: &GatewayConfig,
        cache: &CacheConfig,
    ) -> Result<Option<Arc<RateLimit>>, ConfigError> {
        let config = &gateway.rate_limit;
        let shared = match config.kind {
            RateLimitKind::None => return Ok(None),
            RateLimitKind::Local => None,
            RateLimitKind::Redis => Some(SharedState::new(
                &cache.url,
                &cache.key_prefix,
                Duration::from_millis(config.timeout_ms),
            )?),
        };
        let window = Duration::from_secs(config.window_seconds);
        let burst = NonZeroU32::new(config.requests).ok_or_else(|| {
            ConfigError::Invalid("gateway.rate_limit.requests must be at least 1".to_owned())
        })?;
        let quota = Quota::with_period(window / burst.get())
            .ok_or_else(|| {
                ConfigError::Invalid(
                    "gateway.rate_limit: more requests than nanoseconds in the window".to_owned(),
                )
            })?
            .allow_burst(burst);
        Ok(Some(Arc::new(RateLimit {
            requests: u64::from(burst.get()),
            window,
            client_header: config
                .client_header
                .as_ref()
                .map(|name| name.to_ascii_lowercase()),
            local: RateLimiter::dashmap(quota),
            shared,
            checks: AtomicU64::new(0),
        })))
    }

    /// Who sent `request`: the configured header's value, else the peer IP.
    pub fn client(&self, request: &Request) -> String {
        let from_header = self
            .client_header
            .as_ref()
            .and_then(|name| request.headers().get(name.as_str()))
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty());
        if let Some(value) = from_header {
            let mut end = value.len().min(MAX_CLIENT_LEN);
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            return format!("h:{}", &value[..end]);
        }
        match request.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(peer)) => format!("ip:{}", peer.ip()),
            None => "unknown".to_owned(),
        }
    }

    /// Counts one request of `client` and says whether it may go on.
    pub async fn check(&self, client: &str) -> Verdict {
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY_CHECKS)
        {
            self.local.retain_recent();
            self.local.shrink_to_fit();
        }
        if let Some(shared) = &self.shared {
            match shared.count(&Self::redis_name(client), self.window).await {
                Ok(window) if window.count <= self.requests => return Verdict::Allowed,
                Ok(window) => {
                    return Verdict::Limited {
                        retry_after: window.resets_in,
                    }
                }
                Err(error) => {
                    if shared.should_warn() {
                        tracing::warn!(%error, "rate-limit counters unreachable, limiting per replica");
                    }
                }
            }
        }
        match self.local.check_key(&client.to_owned()) {
            Ok(()) => Verdict::Allowed,
            Err(not_until) => Verdict::Limited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            },
        }
    }

    /// `ratelimit:<hash>`: a client's identity is whatever a header held,
    /// so the key holds a digest of it, never the value.
    fn redis_name(client: &str) -> String {
        let digest = Sha256::digest(client.as_bytes());
        let hex: String = digest[..16]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        format!("ratelimit:{hex}")
    }
}

/// Whole seconds to put in `Retry-After`: rounded up, at least 1.
pub fn retry_after_seconds(retry_after: Duration) -> u64 {
    let whole = retry_after.as_secs();
    let seconds = if retry_after.subsec_nanos() > 0 {
        whole + 1
    } else {
        whole
    };
    seconds.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use foldline_platform::config::RateLimitConfig;

    fn local(requests: u32, window_seconds: u64, header: Option<&str>) -> Arc<RateLimit> {
        let gateway = GatewayConfig {
            rate_limit: RateLimitConfig {
                kind: RateLimitKind::Local,
                requests,
                window_seconds,
                client_header: header.map(str::to_owned),
                ..RateLimitConfig::default()
            },
            ..GatewayConfig::default()
        };
        RateLimit::from_config(&gateway, &CacheConfig::default())
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn a_client_past_its_burst_is_limited_and_others_are_not() {
        let limit = local(3, 3600, None);
        for _ in 0..3 {
            assert_eq!(limit.check("ip:10.0.0.1").await, Verdict::Allowed);
        }
        let Verdict::Limited { retry_after } = limit.check("ip:10.0.0.1").await else {
            panic!("the fourth request in the window is limited");
        };
        // One request comes back every window / requests.
        assert!(retry_after <= Duration::from_secs(1200), "{retry_after:?}");
        assert!(retry_after > Duration::from_secs(1000), "{retry_after:?}");
        assert_eq!(limit.check("ip:10.0.0.2").await, Verdict::Allowed);
    }

    #[test]
    fn no_limit_is_built_when_off() {
        let limit = RateLimit::from_config(&GatewayConfig::default(), &CacheConfig::default());
        assert!(limit.unwrap().is_none());
    }

    #[test]
    fn the_client_is_the_configured_header_else_the_peer_address() {
        let limit = local(1, 60, Some("X-Client-Id"));
        let mut request = Request::new(axum::body::Body::empty());
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 4242))));
        assert_eq!(limit.client(&request), "ip:192.0.2.7");
        request
            .headers_mut()
            .insert("x-client-id", "tenant-1".parse().unwrap());
        assert_eq!(limit.client(&request), "h:tenant-1");
        request.headers_mut().insert(
            "x-client-id",
            axum::http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        // Not visible ascii: to_str refuses it, so the peer address decides.
        assert_eq!(limit.client(&request), "ip:192.0.2.7");
        let long = "a".repeat(MAX_CLIENT_LEN * 2);
        request
            .headers_mut()
            .insert("x-client-id", long.parse().unwrap());
        assert_eq!(limit.client(&request).len(), 2 + MAX_CLIENT_LEN);
        let bare = Request::new(axum::body::Body::empty());
        assert_eq!(local(1, 60, None).client(&bare), "unknown");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(59)), 59);
    }

    #[test]
    fn redis_keys_hold_a_digest_of_the_client() {
        let name = RateLimit::redis_name("h:secret tenant");
        assert!(name.starts_with("ratelimit:") && !name.contains("secret"));
        assert_eq!(name.len(), "ratelimit:".len() + 32);
        assert_ne!(name, RateLimit::redis_name("h:other"));
    }
}
