//! Users commands (on `users.commands`) and events (on `users.events`).
//!
//! The topic carries two kinds of aggregate: a user (keyed by its UUID) and
//! an email claim (keyed by `claim_key`, a keyed hash of the normalised
//! address, so the log never names the address). Personal data (email, name,
//! phone) only ever travels sealed: `*_sealed` fields are
//! `v1.<base64url(nonce ‖ XChaCha20-Poly1305 ciphertext)>` under the user's
//! own data key, which `ErasePersonalData` destroys (crypto-shredding; see
//! `services/users/src/design.md`).

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

use crate::envelope::{CommandMetadata, EventMetadata};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.users")]
pub struct ClaimEmail {
    pub metadata: CommandMetadata,
    /// The claim key: `claim-` and the hex HMAC-SHA256 of the normalised address.
    pub aggregate_id: String,
    pub user_id: String,
    /// `register` (a new user) or `change` (an existing user's new address).
    pub purpose: String,
    pub email_sealed: String,
    pub name_sealed: Option<String>,
    pub phone_sealed: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.users")]
pub struct ReleaseEmail {
    pub metadata: CommandMetadata,
    pub aggregate_id: String,
    pub user_id: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.users")]
pub struct RegisterUser {
    pub metadata: CommandMetadata,
    /// The user id.
    pub aggregate_id: String,
    pub claim_key: String,
    pub email_sealed: String,
    pub name_sealed: String,
    pub phone_sealed: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.users")]
pub struct ChangeProfile {
    pub metadata: CommandMetadata,
    pub aggregate_id: String,
    pub name_sealed: Option<String>,
    pub phone_sealed: Option<String>,
    pub clear_phone: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.users")]
pub struct ChangeEmail {
    pub metadata: CommandMetadata,
    pub aggregate_id: String,
    pub claim_key: String,
    pub email_sealed: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.users")]
pub struct DeactivateUser {
    pub metadata: CommandMetadata,
    pub aggregate_id: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.users")]
pub struct ErasePersonalData {
    pub metadata: CommandMetadata,
    pub aggregate_id: String,
    pub requested_by: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.users")]
pub struct EmailClaimed {
    pub metadata: EventMetadata,
    pub claim_key: String,
    pub user_id: String,
    pub purpose: String,
    pub email_sealed: String,
    pub name_sealed: Option<String>,
    pub phone_sealed: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.users")]
pub struct EmailReleased {
    pub metadata: EventMetadata,
    pub claim_key: String,
    pub user_id: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.users")]
pub struct UserRegistered {
    pub metadata: EventMetadata,
    pub user_id: String,
    pub claim_key: String,
    pub email_sealed: String,
    pub name_sealed: String,
    pub phone_sealed: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.users")]
pub struct UserRegistrationRefused {
    pub metadata: EventMetadata,
    pub user_id: String,
    pub claim_key: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.users")]
pub struct UserProfileChanged {
    pub metadata: EventMetadata,
    pub user_id: String,
    pub name_sealed: Option<String>,
    pub phone_sealed: Option<String>,
    pub phone_cleared: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.users")]
pub struct UserEmailChanged {
    pub metadata: EventMetadata,
    pub user_id: String,
    pub previous_claim_key: String,
    pub claim_key: String,
    pub email_sealed: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.users")]
pub struct UserEmailChangeRefused {
    pub metadata: EventMetadata,
    pub user_id: String,
    pub claim_key: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.users")]
pub struct UserDeactivated {
    pub metadata: EventMetadata,
    pub user_id: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.users")]
pub struct PersonalDataErased {
    pub metadata: EventMetadata,
    pub user_id: String,
    /// The claim the user held, released as a consequence.
    pub claim_key: String,
    pub requested_by: String,
    pub reason: String,
}

crate::command_union! {
    /// Any record of `users.commands`.
    pub enum UsersCommandRecord aggregate_id = aggregate_id {
        ClaimEmail(ClaimEmail) = "foldline.users.ClaimEmail",
        ReleaseEmail(ReleaseEmail) = "foldline.users.ReleaseEmail",
        Register(RegisterUser) = "foldline.users.RegisterUser",
        ChangeProfile(ChangeProfile) = "foldline.users.ChangeProfile",
        ChangeEmail(ChangeEmail) = "foldline.users.ChangeEmail",
        Deactivate(DeactivateUser) = "foldline.users.DeactivateUser",
        Erase(ErasePersonalData) = "foldline.users.ErasePersonalData",
    }
}

crate::event_union! {
    /// Any record of `users.events`.
    pub enum UsersEventRecord {
        EmailClaimed(EmailClaimed) = "foldline.users.EmailClaimed",
        EmailReleased(EmailReleased) = "foldline.users.EmailReleased",
        Registered(UserRegistered) = "foldline.users.UserRegistered",
        RegistrationRefused(UserRegistrationRefused) = "foldline.users.UserRegistrationRefused",
        ProfileChanged(UserProfileChanged) = "foldline.users.UserProfileChanged",
        EmailChanged(UserEmailChanged) = "foldline.users.UserEmailChanged",
        EmailChangeRefused(UserEmailChangeRefused) = "foldline.users.UserEmailChangeRefused",
        Deactivated(UserDeactivated) = "foldline.users.UserDeactivated",
        Erased(PersonalDataErased) = "foldline.users.PersonalDataErased",
    }
}
