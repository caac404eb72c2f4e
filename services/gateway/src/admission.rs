//! Admission: the gateway never promises more than the platform settles.
//!
//! Each domain has a bound on the commands this gateway has produced and
//! not yet seen settled (`gateway.max_unsettled_commands`). A command takes
//! a slot before anything is written; the slot comes back when the
//! outcome follower sees the command's outcome (whoever asked for it, with
//! or without `Prefer: wait`), when producing it failed, or — for a command
//! whose outcome never comes (a parked, undecidable command) — after
//! `gateway.unsettled_expiry_seconds`. A command past the bound is refused
//! at once with 503 and `Retry-After`, before it costs a store write or a
//! produce.
//!
//! Why in-flight outcomes rather than a rate: the bound is Little's law
//! read backwards. The backlog between `D.commands` and `D.events` that
//! this gateway can cause is at most the bound, so an admitted command
//! waits behind at most `bound / settle rate`, whatever the settle rate is
//! right now (a slow store, a rebalance, a restore): the limit follows the
//! platform instead of a number configured for yesterday's hardware.
//! A retry of a command still unsettled (same command id, from the same
//! `Idempotency-Key`) reuses its slot. Once a domain is full the gateway
//! refuses its POSTs before reading their bodies ([`Admission::is_full`]),
//! so under overload a retry is refused like any other command.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The per-domain bounds and the commands holding their slots. Cheap to
/// clone.
#[derive(Clone, Debug, Default)]
pub struct Admission {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    bounds: HashMap<String, Arc<Semaphore>>,
    bound: usize,
    expiry: Duration,
    unsettled: Mutex<Unsettled>,
}

#[derive(Debug, Default)]
struct Unsettled {
    by_command: HashMap<String, Slot>,
    /// Command ids in admission order, for expiry. An entry whose command
    /// settled (or was admitted again later) is skipped when reached.
    order: VecDeque<(Instant, String)>,
}

#[derive(Debug)]
struct Slot {
    admitted_at: Instant,
    _permit: OwnedSemaphorePermit,
}

/// Why a command was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Transient: the domain already has its bound of unsettled commands.
    #[error("{bound} commands are still being settled, retry later")]
    Saturated { bound: usize },
}

impl Admission {
    /// `bound` unsettled commands for each of `domains`, each counting for
    /// at most `expiry`. A domain not listed is not bounded.
    pub fn new<'d>(
        domains: impl IntoIterator<Item = &'d str>,
        bound: usize,
        expiry: Duration,
    ) -> Admission {
        let bounds = domains
            .into_iter()
            .map(|domain| (domain.to_owned(), Arc::new(Semaphore::new(bound))))
            .collect();
        Admission {
            inner: Arc::new(Inner {
                bounds,
                bound,
                expiry,
                unsettled: Mutex::default(),
            }),
        }
    }

    /// Takes a slot of `domain` for `command_id`, or refuses it. Never waits.
    pub fn admit(&self, domain: &str, command_id: &str) -> Result<(), Refused> {
        self.admit_at(domain, command_id, Instant::now())
    }

    fn admit_at(&self, domain: &str, command_id: &str, now: Instant) -> Result<(), Refused> {
        let Some(bound) = self.inner.bounds.get(domain) else {
            return Ok(());
        };
        // The map is touched for microseconds; a panic while holding it
        // leaves nothing half-done, so a poisoned lock is still usable.
        let mut unsettled = self
            .inner
            .unsettled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if unsettled.by_command.contains_key(command_id) {
            return Ok(());
        }
        unsettled.expire(now, self.inner.expiry);
        let permit = Arc::clone(bound)
            .try_acquire_owned()
            .map_err(|_| Refused::Saturated {
                bound: self.inner.bound,
            })?;
        unsettled.by_command.insert(
            command_id.to_owned(),
            Slot {
                admitted_at: now,
                _permit: permit,
            },
        );
        unsettled.order.push_back((now, command_id.to_owned()));
        Ok(())
    }

    /// Whether `domain` has no slot left, expired ones given back first: a
    /// cheap early answer, before a request's body is read. [`admit`]
    /// still decides.
    ///
    /// [`admit`]: Admission::admit
    pub fn is_full(&self, domain: &str) -> bool {
        let Some(bound) = self.inner.bounds.get(domain) else {
            return false;
        };
        if bound.available_permits() > 0 {
            return false;
        }
        let mut unsettled = self
            .inner
            .unsettled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        unsettled.expire(Instant::now(), self.inner.expiry);
        bound.available_permits() == 0
    }

    /// Gives back the slot of a command that settled, or that was never
    /// produced. A command this gateway did not admit is ignored.
    pub fn release(&self, command_id: &str) {
        let mut unsettled = self
            .inner
            .unsettled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        unsettled.by_command.remove(command_id);
    }

    /// How many commands of `domain` hold a slot.
    pub fn unsettled(&self, domain: &str) -> usize {
        self.inner.bounds.get(domain).map_or(0, |semaphore| {
            self.inner.bound - semaphore.available_permits()
        })
    }
}

