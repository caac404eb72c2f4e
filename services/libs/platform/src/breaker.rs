//! The platform's circuit breaker: `failsafe`'s state machine behind one
//! small API, shared by the Redis cache, the shared state and notify's
//! provider chains, so every breaker of the platform behaves alike.
//!
//! - **Closed** lets every call through. It opens when `consecutive_failures`
//!   calls in a row failed (with a `slow_call` threshold, a call that
//!   succeeded but took longer than it counts as failed here, as
//!   resilience4j's `slowCallDurationThreshold`: the caller keeps its
//!   result, only the breaker's accounting sees a failure), or (when a [`FailureRate`] is given) when the
//!   success rate over its window fell below `1 - rate` after at least
//!   `min_calls` calls in that window. The rate judges only once a whole
//!   window has passed since the breaker was created or last closed.
//! - **Open** refuses calls for `open_wait`, without calling.
//! - **Half-open** (the first call after `open_wait`) lets calls through
//!   until one of them ends: a success closes the breaker, a failure (or a
//!   slow success) opens it for another `open_wait`. Calls that start while the first trial is
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
    /// A call that succeeds but takes longer than this counts as a failure
    /// for both rules (a degraded dependency that still answers).
    pub slow_call: Option<Duration>,
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
    #[error("the slow-call threshold must be at least 1 ms")]
    NoSlowCall,
}

impl BreakerPolicy {
    /// Opens after `failures` failed calls in a row, for `open_wait`.
    pub fn consecutive(failures: u32, open_wait: Duration) -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: failures,
            failure_rate: None,
            open_wait,
            slow_call: None,
        }
    }

    /// The same policy, counting a success slower than `threshold` as a
    /// failure.
    pub fn with_slow_call(self, threshold: Duration) -> BreakerPolicy {
        BreakerPolicy {
            slow_call: Some(threshold),
            ..self
        }
    }

    pub fn validate(&self) -> Result<(), BreakerPolicyError> {
        if self.consecutive_failures == 0 {
            return Err(BreakerPolicyError::NoFailures);
        }
        if self.open_wait < Duration::from_millis(1) {
            return Err(BreakerPolicyError::NoOpenWait);
        }
        if matches!(self.slow_call, Some(threshold) if threshold < Duration::from_millis(1)) {
            return Err(BreakerPolicyError::NoSlowCall);
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
pub struct Breaker {
    machine: StateMachine<Policy, Transitions>,
    slow_call: Option<Duration>,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // failsafe's Debug prints the state (closed, open, half_open).
        self.machine.fmt(formatter)
    }
}

/// How the breaker counted a call ([`Breaker::record_call`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    Success,
    Failure,
    /// It succeeded, but slower than the slow-call threshold: a failure
    /// for the breaker, a success for the caller.
    Slow,
}

impl Breaker {
    /// A closed breaker named `name` (for its log lines) following `policy`.
    pub fn new(name: &str, policy: &BreakerPolicy) -> Result<Breaker, BreakerPolicyError> {
        policy.validate()?;
        let policy_slow_call = policy.slow_call;
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
        Ok(Breaker {
            machine: StateMachine::new(policy, transitions),
            slow_call: policy_slow_call,
        })
    }

    /// Whether a call may be made now (an open breaker whose wait is over
    /// turns half-open and lets it through).
    pub fn permits(&self) -> bool {
        self.machine.is_call_permitted()
    }

    /// Records how a permitted call ended.
    pub fn record(&self, succeeded: bool) {
        match succeeded {
            true => self.machine.on_success(),
            false => self.machine.on_error(),
        }
    }

    /// Records how a permitted call ended and how long it took: a success
    /// slower than the policy's slow-call threshold (strictly) counts as a
    /// failure. Without a threshold, the same as [`Breaker::record`].
    pub fn record_call(&self, succeeded: bool, took: Duration) -> Counted {
        let counted = match (succeeded, self.slow_call) {
            (false, _) => Counted::Failure,
            (true, Some(threshold)) if took > threshold => Counted::Slow,
            (true, _) => Counted::Success,
        };
        self.record(counted == Counted::Success);
        counted
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
                slow_call: None,
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
    fn slow_successes_open_it_and_a_fast_trial_closes_it_again() {
        clock::freeze(|time| {
            let policy = BreakerPolicy::consecutive(3, millis(1_000)).with_slow_call(millis(150));
            let breaker = Breaker::new("test", &policy).unwrap();
            assert_eq!(breaker.record_call(true, millis(20)), Counted::Success);
            assert_eq!(
                breaker.record_call(true, millis(150)),
                Counted::Success,
                "at the threshold is not slow"
            );
            for _ in 0..2 {
                assert!(breaker.permits());
                assert_eq!(breaker.record_call(true, millis(200)), Counted::Slow);
            }
            assert!(breaker.permits(), "two slow calls leave it closed");
            breaker.record_call(true, millis(10));
            for _ in 0..2 {
                breaker.record_call(true, millis(200));
            }
            assert!(breaker.permits(), "a fast call reset the count");
            breaker.record_call(true, millis(200));
            assert!(!breaker.permits(), "three slow calls in a row open it");
            time.advance(millis(1_100));
            assert!(breaker.permits(), "half-open after the wait");
            assert_eq!(breaker.record_call(true, millis(400)), Counted::Slow);
            assert!(!breaker.permits(), "a slow trial opens it again");
            time.advance(millis(1_100));
            assert!(breaker.permits());
            assert_eq!(breaker.record_call(true, millis(30)), Counted::Success);
            for _ in 0..2 {
                breaker.record_call(true, millis(200));
            }
            assert!(breaker.permits(), "a fast trial closed it");
            assert_eq!(breaker.record_call(false, millis(1)), Counted::Failure);
            assert!(
                !breaker.permits(),
                "failures and slow calls share the count"
            );
        });
    }

    #[test]
    fn slow_calls_count_towards_the_failure_rate() {
        clock::freeze(|time| {
            let policy = BreakerPolicy {
                consecutive_failures: 100,
                failure_rate: Some(FailureRate {
                    rate: 0.5,
                    min_calls: 4,
                    window: Duration::from_secs(1),
                }),
                open_wait: millis(1_000),
                slow_call: Some(millis(150)),
            };
            let breaker = Breaker::new("test", &policy).unwrap();
            let mut opened_after = None;
            // Two slow successes for every fast one: a slow-call rate of
            // two thirds, never three in a row counted as failures.
            for call in 0..40 {
                time.advance(millis(100));
                if !breaker.permits() {
                    opened_after = Some(call);
                    break;
                }
                let took = match call % 3 {
                    0 => millis(10),
                    _ => millis(300),
                };
                breaker.record_call(true, took);
            }
            assert!(opened_after.is_some(), "the slow-call rate opens it");
        });
    }

    #[test]
    fn without_a_slow_call_threshold_any_success_is_one() {
        clock::freeze(|_| {
            let breaker =
                Breaker::new("test", &BreakerPolicy::consecutive(1, millis(1_000))).unwrap();
            for _ in 0..10 {
                assert_eq!(
                    breaker.record_call(true, Duration::from_secs(60)),
                    Counted::Success
                );
                assert!(breaker.permits());
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
            slow_call: None,
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
            (
                BreakerPolicy::consecutive(1, millis(10)).with_slow_call(Duration::ZERO),
                BreakerPolicyError::NoSlowCall,
            ),
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
