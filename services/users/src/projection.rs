//! The users read models, as a pure projection of admitted `users.events`.
//!
//! Tables (Scylla-shaped: partition key, clustering key):
//! - `user_by_id` (user id, —): the user as the log made it, its personal
//!   data still sealed; dropped (the row keeps no profile) on erasure;
//! - `user_by_email` (claim key, —): which user holds an address, keyed by
//!   the address's keyed hash, never the address.
//!
//! No row ever holds plaintext: the gateway opens sealed fields per request
//! with the user's data key, so after erasure (key destroyed, profile
//! dropped) nothing in the store can be read back into personal data.

use foldline_contracts::envelope::EventMetadata;
use foldline_eventsourcing::Decider;
use foldline_platform::gated::{json_row, read_json_row, Admitted, DomainProjection};
use foldline_platform::projector::{CurrentRows, ProjectionError};
use foldline_platform::store::{RowKey, StoredRow};
use serde::{Deserialize, Serialize};

use crate::domain::{EmailClaim, User, UserEvent, UserId, Users, UsersState};
use crate::wire::UsersWire;

pub const USER_BY_ID: &str = "user_by_id";
pub const USER_BY_EMAIL: &str = "user_by_email";

/// `user_by_id` row. `user` is `None` for a stream that only ever saw a
/// refused follow-up (no such user).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UserRow {
    pub version: u64,
    pub user: Option<User>,
}

/// `user_by_email` row.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EmailRow {
    pub version: u64,
    pub holder: Option<UserId>,
    pub updated_at: i64,
}

pub fn user_key(user_id: &str) -> RowKey {
    RowKey::new(USER_BY_ID, user_id.as_bytes().to_vec(), Vec::new())
}

pub fn email_key(claim_key: &str) -> RowKey {
    RowKey::new(USER_BY_EMAIL, claim_key.as_bytes().to_vec(), Vec::new())
}

fn is_claim_event(event: &UserEvent) -> bool {
    matches!(
        event,
        UserEvent::EmailClaimed { .. } | UserEvent::EmailReleased { .. }
    )
}

#[derive(Clone, Copy, Debug, Default)]
pub struct UsersProjection;

impl DomainProjection for UsersProjection {
    type Wire = UsersWire;
    const NAME: &'static str = "users";

    fn rows_to_read(&self, event: &UserEvent, metadata: &EventMetadata) -> Vec<RowKey> {
        match is_claim_event(event) {
            true => vec![email_key(&metadata.aggregate_id)],
            false => vec![user_key(&metadata.aggregate_id)],
        }
    }

    fn project(
        &self,
        admitted: &Admitted<'_, UsersWire>,
        current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        let aggregate_id = &admitted.metadata.aggregate_id;
        if is_claim_event(admitted.event) {
            let key = email_key(aggregate_id);
            let claim = Users::evolve(UsersState::Empty, admitted.event);
            let row = EmailRow {
                version: admitted.version,
                holder: claim.claim().and_then(|claim: &EmailClaim| claim.holder),
                updated_at: admitted.metadata.occurred_at,
            };
            return Ok(vec![(key, json_row(USER_BY_EMAIL, admitted.offset, &row)?)]);
        }
        let key = user_key(aggregate_id);
        let row = read_json_row::<UserRow>(&key, current)?.unwrap_or_default();
        let state = row.user.map_or(UsersState::Empty, UsersState::User);
        let next = UserRow {
            version: admitted.version,
            user: Users::evolve(state, admitted.event).user().cloned(),
        };
        Ok(vec![(key, json_row(USER_BY_ID, admitted.offset, &next)?)])
    }
}
