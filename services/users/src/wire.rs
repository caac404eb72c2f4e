//! The users field mapping: domain ↔ wire. [`UsersWire`] declares it to
//! the platform, which derives deciding, stamping and folding from it.

use foldline_contracts::envelope::EventMetadata;
use foldline_contracts::record::{invalid_field as field, CommandRecord, EventRecord, WireError};
use foldline_contracts::users as wire;
use foldline_eventsourcing::Timestamp;
use foldline_platform::DomainWire;

use crate::domain::{
    ClaimKey, ClaimPurpose, Note, PhoneChange, Sealed, UserCommand, UserEvent, UserId, Users,
};

const REGISTER: &str = "register";
const CHANGE: &str = "change";

/// The users domain as the platform runs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct UsersWire;

impl DomainWire for UsersWire {
    type Decider = Users;
    type Commands = wire::UsersCommandRecord;
    type Events = wire::UsersEventRecord;

    fn command_from_wire(record: &Self::Commands) -> Result<UserCommand, WireError> {
        command_from_wire(record)
    }

    fn event_to_wire(event: &UserEvent, metadata: EventMetadata) -> Self::Events {
        event_to_wire(event, metadata)
    }

    fn event_from_wire(record: &Self::Events) -> Result<UserEvent, WireError> {
        event_from_wire(record)
    }
}

fn sealed(name: &'static str, text: &str) -> Result<Sealed, WireError> {
    field(name, Sealed::parse(text))
}

fn sealed_option(name: &'static str, text: &Option<String>) -> Result<Option<Sealed>, WireError> {
    text.as_deref().map(|text| sealed(name, text)).transpose()
}

fn user_id(name: &'static str, text: &str) -> Result<UserId, WireError> {
    field(name, UserId::parse(text))
}

fn claim_key(name: &'static str, text: &str) -> Result<ClaimKey, WireError> {
    field(name, ClaimKey::parse(text))
}

fn note(name: &'static str, text: &str) -> Result<Note, WireError> {
    field(name, Note::parse(text))
}

fn purpose_from_wire(
    purpose: &str,
    name: &Option<String>,
    phone: &Option<String>,
) -> Result<ClaimPurpose, WireError> {
    match (purpose, name) {
        (REGISTER, Some(name)) => Ok(ClaimPurpose::Register {
            name: sealed("name_sealed", name)?,
            phone: sealed_option("phone_sealed", phone)?,
        }),
        (REGISTER, None) => Err(WireError::InvalidField {
            field: "name_sealed",
            reason: "a registration claim carries the name".to_owned(),
        }),
        (CHANGE, None) if phone.is_none() => Ok(ClaimPurpose::Change),
        (CHANGE, _) => Err(WireError::InvalidField {
            field: "name_sealed",
            reason: "an address change claim carries no profile".to_owned(),
        }),
        _ => Err(WireError::InvalidField {
            field: "purpose",
            reason: format!("must be {REGISTER} or {CHANGE}"),
        }),
    }
}

fn purpose_to_wire(purpose: &ClaimPurpose) -> (String, Option<String>, Option<String>) {
    match purpose {
        ClaimPurpose::Register { name, phone } => (
            REGISTER.to_owned(),
            Some(name.as_str().to_owned()),
            phone.as_ref().map(|phone| phone.as_str().to_owned()),
        ),
        ClaimPurpose::Change => (CHANGE.to_owned(), None, None),
    }
}

fn phone_from_wire(phone: &Option<String>, clear: bool) -> Result<PhoneChange, WireError> {
    match (phone, clear) {
        (None, false) => Ok(PhoneChange::Keep),
        (None, true) => Ok(PhoneChange::Clear),
        (Some(phone), false) => Ok(PhoneChange::Set(sealed("phone_sealed", phone)?)),
        (Some(_), true) => Err(WireError::InvalidField {
            field: "phone_sealed",
            reason: "a phone cannot be set and cleared at once".to_owned(),
        }),
    }
}

fn phone_to_wire(phone: &PhoneChange) -> (Option<String>, bool) {
    match phone {
        PhoneChange::Keep => (None, false),
        PhoneChange::Clear => (None, true),
        PhoneChange::Set(phone) => (Some(phone.as_str().to_owned()), false),
    }
}

fn text(sealed: &Sealed) -> String {
    sealed.as_str().to_owned()
}

