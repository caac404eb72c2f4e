//! The users decider's commands, events, state and rejections.

use foldline_eventsourcing::{Rejection, RejectionKind, Timestamp};
use serde::{Deserialize, Serialize};

use super::values::{ClaimKey, Note, Sealed, UserId};

/// Why an address is claimed: a new user's registration (carrying the rest
/// of its sealed profile), or an existing user's change of address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClaimPurpose {
    Register { name: Sealed, phone: Option<Sealed> },
    Change,
}

/// What happens to the phone on a profile change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PhoneChange {
    Keep,
    Set(Sealed),
    Clear,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserCommand {
    /// Addressed to the claim stream `claim_key`.
    ClaimEmail {
        claim_key: ClaimKey,
        user_id: UserId,
        email: Sealed,
        purpose: ClaimPurpose,
    },
    /// Addressed to the claim stream `claim_key`.
    ReleaseEmail {
        claim_key: ClaimKey,
        user_id: UserId,
        reason: Note,
    },
    /// Addressed to the user stream; issued once the claim succeeded.
    Register {
        user_id: UserId,
        claim_key: ClaimKey,
        email: Sealed,
        name: Sealed,
        phone: Option<Sealed>,
    },
    ChangeProfile {
        user_id: UserId,
        name: Option<Sealed>,
        phone: PhoneChange,
    },
    /// Issued once the new address's claim succeeded.
    ChangeEmail {
        user_id: UserId,
        claim_key: ClaimKey,
        email: Sealed,
    },
    Deactivate {
        user_id: UserId,
        reason: Note,
    },
    ErasePersonalData {
        user_id: UserId,
        requested_by: Note,
        reason: Note,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserEvent {
    EmailClaimed {
        claim_key: ClaimKey,
        user_id: UserId,
        email: Sealed,
        purpose: ClaimPurpose,
        at: Timestamp,
    },
    EmailReleased {
        claim_key: ClaimKey,
        user_id: UserId,
        reason: Note,
        at: Timestamp,
    },
    Registered {
        user_id: UserId,
        claim_key: ClaimKey,
        email: Sealed,
        name: Sealed,
        phone: Option<Sealed>,
        at: Timestamp,
    },
    /// A registration that could not apply; its claim must be released.
    RegistrationRefused {
        user_id: UserId,
        claim_key: ClaimKey,
        reason: String,
        at: Timestamp,
    },
    ProfileChanged {
        user_id: UserId,
        name: Option<Sealed>,
        phone: PhoneChange,
        at: Timestamp,
    },
    EmailChanged {
        user_id: UserId,
        previous_claim_key: ClaimKey,
        claim_key: ClaimKey,
        email: Sealed,
        at: Timestamp,
    },
    /// An address change that could not apply; the new claim must be released.
    EmailChangeRefused {
        user_id: UserId,
        claim_key: ClaimKey,
        reason: String,
        at: Timestamp,
    },
    Deactivated {
        user_id: UserId,
        reason: Note,
        at: Timestamp,
    },
    PersonalDataErased {
        user_id: UserId,
        claim_key: ClaimKey,
        requested_by: Note,
        reason: Note,
        at: Timestamp,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    Deactivated,
    Erased,
}

impl UserStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deactivated => "deactivated",
            Self::Erased => "erased",
        }
    }
}

/// A user's sealed personal data; gone once erased.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedProfile {
    pub email: Sealed,
    pub name: Sealed,
    pub phone: Option<Sealed>,
}

/// Who erased a user's personal data, when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    pub requested_by: Note,
    pub reason: Note,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub user_id: UserId,
    pub status: UserStatus,
    /// The claim the user holds (released after erasure).
    pub claim_key: ClaimKey,
    pub profile: Option<SealedProfile>,
    pub registered_at: Timestamp,
    pub updated_at: Timestamp,
    pub deactivation_reason: Option<Note>,
    pub erasure: Option<Erasure>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailClaim {
    pub claim_key: ClaimKey,
    /// Who holds the address now; `None` once released.
    pub holder: Option<UserId>,
    pub updated_at: Timestamp,
}

/// One stream of `users.events`: nothing yet, a user, or an email claim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UsersState {
    #[default]
    Empty,
    User(User),
    Claim(EmailClaim),
}

impl UsersState {
    pub fn user(&self) -> Option<&User> {
        match self {
            Self::User(user) => Some(user),
            _ => None,
        }
    }

    pub fn claim(&self) -> Option<&EmailClaim> {
        match self {
            Self::Claim(claim) => Some(claim),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserRejection {
    EmailTaken,
    EmailAlreadyYours,
    EmailUnchanged,
    ClaimNotFound,
    ClaimHeldByAnother,
    ClaimAlreadyReleased,
    UserNotFound,
    UserDeactivated,
    UserErased,
    AlreadyDeactivated,
    AlreadyErased,
    NothingToChange,
    NotAUser,
    NotAClaim,
}

impl std::fmt::Display for UserRejection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::EmailTaken => "the email address is registered to another user",
            Self::EmailAlreadyYours => "the user already has this email address",
            Self::EmailUnchanged => "the user already has this email address",
            Self::ClaimNotFound => "no user has claimed this email address",
            Self::ClaimHeldByAnother => "the email address is held by another user",
            Self::ClaimAlreadyReleased => "the email address is already released",
            Self::UserNotFound => "no such user",
            Self::UserDeactivated => "the user is deactivated",
            Self::UserErased => "the user's personal data is erased",
            Self::AlreadyDeactivated => "the user is already deactivated",
            Self::AlreadyErased => "the user's personal data is already erased",
            Self::NothingToChange => "the change names no field to change",
            Self::NotAUser => "the command addresses an email claim, not a user",
            Self::NotAClaim => "the command addresses a user, not an email claim",
        })
    }
}

impl Rejection for UserRejection {
    fn code(&self) -> &'static str {
        match self {
            Self::EmailTaken => "email_taken",
            Self::EmailAlreadyYours => "email_already_yours",
            Self::EmailUnchanged => "email_unchanged",
            Self::ClaimNotFound => "claim_not_found",
            Self::ClaimHeldByAnother => "claim_held_by_another",
            Self::ClaimAlreadyReleased => "claim_already_released",
            Self::UserNotFound => "user_not_found",
            Self::UserDeactivated => "user_deactivated",
            Self::UserErased => "user_erased",
            Self::AlreadyDeactivated => "already_deactivated",
            Self::AlreadyErased => "already_erased",
            Self::NothingToChange => "nothing_to_change",
            Self::NotAUser => "not_a_user",
            Self::NotAClaim => "not_a_claim",
        }
    }

    fn kind(&self) -> RejectionKind {
        match self {
            Self::ClaimNotFound | Self::UserNotFound => RejectionKind::NotFound,
            Self::NothingToChange | Self::NotAUser | Self::NotAClaim => RejectionKind::Invalid,
            _ => RejectionKind::Conflict,
        }
    }
}
