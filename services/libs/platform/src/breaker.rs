//! The platform's circuit breaker: `failsafe`'s state machine behind one
//! small API, shared by the Redis cache, the shared state and notify's
//! provider chains, so every breaker of the platform behaves alike.
//!
//! - **Closed** lets every call through. It opens when `consecutive_failures`
//!   calls in a row failed, or (when a [`FailureRate`] is given) when the
//!   success rate over its window fell below `1 - rate` after at least
//!   `min_calls` calls in that window. The rate judges only once a whole
//!   window has passed since the breaker was created or last closed.
//! - **Open** refuses calls for `open_wait`, without calling.
//! - **Half-open** (the first call after `open_wait`) lets calls through
//!   until one of them ends: a success closes the breaker, a failure opens
//!   it for another `open_wait`. Calls that start while the first trial is
//!   still running are let through too (failsafe has no trial quota).
//!
//! Transitions are logged once each (`circuit breaker opened` / `closed`)
//! under the breaker's name.

use std::sync::Arc;
use std::time::Duration;

use failsafe::backoff::{self, Constant};
use failsafe::failure_policy::{
    consecutive_failures, success_rate_over_time_window, ConsecutiveFailures, FailurePolicy,
    OrElse, SuccessRateOverTimeWindow,
};
use failsafe::{Instrument, StateMachine};

/// The failure-rate rule of a [`BreakerPolicy`].
#[derive(Clone, Debug, PartialEq)]
pub struct FailureRate {
    /// The failure rate, in (0, 1], that opens the breaker.
    pub rate: f64,
    /// Calls the window must hold before the rate is judged.
    pub min_calls: u32,
    /// The window the rate is taken over, whole seconds (failsafe's unit).
    pub window: Duration,
}

/// When a [`Breaker`] opens and how long it stays open.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerPolicy {
    pub consecutive_failures: u32,
    pub failure_rate: Option<FailureRate>,
    pub open_wait: Duration,
}

/// A policy failsafe would panic on, or one that could never close.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BreakerPolicyError {
    #[error("consecutive_failures must be at least 1")]
    NoFailures,
    #[error("the failure rate must be in (0, 1]")]
    RateOutOfRange,
    #[error("min_calls must be at least 1")]
    NoMinCalls,
    #[error("the failure-rate window must be at least 1 s")]
    WindowTooShort,
    #[error("open_wait must be at least 1 ms")]
    NoOpenWait,
}

impl BreakerPolicy {
    /// Opens after `failures` failed calls in a row, for `open_wait`.
    pub fn consecutive(failures: u32, open_wait: Duration) -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: failures,
            failure_rate: None,
            open_wait,
        }
    }

    pub fn validate(&self) -> Result<(), BreakerPolicyError> {
        if self.consecutive_failures == 0 {
            return Err(BreakerPolicyError::NoFailures);
        }
        if self.open_wait < Duration::from_millis(1) {
            return Err(BreakerPolicyError::NoOpenWait);
        }
        if let Some(rate) = &self.failure_rate {
            if !(rate.rate > 0.0 && rate.rate <= 1.0) {
                return Err(BreakerPolicyError::RateOutOfRange);
            }
            if rate.min_calls == 0 {
                return Err(BreakerPolicyError::NoMinCalls);
            }
            if rate.window.as_secs() == 0 {
                return Err(BreakerPolicyError::WindowTooShort);
            }
        }
        Ok(())
    }
}

type Policy = OrElse<ConsecutiveFailures<Constant>, SuccessRateOverTimeWindow<Constant>>;

/// Logs each transition under the breaker's name.
#[derive(Clone, Debug)]
struct Transitions {
    name: Arc<str>,
}

impl Instrument for Transitions {
    fn on_call_rejected(&self) {}

    fn on_open(&self) {
        tracing::warn!(breaker = %self.name, "circuit breaker opened");
    }

    fn on_half_open(&self) {
        tracing::info!(breaker = %self.name, "circuit breaker half-open, trying again");
    }

    fn on_closed(&self) {
        tracing::info!(breaker = %self.name, "circuit breaker closed");
    }
}

/// A circuit breaker; clones share one state.
#[derive(Clone)]
pub struct Breaker(StateMachine<Policy, Transitions>);

impl std::fmt::Debug for Breaker {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // failsafe's Debug prints the state (closed, open, half_open).
        self.0.fmt(formatter)
    }
}

impl Breaker {
    /// A closed breaker named `name` (for its log lines) following `policy`.
    pub fn new(name: &str, policy: &BreakerPolicy) -> Result<Breaker, BreakerPolicyError> {
        policy.validate()?;
        let open_wait = backoff::constant(policy.open_wait);
        // Without a rate rule, a required success rate of 0 never opens:
        // the consecutive rule alone decides.
        let (required_success_rate, min_calls, window) = match &policy.failure_rate {
            Some(rate) => (1.0 - rate.rate, rate.min_calls, rate.window),
            None => (0.0, 1, Duration::from_secs(1)),
        };
        let policy = consecutive_failures(policy.consecutive_failures, open_wait.clone()).or_else(
            success_rate_over_time_window(required_success_rate, min_calls, window, open_wait),
        );
        let transitions = Transitions {
            name: Arc::from(name),
        };
        // Creating the machine reports "closed"; that is no transition.
        Ok(Breaker(StateMachine::new(policy, transitions)))
    }