impl Unsettled {
    /// Drops the front of the admission order while it is settled or past
    /// `expiry`, so the order stays as long as the commands in flight
    /// (amortised O(1): most commands settle in the order they came).
    fn expire(&mut self, now: Instant, expiry: Duration) {
        while let Some((admitted_at, command_id)) = self.order.front() {
            let current = self
                .by_command
                .get(command_id)
                .is_some_and(|slot| slot.admitted_at == *admitted_at);
            if current && now.duration_since(*admitted_at) < expiry {
                break;
            }
            if current {
                tracing::warn!(command_id = %command_id, "no outcome seen for an admitted command, giving its slot back");
                self.by_command.remove(command_id);
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPIRY: Duration = Duration::from_secs(30);

    #[test]
    fn past_the_bound_a_command_is_refused_until_one_settles() {
        let admission = Admission::new(["orders"], 2, EXPIRY);
        admission.admit("orders", "a").unwrap();
        admission.admit("orders", "b").unwrap();
        assert!(matches!(
            admission.admit("orders", "c"),
            Err(Refused::Saturated { .. })
        ));
        assert_eq!(admission.unsettled("orders"), 2);
        admission.release("a");
        admission.admit("orders", "c").unwrap();
        assert_eq!(admission.unsettled("orders"), 2);
    }

    #[test]
    fn a_full_domain_is_known_before_any_command_is_read() {
        let admission = Admission::new(["orders"], 1, EXPIRY);
        assert!(!admission.is_full("orders"));
        admission.admit("orders", "a").unwrap();
        assert!(admission.is_full("orders"));
        assert!(!admission.is_full("other"));
        admission.release("a");
        assert!(!admission.is_full("orders"));
    }

    #[test]
    fn a_retry_of_an_unsettled_command_reuses_its_slot() {
        let admission = Admission::new(["orders"], 1, EXPIRY);
        admission.admit("orders", "a").unwrap();
        admission.admit("orders", "a").unwrap();
        assert_eq!(admission.unsettled("orders"), 1);
    }

    #[test]
    fn domains_are_bounded_apart() {
        let admission = Admission::new(["orders", "payments"], 1, EXPIRY);
        admission.admit("orders", "a").unwrap();
        admission.admit("payments", "b").unwrap();
        assert!(admission.admit("orders", "c").is_err());
        // A domain without a bound (none declared) is never refused.
        admission.admit("other", "d").unwrap();
    }

    #[test]
    fn a_command_whose_outcome_never_comes_gives_its_slot_back_after_the_expiry() {
        let admission = Admission::new(["orders"], 1, EXPIRY);
        let start = Instant::now();
        admission.admit_at("orders", "parked", start).unwrap();
        assert!(admission
            .admit_at("orders", "next", start + EXPIRY - Duration::from_millis(1))
            .is_err());
        admission
            .admit_at("orders", "next", start + EXPIRY)
            .unwrap();
        assert_eq!(admission.unsettled("orders"), 1);
    }

    #[test]
    fn the_admission_order_does_not_outgrow_the_commands_in_flight() {
        let admission = Admission::new(["orders"], 4, EXPIRY);
        for n in 0..10_000 {
            let id = n.to_string();
            admission.admit("orders", &id).unwrap();
            admission.release(&id);
        }
        let unsettled = admission.inner.unsettled.lock().unwrap();
        assert!(unsettled.order.len() <= 1, "{}", unsettled.order.len());
        assert!(unsettled.by_command.is_empty());
    }

    #[test]
    fn releasing_a_command_admitted_elsewhere_is_harmless() {
        let admission = Admission::new(["orders"], 1, EXPIRY);
        admission.release("someone-elses");
        admission.admit("orders", "a").unwrap();
        admission.release("someone-elses");
        assert!(admission.admit("orders", "b").is_err());
    }
}
