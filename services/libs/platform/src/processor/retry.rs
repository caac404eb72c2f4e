//! The one retry policy of the processor, the projector and the dead-letter
//! writer: a transient failure is retried with capped exponential backoff
//! until it succeeds or the process is asked to stop; a permanent failure is
//! returned at once, because retrying the same input can only fail the same
//! way (and would spin).
//!
//! It lives beside the processor, which it was written for, and is shared
//! crate-wide (`pub(crate)`), so the projector and `dlq` retry alike.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::shutdown::Shutdown;

const FIRST_DELAY: Duration = Duration::from_millis(20);
const MAX_DELAY: Duration = Duration::from_secs(5);

fn policy() -> ExponentialBuilder {
    // Jitter: every member of a group retries the same outage; spreading
    // them keeps a recovering broker or registry from being hit in step.
    ExponentialBuilder::default()
        .with_min_delay(FIRST_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_jitter()
        .without_max_times()
}

/// The policy's delays, for loops that wait on a condition rather than an
/// error (the processor resynchronising with a log that moved under it).
pub(crate) fn delays() -> impl Iterator<Item = Duration> + Send {
    policy().build()
}

/// Runs `attempt` until it succeeds or fails permanently (`is_transient`
/// says no); `None` when shutdown comes first.
///
/// An attempt in flight when shutdown comes is abandoned, not awaited:
/// every caller treats `None` as "not done" and stores no offset past it, so
/// whoever reads the record next does the work again (and every step it
/// repeats is idempotent: re-decisions are identical, rows are
/// position-guarded, outcomes and dead letters may be repeated).
pub async fn until_settled<T, E, Fut>(
    what: &'static str,
    shutdown: &Shutdown,
    attempt: impl FnMut() -> Fut,
    is_transient: impl Fn(&E) -> bool,
) -> Option<Result<T, E>>
where
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    let retried = attempt
        .retry(policy())
        .when(|error| is_transient(error))
        .notify(|error, delay| {
            tracing::warn!(%error, what, retry_in_ms = delay.as_millis() as u64, "transient failure, retrying");
        });
    tokio::select! {
        biased;
        () = shutdown.clone().wait() => None,
        result = retried => Some(result),
    }
}

/// Whether producing a record can succeed if tried again. The permanent
/// codes are the record's or the topic's fault (too large, refused by
/// policy or authorisation); everything else (timeouts, a full queue, a
/// leader moving, a broker down) passes.
pub fn produce_is_transient(error: &KafkaError) -> bool {
    !matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::InvalidRequiredAcks
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::UnsupportedForMessageFormat
                | RDKafkaErrorCode::PolicyViolation
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::shutdown;

    #[derive(Debug, thiserror::Error)]
    enum Failure {
        #[error("down")]
        Down,
        #[error("refused")]
        Refused,
    }

    fn transient(failure: &Failure) -> bool {
        matches!(failure, Failure::Down)
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_until_it_passes() {
        let (_trigger, shutdown) = shutdown::channel();
        let attempts = AtomicU32::new(0);
        let result = until_settled(
            "test",
            &shutdown,
            || async {
                match attempts.fetch_add(1, Ordering::SeqCst) {
                    0..=2 => Err(Failure::Down),
                    n => Ok(n),
                }
            },
            transient,
        )
        .await;
        assert!(matches!(result, Some(Ok(3))));
    }

    #[tokio::test]
    async fn a_permanent_failure_is_returned_at_once() {
        let (_trigger, shutdown) = shutdown::channel();
        let attempts = AtomicU32::new(0);
        let result = until_settled(
            "test",
            &shutdown,
            || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Failure::Refused)
            },
            transient,
        )
        .await;
        assert!(matches!(result, Some(Err(Failure::Refused))));
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn shutdown_ends_the_retries() {
        let (trigger, shutdown) = shutdown::channel();
        let attempts = AtomicU32::new(0);
        let result = until_settled(
            "test",
            &shutdown,
            || async {
                if attempts.fetch_add(1, Ordering::SeqCst) == 2 {
                    trigger.trigger();
                }
                Err::<(), _>(Failure::Down)
            },
            transient,
        )
        .await;
        assert!(result.is_none());
    }

    #[test]
    fn oversized_records_are_permanent_timeouts_are_not() {
        assert!(!produce_is_transient(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
        )));
        assert!(produce_is_transient(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageTimedOut
        )));
        assert!(produce_is_transient(&KafkaError::Canceled));
    }
}
