//! The shape of a pure domain.

use std::fmt::Debug;

use crate::ids::Timestamp;
use crate::rejection::Rejection;

/// What a decision may know besides the state and the command.
///
/// The clock is the command's own timestamp (stamped once at the edge), so
/// deciding the same command against the same state always yields the same
/// event, on every host, on every redelivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecisionContext {
    pub now: Timestamp,
}

/// A pure aggregate: `decide` turns a command into at most one event or a
/// rejection; `evolve` folds an event into state.
///
/// One command yields exactly one event. That is a deliberate constraint: a
/// decision is then a single Kafka record, which is atomic on every broker, so
/// exactly-once effect holds without broker transactions (see the command
/// processor's `design.md`). A decision that needs several facts is modelled
/// as one richer event.
pub trait Decider {
    type State: Default + Clone + Debug;
    type Command: Debug;
    type Event: Clone + Debug;
    type Rejection: Rejection;

    /// Decides what `command` means given `state`. Never does I/O.
    fn decide(
        state: &Self::State,
        command: &Self::Command,
        context: &DecisionContext,
    ) -> Result<Self::Event, Self::Rejection>;

    /// Folds one event into the state. Total: an event that was decided
    /// against this state always applies.
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;

    /// Folds a whole history from the initial state.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self::State
    where
        Self::Event: 'a,
    {
        events
            .into_iter()
            .fold(Self::State::default(), |state, event| {
                Self::evolve(state, event)
            })
    }
}