pub fn command_from_wire(record: &wire::UsersCommandRecord) -> Result<UserCommand, WireError> {
    use wire::UsersCommandRecord as W;
    let target = record.aggregate_id();
    Ok(match record {
        W::ClaimEmail(claim) => UserCommand::ClaimEmail {
            claim_key: claim_key("aggregate_id", target)?,
            user_id: user_id("user_id", &claim.user_id)?,
            email: sealed("email_sealed", &claim.email_sealed)?,
            purpose: purpose_from_wire(&claim.purpose, &claim.name_sealed, &claim.phone_sealed)?,
        },
        W::ReleaseEmail(release) => UserCommand::ReleaseEmail {
            claim_key: claim_key("aggregate_id", target)?,
            user_id: user_id("user_id", &release.user_id)?,
            reason: note("reason", &release.reason)?,
        },
        W::Register(register) => UserCommand::Register {
            user_id: user_id("aggregate_id", target)?,
            claim_key: claim_key("claim_key", &register.claim_key)?,
            email: sealed("email_sealed", &register.email_sealed)?,
            name: sealed("name_sealed", &register.name_sealed)?,
            phone: sealed_option("phone_sealed", &register.phone_sealed)?,
        },
        W::ChangeProfile(change) => UserCommand::ChangeProfile {
            user_id: user_id("aggregate_id", target)?,
            name: sealed_option("name_sealed", &change.name_sealed)?,
            phone: phone_from_wire(&change.phone_sealed, change.clear_phone)?,
        },
        W::ChangeEmail(change) => UserCommand::ChangeEmail {
            user_id: user_id("aggregate_id", target)?,
            claim_key: claim_key("claim_key", &change.claim_key)?,
            email: sealed("email_sealed", &change.email_sealed)?,
        },
        W::Deactivate(deactivate) => UserCommand::Deactivate {
            user_id: user_id("aggregate_id", target)?,
            reason: note("reason", &deactivate.reason)?,
        },
        W::Erase(erase) => UserCommand::ErasePersonalData {
            user_id: user_id("aggregate_id", target)?,
            requested_by: field("requested_by", Note::parse_required(&erase.requested_by))?,
            reason: field("reason", Note::parse_required(&erase.reason))?,
        },
    })
}

pub fn event_to_wire(event: &UserEvent, metadata: EventMetadata) -> wire::UsersEventRecord {
    use wire::UsersEventRecord as W;
    match event {
        UserEvent::EmailClaimed {
            claim_key,
            user_id,
            email,
            purpose,
            ..
        } => {
            let (purpose, name_sealed, phone_sealed) = purpose_to_wire(purpose);
            W::EmailClaimed(wire::EmailClaimed {
                metadata,
                claim_key: claim_key.to_string(),
                user_id: user_id.to_string(),
                purpose,
                email_sealed: text(email),
                name_sealed,
                phone_sealed,
            })
        }
        UserEvent::EmailReleased {
            claim_key,
            user_id,
            reason,
            ..
        } => W::EmailReleased(wire::EmailReleased {
            metadata,
            claim_key: claim_key.to_string(),
            user_id: user_id.to_string(),
            reason: reason.as_str().to_owned(),
        }),
        UserEvent::Registered {
            user_id,
            claim_key,
            email,
            name,
            phone,
            ..
        } => W::Registered(wire::UserRegistered {
            metadata,
            user_id: user_id.to_string(),
            claim_key: claim_key.to_string(),
            email_sealed: text(email),
            name_sealed: text(name),
            phone_sealed: phone.as_ref().map(text),
        }),
        UserEvent::RegistrationRefused {
            user_id,
            claim_key,
            reason,
            ..
        } => W::RegistrationRefused(wire::UserRegistrationRefused {
            metadata,
            user_id: user_id.to_string(),
            claim_key: claim_key.to_string(),
            reason: reason.clone(),
        }),
        UserEvent::ProfileChanged {
            user_id,
            name,
            phone,
            ..
        } => {
            let (phone_sealed, phone_cleared) = phone_to_wire(phone);
            W::ProfileChanged(wire::UserProfileChanged {
                metadata,
                user_id: user_id.to_string(),
                name_sealed: name.as_ref().map(text),
                phone_sealed,
                phone_cleared,
            })
        }
        UserEvent::EmailChanged {
            user_id,
            previous_claim_key,
            claim_key,
            email,
            ..
        } => W::EmailChanged(wire::UserEmailChanged {
            metadata,
            user_id: user_id.to_string(),
            previous_claim_key: previous_claim_key.to_string(),
            claim_key: claim_key.to_string(),
            email_sealed: text(email),
        }),
        UserEvent::EmailChangeRefused {
            user_id,
            claim_key,
            reason,
            ..
        } => W::EmailChangeRefused(wire::UserEmailChangeRefused {
            metadata,
            user_id: user_id.to_string(),
            claim_key: claim_key.to_string(),
            reason: reason.clone(),
        }),
        UserEvent::Deactivated {
            user_id, reason, ..
        } => W::Deactivated(wire::UserDeactivated {
            metadata,
            user_id: user_id.to_string(),
            reason: reason.as_str().to_owned(),
        }),
        UserEvent::PersonalDataErased {
            user_id,
            claim_key,
            requested_by,
            reason,
            ..
        } => W::Erased(wire::PersonalDataErased {
            metadata,
            user_id: user_id.to_string(),
            claim_key: claim_key.to_string(),
            requested_by: requested_by.as_str().to_owned(),
            reason: reason.as_str().to_owned(),
        }),
    }
}

