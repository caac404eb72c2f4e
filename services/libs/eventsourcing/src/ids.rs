//! Typed ids and their deterministic derivations.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace for every name-based (v5) id Foldline derives. Fixed forever:
/// changing it would change every derived id in the log.
const FOLDLINE_NAMESPACE: Uuid = Uuid::from_u128(0x6f1d_a7b4_3c2e_4e0a_9a51_2b7c_d0e4_f318);

/// Why text is not an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("id must not be empty")]
    Empty,
    #[error("id must be a uuid")]
    Malformed,
}

/// Declares a uuid newtype: `Display` in hyphenated form, parsing of every
/// textual uuid form (`parse`, `FromStr`), serde as the bare uuid. The one
/// definition of every id type, the platform's and the domains' alike; the
/// invoking crate needs `serde` and `uuid` as dependencies.
#[macro_export]
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
            ::serde::Serialize, ::serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub ::uuid::Uuid);

        impl $name {
            pub const fn from_uuid(uuid: ::uuid::Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> ::uuid::Uuid {
                self.0
            }

            /// Parses any textual uuid form the `uuid` crate accepts
            /// (hyphenated, simple, braced, urn).
            pub fn parse(text: &str) -> Result<Self, $crate::ids::IdError> {
                if text.is_empty() {
                    return Err($crate::ids::IdError::Empty);
                }
                ::uuid::Uuid::parse_str(text)
                    .map(Self)
                    .map_err(|_| $crate::ids::IdError::Malformed)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, formatter: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                self.0.hyphenated().fmt(formatter)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::ids::IdError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::parse(text)
            }
        }

        impl From<::uuid::Uuid> for $name {
            fn from(uuid: ::uuid::Uuid) -> Self {
                Self(uuid)
            }
        }
    };
}

uuid_id!(
    /// Identifies one command; the idempotency unit of the whole platform.
    CommandId
);
uuid_id!(
    /// Identifies one event; derived from the command that decided it.
    EventId
);
uuid_id!(
    /// Ties together everything one client request caused.
    CorrelationId
);

impl CommandId {
    /// The command id for a client's `Idempotency-Key`: the same client and
    /// key always name the same command, on every gateway instance.
    pub fn from_idempotency_key(client: &str, key: &str) -> Self {
        let name = format!("idempotency/{}/{}", client.len(), client) + "/" + key;
        Self(Uuid::new_v5(&FOLDLINE_NAMESPACE, name.as_bytes()))
    }

    /// The command a process manager issues in reaction to an event: a
    /// redelivered event yields the same command, which the target dedupes.
    pub fn caused_by(event: EventId, target: &str) -> Self {
        let name = format!("reaction/{}/{target}", event.0.hyphenated());
        Self(Uuid::new_v5(&FOLDLINE_NAMESPACE, name.as_bytes()))
    }
}

impl EventId {
    /// The id of the event a command decided. Deterministic, so a producer
    /// that retries, a processor that redecides after a crash and a zombie
    /// all write the same id for the same decision.
    pub fn decided_by(command: CommandId) -> Self {
        let name = format!("event/{}", command.0.hyphenated());
        Self(Uuid::new_v5(&FOLDLINE_NAMESPACE, name.as_bytes()))
    }
}

/// Milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn millis(&self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let command = CommandId(Uuid::from_u128(42));
        assert_eq!(EventId::decided_by(command), EventId::decided_by(command));
        assert_ne!(
            EventId::decided_by(command),
            EventId::decided_by(CommandId(Uuid::from_u128(43)))
        );
        let event = EventId::decided_by(command);
        assert_ne!(
            CommandId::caused_by(event, "payments"),
            CommandId::caused_by(event, "notify")
        );
    }

    #[test]
    fn idempotency_keys_do_not_collide_across_clients() {
        // "a/b" + "c" must not equal "a" + "b/c".
        assert_ne!(
            CommandId::from_idempotency_key("a/b", "c"),
            CommandId::from_idempotency_key("a", "b/c")
        );
        assert_eq!(
            CommandId::from_idempotency_key("client", "key-1"),
            CommandId::from_idempotency_key("client", "key-1")
        );
    }

    #[test]
    fn ids_round_trip_through_text() {
        let id = CommandId(Uuid::from_u128(7));
        assert_eq!(id.to_string().parse::<CommandId>().ok(), Some(id));
        assert_eq!("not-a-uuid".parse::<CommandId>(), Err(IdError::Malformed));
        assert_eq!("".parse::<CommandId>(), Err(IdError::Empty));
    }
}
