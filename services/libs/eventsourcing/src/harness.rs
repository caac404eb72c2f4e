//! Given/when/then testing of a [`Decider`].
//!
//! ```
//! use foldline_eventsourcing::harness::TestHarness;
//! use foldline_eventsourcing::{Decider, DecisionContext, Rejection, RejectionKind, Timestamp};
//!
//! /// A light switch that refuses to be switched on twice.
//! struct Switch;
//!
//! #[derive(Clone, Debug, PartialEq)]
//! struct AlreadyOn;
//!
//! impl std::fmt::Display for AlreadyOn {
//!     fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         formatter.write_str("already on")
//!     }
//! }
//!
//! impl Rejection for AlreadyOn {
//!     fn code(&self) -> &'static str {
//!         "already_on"
//!     }
//!     fn kind(&self) -> RejectionKind {
//!         RejectionKind::Conflict
//!     }
//! }
//!
//! impl Decider for Switch {
//!     type State = bool;
//!     type Command = ();
//!     type Event = i64; // switched on at this instant
//!     type Rejection = AlreadyOn;
//!
//!     fn decide(on: &bool, _: &(), context: &DecisionContext) -> Result<i64, AlreadyOn> {
//!         if *on {
//!             Err(AlreadyOn)
//!         } else {
//!             Ok(context.now.0)
//!         }
//!     }
//!
//!     fn evolve(_: bool, _: &i64) -> bool {
//!         true
//!     }
//! }
//!
//! TestHarness::<Switch>::given([]).at(Timestamp(1_000)).when(()).then(1_000);
//! TestHarness::<Switch>::given([1_000])
//!     .when(())
//!     .then_rejected(AlreadyOn);
//! ```

use std::fmt::Debug;

use crate::decider::{Decider, DecisionContext};
use crate::ids::Timestamp;

/// A scenario: a history, then a command, then an expectation.
#[derive(Debug)]
pub struct TestHarness<D: Decider> {
    state: D::State,
    context: DecisionContext,
}

/// The outcome of `when`, waiting for an expectation.
#[derive(Debug)]
pub struct Decided<D: Decider> {
    state: D::State,
    result: Result<D::Event, D::Rejection>,
}

impl<D: Decider> TestHarness<D> {
    /// Starts from the state the given history folds to.
    pub fn given(history: impl IntoIterator<Item = D::Event>) -> Self {
        let state = history
            .into_iter()
            .fold(D::State::default(), |state, event| D::evolve(state, &event));
        Self {
            state,
            context: DecisionContext { now: Timestamp(0) },
        }
    }

    /// Sets the clock the decision sees.
    pub fn at(mut self, now: Timestamp) -> Self {
        self.context.now = now;
        self
    }

    pub fn when(self, command: D::Command) -> Decided<D> {
        let result = D::decide(&self.state, &command, &self.context);
        Decided {
            state: self.state,
            result,
        }
    }
}

impl<D: Decider> Decided<D>
where
    D::Event: PartialEq,
{
    /// Asserts the decision produced exactly `expected`; returns the state
    /// after it, for further checks.
    #[track_caller]
    pub fn then(self, expected: D::Event) -> D::State {
        match self.result {
            Ok(event) => {
                assert_eq!(event, expected, "decided a different event");
                D::evolve(self.state, &event)
            }
            Err(rejection) => panic!("expected {expected:?}, was rejected: {rejection:?}"),
        }
    }

    /// Asserts the decision was rejected with `expected`.
    #[track_caller]
    pub fn then_rejected(self, expected: D::Rejection) {
        match self.result {
            Ok(event) => panic!("expected rejection {expected:?}, decided {event:?}"),
            Err(rejection) => assert_eq!(rejection, expected),
        }
    }

    /// Gives the raw result, for assertions the helpers above do not cover.
    pub fn result(self) -> Result<D::Event, D::Rejection>
    where
        D::Rejection: Debug,
    {
        self.result
    }
}
