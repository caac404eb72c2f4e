//! Deadline-bounded polling: tests wait for observable state, never for a
//! fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

/// A point in time a wait gives up at.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    pub fn after(budget: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + budget,
            budget,
        }
    }

    pub fn secs(seconds: u64) -> Deadline {
        Deadline::after(Duration::from_secs(seconds))
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// The whole budget this deadline was created with.
    pub fn budget(&self) -> Duration {
        self.budget
    }
}

/// The interval between two polls of the same condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `probe` until it yields `Some`, or fails after `deadline` naming
/// `what` and the last state `probe` reported through `Err`.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    deadline: Deadline,
    mut probe: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, String>>,
{
    loop {
        let last = match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => "not yet".to_owned(),
            Err(state) => state,
        };
        if deadline.passed() {
            anyhow::bail!(
                "timed out after {:?} waiting for {what}; last state: {last}",
                deadline.budget()
            );
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline.remaining())).await;
    }
}