/// The domain event a wire record carries; a recorded rejection carries none.
pub fn event_from_wire(record: &wire::UsersEventRecord) -> Result<UserEvent, WireError> {
    use wire::UsersEventRecord as W;
    let at = Timestamp(record.metadata().occurred_at);
    Ok(match record {
        W::EmailClaimed(claimed) => UserEvent::EmailClaimed {
            claim_key: claim_key("claim_key", &claimed.claim_key)?,
            user_id: user_id("user_id", &claimed.user_id)?,
            email: sealed("email_sealed", &claimed.email_sealed)?,
            purpose: purpose_from_wire(
                &claimed.purpose,
                &claimed.name_sealed,
                &claimed.phone_sealed,
            )?,
            at,
        },
        W::EmailReleased(released) => UserEvent::EmailReleased {
            claim_key: claim_key("claim_key", &released.claim_key)?,
            user_id: user_id("user_id", &released.user_id)?,
            reason: note("reason", &released.reason)?,
            at,
        },
        W::Registered(registered) => UserEvent::Registered {
            user_id: user_id("user_id", &registered.user_id)?,
            claim_key: claim_key("claim_key", &registered.claim_key)?,
            email: sealed("email_sealed", &registered.email_sealed)?,
            name: sealed("name_sealed", &registered.name_sealed)?,
            phone: sealed_option("phone_sealed", &registered.phone_sealed)?,
            at,
        },
        W::RegistrationRefused(refused) => UserEvent::RegistrationRefused {
            user_id: user_id("user_id", &refused.user_id)?,
            claim_key: claim_key("claim_key", &refused.claim_key)?,
            reason: refused.reason.clone(),
            at,
        },
        W::ProfileChanged(changed) => UserEvent::ProfileChanged {
            user_id: user_id("user_id", &changed.user_id)?,
            name: sealed_option("name_sealed", &changed.name_sealed)?,
            phone: phone_from_wire(&changed.phone_sealed, changed.phone_cleared)?,
            at,
        },
        W::EmailChanged(changed) => UserEvent::EmailChanged {
            user_id: user_id("user_id", &changed.user_id)?,
            previous_claim_key: claim_key("previous_claim_key", &changed.previous_claim_key)?,
            claim_key: claim_key("claim_key", &changed.claim_key)?,
            email: sealed("email_sealed", &changed.email_sealed)?,
            at,
        },
        W::EmailChangeRefused(refused) => UserEvent::EmailChangeRefused {
            user_id: user_id("user_id", &refused.user_id)?,
            claim_key: claim_key("claim_key", &refused.claim_key)?,
            reason: refused.reason.clone(),
            at,
        },
        W::Deactivated(deactivated) => UserEvent::Deactivated {
            user_id: user_id("user_id", &deactivated.user_id)?,
            reason: note("reason", &deactivated.reason)?,
            at,
        },
        W::Erased(erased) => UserEvent::PersonalDataErased {
            user_id: user_id("user_id", &erased.user_id)?,
            claim_key: claim_key("claim_key", &erased.claim_key)?,
            requested_by: note("requested_by", &erased.requested_by)?,
            reason: note("reason", &erased.reason)?,
            at,
        },
        W::CommandRejected(_) => {
            return Err(WireError::UnknownRecord {
                record: record.record_name().to_owned(),
            })
        }
    })
}
