//! What each admitted users event obliges the relay to do next (pure), and
//! the relay's I/O that does it. Together they are the claim-then-register
//! step: no cross-aggregate transaction, a durable outbox instead (see
//! `foldline_platform::outbox` and `design.md`).
//!
//! | event | follow-up |
//! |---|---|
//! | `EmailClaimed` (register) | `RegisterUser` on the user |
//! | `EmailClaimed` (change) | `ChangeEmail` on the user |
//! | `UserRegistrationRefused`, `UserEmailChangeRefused` | `ReleaseEmail` of the claim that cannot be used |
//! | `UserEmailChanged` | `ReleaseEmail` of the previous claim |
//! | `PersonalDataErased` | destroy the user's data key, then `ReleaseEmail` |

use foldline_contracts::envelope::EventMetadata;
use foldline_contracts::users::{self as wire, UsersCommandRecord};
use foldline_platform::gated::Admitted;
use foldline_platform::outbox::{
    follow_up_metadata, send_command, FollowUpError, Performer, Reactor,
};
use foldline_platform::personal_data::destroy_data_key;
use foldline_platform::store::Store;
use rdkafka::producer::FutureProducer;
use serde::{Deserialize, Serialize};

use crate::domain::{ClaimPurpose, UserEvent};
use crate::wire::UsersWire;

/// Who the relay's commands are issued by.
pub const RELAY: &str = "users-follow-up-relay";

/// One follow-up, as kept in the outbox: everything needed to perform it,
/// the cause's metadata included (command ids derive from it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FollowUp {
    Register {
        cause: EventMetadata,
        user_id: String,
        claim_key: String,
        email_sealed: String,
        name_sealed: String,
        phone_sealed: Option<String>,
    },
    ChangeEmail {
        cause: EventMetadata,
        user_id: String,
        claim_key: String,
        email_sealed: String,
    },
    Release {
        cause: EventMetadata,
        user_id: String,
        claim_key: String,
        reason: String,
    },
    DestroyDataKey {
        user_id: String,
        at: i64,
    },
}

#[derive(Clone, Copy, Debug, Default)]
pub struct UsersFollowUps;

impl Reactor for UsersFollowUps {
    type Wire = UsersWire;
    type FollowUp = FollowUp;
    const NAME: &'static str = "follow_ups";

    fn react(&self, admitted: &Admitted<'_, UsersWire>) -> Vec<FollowUp> {
        follow_ups(admitted.event, admitted.metadata)
    }
}

fn release(cause: &EventMetadata, user_id: String, claim_key: String, reason: &str) -> FollowUp {
    FollowUp::Release {
        cause: cause.clone(),
        user_id,
        claim_key,
        reason: reason.to_owned(),
    }
}

/// The follow-ups of one admitted event. Pure.
pub fn follow_ups(event: &UserEvent, cause: &EventMetadata) -> Vec<FollowUp> {
    match event {
        UserEvent::EmailClaimed {
            claim_key,
            user_id,
            email,
            purpose: ClaimPurpose::Register { name, phone },
            ..
        } => vec![FollowUp::Register {
            cause: cause.clone(),
            user_id: user_id.to_string(),
            claim_key: claim_key.to_string(),
            email_sealed: email.as_str().to_owned(),
            name_sealed: name.as_str().to_owned(),
            phone_sealed: phone.as_ref().map(|phone| phone.as_str().to_owned()),
        }],
        UserEvent::EmailClaimed {
            claim_key,
            user_id,
            email,
            purpose: ClaimPurpose::Change,
            ..
        } => vec![FollowUp::ChangeEmail {
            cause: cause.clone(),
            user_id: user_id.to_string(),
            claim_key: claim_key.to_string(),
            email_sealed: email.as_str().to_owned(),
        }],
        UserEvent::RegistrationRefused {
            user_id, claim_key, ..
        } => vec![release(
            cause,
            user_id.to_string(),
            claim_key.to_string(),
            "the registration could not apply",
        )],
        UserEvent::EmailChangeRefused {
            user_id, claim_key, ..
        } => vec![release(
            cause,
            user_id.to_string(),
            claim_key.to_string(),
            "the address change could not apply",
        )],
        UserEvent::EmailChanged {
            user_id,
            previous_claim_key,
            ..
        } => vec![release(
            cause,
            user_id.to_string(),
            previous_claim_key.to_string(),
            "the user changed address",
        )],
        UserEvent::PersonalDataErased {
            user_id, claim_key, ..
        } => vec![
            FollowUp::DestroyDataKey {
                user_id: user_id.to_string(),
                at: cause.occurred_at,
            },
            release(
                cause,
                user_id.to_string(),
                claim_key.to_string(),
                "the user's personal data was erased",
            ),
        ],
        UserEvent::EmailReleased { .. }
        | UserEvent::Registered { .. }
        | UserEvent::ProfileChanged { .. }
        | UserEvent::Deactivated { .. } => Vec::new(),
    }
}

/// The wire command a follow-up issues, if it issues one.
pub fn follow_up_command(follow_up: &FollowUp) -> Option<UsersCommandRecord> {
    Some(match follow_up {
        FollowUp::Register {
            cause,
            user_id,
            claim_key,
            email_sealed,
            name_sealed,
            phone_sealed,
        } => UsersCommandRecord::Register(wire::RegisterUser {
            metadata: follow_up_metadata(cause, "register", RELAY),
            aggregate_id: user_id.clone(),
            claim_key: claim_key.clone(),
            email_sealed: email_sealed.clone(),
            name_sealed: name_sealed.clone(),
            phone_sealed: phone_sealed.clone(),
        }),
        FollowUp::ChangeEmail {
            cause,
            user_id,
            claim_key,
            email_sealed,
        } => UsersCommandRecord::ChangeEmail(wire::ChangeEmail {
            metadata: follow_up_metadata(cause, "change-email", RELAY),
            aggregate_id: user_id.clone(),
            claim_key: claim_key.clone(),
            email_sealed: email_sealed.clone(),
        }),
        FollowUp::Release {
            cause,
            user_id,
            claim_key,
            reason,
        } => UsersCommandRecord::ReleaseEmail(wire::ReleaseEmail {
            metadata: follow_up_metadata(cause, &format!("release/{claim_key}"), RELAY),
            aggregate_id: claim_key.clone(),
            user_id: user_id.clone(),
            reason: reason.clone(),
        }),
        FollowUp::DestroyDataKey { .. } => return None,
    })
}

/// Performs follow-ups: commands to `users.commands`, key destruction in
/// the store. Both idempotent (derived command ids; a tombstone).
pub struct UsersPerformer {
    pub producer: FutureProducer,
    pub codec: foldline_platform::codec::Codec,
    pub commands_topic: String,
    pub store: Store,
}

impl std::fmt::Debug for UsersPerformer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("UsersPerformer")
            .field("commands_topic", &self.commands_topic)
            .finish_non_exhaustive()
    }
}

impl Performer<FollowUp> for UsersPerformer {
    async fn perform(&self, follow_up: &FollowUp) -> Result<(), FollowUpError> {
        if let FollowUp::DestroyDataKey { user_id, at } = follow_up {
            return destroy_data_key(&self.store, user_id, *at)
                .await
                .map_err(|error| match error.is_transient() {
                    true => FollowUpError::Transient(error.to_string()),
                    false => FollowUpError::Permanent(error.to_string()),
                });
        }
        match follow_up_command(follow_up) {
            Some(command) => {
                send_command(&self.producer, &self.codec, &self.commands_topic, &command).await
            }
            None => Ok(()),
        }
    }
}