    /// Whether a call may be made now (an open breaker whose wait is over
    /// turns half-open and lets it through).
    pub fn permits(&self) -> bool {
        self.0.is_call_permitted()
    }

    /// Records how a permitted call ended.
    pub fn record(&self, succeeded: bool) {
        match succeeded {
            true => self.0.on_success(),
            false => self.0.on_error(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    // failsafe's own test clock (thread-local): time moves only when told.
    use failsafe::clock;

    #[test]
    fn consecutive_failures_open_it_and_a_success_after_the_wait_closes_it() {
        clock::freeze(|time| {
            let breaker =
                Breaker::new("test", &BreakerPolicy::consecutive(3, millis(1_000))).unwrap();
            for _ in 0..2 {
                assert!(breaker.permits());
                breaker.record(false);
            }
            assert!(breaker.permits(), "two failures leave it closed");
            breaker.record(true);
            for _ in 0..2 {
                assert!(breaker.permits());
                breaker.record(false);
            }
            assert!(breaker.permits(), "a success reset the count");
            breaker.record(false);
            assert!(!breaker.permits(), "three in a row open it");
            time.advance(millis(900));
            assert!(!breaker.permits(), "still open within the wait");
            time.advance(millis(200));
            assert!(breaker.permits(), "half-open after the wait");
            breaker.record(false);
            assert!(!breaker.permits(), "a failed trial opens it again");
            time.advance(millis(1_100));
            assert!(breaker.permits());
            breaker.record(true);
            for _ in 0..2 {
                assert!(breaker.permits());
                breaker.record(false);
            }
            assert!(breaker.permits(), "closed again, the count starts over");
        });
    }

    #[test]
    fn a_failure_rate_over_the_window_opens_it_without_a_run_of_failures() {
        clock::freeze(|time| {
            let policy = BreakerPolicy {
                consecutive_failures: 100,
                failure_rate: Some(FailureRate {
                    rate: 0.5,
                    min_calls: 4,
                    window: Duration::from_secs(1),
                }),
                open_wait: millis(1_000),
            };
            let breaker = Breaker::new("test", &policy).unwrap();
            let mut opened_after = None;
            // Two failures for every success, 100 ms apart: never three in
            // a row, but a failure rate of two thirds.
            for call in 0..40 {
                time.advance(millis(100));
                if !breaker.permits() {
                    opened_after = Some(call);
                    break;
                }
                breaker.record(call % 3 == 0);
            }
            let opened_after = opened_after.expect("the rate opens it");
            assert!(
                opened_after >= 10,
                "not before a whole window: {opened_after}"
            );
        });
    }

    #[test]
    fn without_a_rate_rule_only_a_run_of_failures_opens_it() {
        clock::freeze(|time| {
            let breaker =
                Breaker::new("test", &BreakerPolicy::consecutive(3, millis(1_000))).unwrap();
            for call in 0..100 {
                time.advance(millis(100));
                assert!(breaker.permits(), "call {call}");
                breaker.record(call % 3 == 0);
            }
        });
    }

    #[test]
    fn clones_share_one_state() {
        let breaker = Breaker::new("test", &BreakerPolicy::consecutive(1, millis(60_000))).unwrap();
        let clone = breaker.clone();
        breaker.record(false);
        assert!(!clone.permits());
        assert!(format!("{clone:?}").contains("open"), "{clone:?}");
    }

    #[test]
    fn policies_failsafe_would_panic_on_are_refused() {
        let rate = |rate: f64, min_calls: u32, window_ms: u64| BreakerPolicy {
            consecutive_failures: 5,
            failure_rate: Some(FailureRate {
                rate,
                min_calls,
                window: millis(window_ms),
            }),
            open_wait: millis(1_000),
        };
        let cases = [
            (
                BreakerPolicy::consecutive(0, millis(10)),
                BreakerPolicyError::NoFailures,
            ),
            (
                BreakerPolicy::consecutive(1, Duration::ZERO),
                BreakerPolicyError::NoOpenWait,
            ),
            (rate(0.0, 5, 1_000), BreakerPolicyError::RateOutOfRange),
            (rate(1.5, 5, 1_000), BreakerPolicyError::RateOutOfRange),
            (rate(f64::NAN, 5, 1_000), BreakerPolicyError::RateOutOfRange),
            (rate(0.5, 0, 1_000), BreakerPolicyError::NoMinCalls),
            (rate(0.5, 5, 999), BreakerPolicyError::WindowTooShort),
        ];
        for (policy, expected) in cases {
            assert_eq!(
                Breaker::new("test", &policy).map(|_| ()),
                Err(expected),
                "{policy:?}"
            );
        }
        assert!(Breaker::new("test", &rate(1.0, 1, 1_000)).is_ok());
    }
}
