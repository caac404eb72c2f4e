//! [`Users`]: the decider of both kinds of stream in `users.events`.
//!
//! Email uniqueness is the claim stream's job: an address (by its keyed
//! hash) is held by at most one user, because its claim stream decides
//! claims one at a time. A user is registered, or switches address, only
//! after its claim succeeded (the follow-up relay issues that command), and
//! a follow-up that cannot apply is recorded as a refusal *event*, never a
//! rejection, so the relay sees it and releases the claim. See
//! `../design.md`.

use foldline_eventsourcing::{Decider, DecisionContext};

use super::model::{
    EmailClaim, Erasure, PhoneChange, SealedProfile, User, UserCommand, UserEvent, UserRejection,
    UserStatus, UsersState,
};

#[derive(Debug)]
pub struct Users;

impl Decider for Users {
    type State = UsersState;
    type Command = UserCommand;
    type Event = UserEvent;
    type Rejection = UserRejection;

    fn decide(
        state: &UsersState,
        command: &UserCommand,
        context: &DecisionContext,
    ) -> Result<UserEvent, UserRejection> {
        let at = context.now;
        match command {
            UserCommand::ClaimEmail {
                claim_key,
                user_id,
                email,
                purpose,
            } => {
                match state {
                    UsersState::User(_) => return Err(UserRejection::NotAClaim),
                    UsersState::Claim(EmailClaim {
                        holder: Some(holder),
                        ..
                    }) if holder == user_id => return Err(UserRejection::EmailAlreadyYours),
                    UsersState::Claim(EmailClaim {
                        holder: Some(_), ..
                    }) => return Err(UserRejection::EmailTaken),
                    UsersState::Empty | UsersState::Claim(EmailClaim { holder: None, .. }) => {}
                }
                Ok(UserEvent::EmailClaimed {
                    claim_key: claim_key.clone(),
                    user_id: *user_id,
                    email: email.clone(),
                    purpose: purpose.clone(),
                    at,
                })
            }
            UserCommand::ReleaseEmail {
                claim_key,
                user_id,
                reason,
            } => match state {
                UsersState::Empty => Err(UserRejection::ClaimNotFound),
                UsersState::User(_) => Err(UserRejection::NotAClaim),
                UsersState::Claim(EmailClaim { holder: None, .. }) => {
                    Err(UserRejection::ClaimAlreadyReleased)
                }
                UsersState::Claim(EmailClaim {
                    holder: Some(holder),
                    ..
                }) if holder != user_id => Err(UserRejection::ClaimHeldByAnother),
                UsersState::Claim(_) => Ok(UserEvent::EmailReleased {
                    claim_key: claim_key.clone(),
                    user_id: *user_id,
                    reason: reason.clone(),
                    at,
                }),
            },
            UserCommand::Register {
                user_id,
                claim_key,
                email,
                name,
                phone,
            } => match state {
                UsersState::Claim(_) => Err(UserRejection::NotAUser),
                UsersState::User(_) => Ok(UserEvent::RegistrationRefused {
                    user_id: *user_id,
                    claim_key: claim_key.clone(),
                    reason: "the user id is already registered".to_owned(),
                    at,
                }),
                UsersState::Empty => Ok(UserEvent::Registered {
                    user_id: *user_id,
                    claim_key: claim_key.clone(),
                    email: email.clone(),
                    name: name.clone(),
                    phone: phone.clone(),
                    at,
                }),
            },
            UserCommand::ChangeProfile {
                user_id,
                name,
                phone,
            } => {
                active_user(state)?;
                if name.is_none() && *phone == PhoneChange::Keep {
                    return Err(UserRejection::NothingToChange);
                }
                Ok(UserEvent::ProfileChanged {
                    user_id: *user_id,
                    name: name.clone(),
                    phone: phone.clone(),
                    at,
                })
            }
            UserCommand::ChangeEmail {
                user_id,
                claim_key,
                email,
            } => {
                let refused = |reason: UserRejection| UserEvent::EmailChangeRefused {
                    user_id: *user_id,
                    claim_key: claim_key.clone(),
                    reason: reason.to_string(),
                    at,
                };
                match active_user(state) {
                    Err(UserRejection::NotAUser) => Err(UserRejection::NotAUser),
                    // The claim is held for this user: releasing it is the
                    // only safe answer when the change cannot apply.
                    Err(reason) => Ok(refused(reason)),
                    Ok(user) if &user.claim_key == claim_key => Err(UserRejection::EmailUnchanged),
                    Ok(user) => Ok(UserEvent::EmailChanged {
                        user_id: *user_id,
                        previous_claim_key: user.claim_key.clone(),
                        claim_key: claim_key.clone(),
                        email: email.clone(),
                        at,
                    }),
                }
            }
            UserCommand::Deactivate { user_id, reason } => {
                let user = existing_user(state)?;
                match user.status {
                    UserStatus::Deactivated => Err(UserRejection::AlreadyDeactivated),
                    UserStatus::Erased => Err(UserRejection::UserErased),
                    UserStatus::Active => Ok(UserEvent::Deactivated {
                        user_id: *user_id,
                        reason: reason.clone(),
                        at,
                    }),
                }
            }
            UserCommand::ErasePersonalData {
                user_id,
                requested_by,
                reason,
            } => {
                let user = existing_user(state)?;
                if user.status == UserStatus::Erased {
                    return Err(UserRejection::AlreadyErased);
                }
                Ok(UserEvent::PersonalDataErased {
                    user_id: *user_id,
                    claim_key: user.claim_key.clone(),
                    requested_by: requested_by.clone(),
                    reason: reason.clone(),
                    at,
                })
            }
        }
    }

    fn evolve(state: UsersState, event: &UserEvent) -> UsersState {
        match (state, event) {
            (
                _,
                UserEvent::EmailClaimed {
                    claim_key,
                    user_id,
                    at,
                    ..
                },
            ) => UsersState::Claim(EmailClaim {
                claim_key: claim_key.clone(),
                holder: Some(*user_id),
                updated_at: *at,
            }),
            (_, UserEvent::EmailReleased { claim_key, at, .. }) => UsersState::Claim(EmailClaim {
                claim_key: claim_key.clone(),
                holder: None,
                updated_at: *at,
            }),
            (
                _,
                UserEvent::Registered {
                    user_id,
                    claim_key,
                    email,
                    name,
                    phone,
                    at,
                },
            ) => UsersState::User(User {
                user_id: *user_id,
                status: UserStatus::Active,
                claim_key: claim_key.clone(),
                profile: Some(SealedProfile {
                    email: email.clone(),
                    name: name.clone(),
                    phone: phone.clone(),
                }),
                registered_at: *at,
                updated_at: *at,
                deactivation_reason: None,
                erasure: None,
            }),
            (
                state,
                UserEvent::RegistrationRefused { .. } | UserEvent::EmailChangeRefused { .. },
            ) => state,
            (
                UsersState::User(mut user),
                UserEvent::ProfileChanged {
                    name, phone, at, ..
                },
            ) => {
                if let Some(profile) = &mut user.profile {
                    if let Some(name) = name {
                        profile.name = name.clone();
                    }
                    match phone {
                        PhoneChange::Keep => {}
                        PhoneChange::Set(phone) => profile.phone = Some(phone.clone()),
                        PhoneChange::Clear => profile.phone = None,
                    }
                }
                user.updated_at = *at;
                UsersState::User(user)
            }
            (
                UsersState::User(mut user),
                UserEvent::EmailChanged {
                    claim_key,
                    email,
                    at,
                    ..
                },
            ) => {
                user.claim_key = claim_key.clone();
                if let Some(profile) = &mut user.profile {
                    profile.email = email.clone();
                }
                user.updated_at = *at;
                UsersState::User(user)
            }
            (UsersState::User(mut user), UserEvent::Deactivated { reason, at, .. }) => {
                user.status = UserStatus::Deactivated;
                user.deactivation_reason = Some(reason.clone());
                user.updated_at = *at;
                UsersState::User(user)
            }
            (
                UsersState::User(mut user),
                UserEvent::PersonalDataErased {
                    requested_by,
                    reason,
                    at,
                    ..
                },
            ) => {
                user.status = UserStatus::Erased;
                user.profile = None;
                user.erasure = Some(Erasure {
                    requested_by: requested_by.clone(),
                    reason: reason.clone(),
                    at: *at,
                });
                user.updated_at = *at;
                UsersState::User(user)
            }
            // Only events decided against a user stream reach these; any
            // other pairing is not a history `decide` can produce.
            (state, _) => state,
        }
    }
}

fn existing_user(state: &UsersState) -> Result<&User, UserRejection> {
    match state {
        UsersState::Empty => Err(UserRejection::UserNotFound),
        UsersState::Claim(_) => Err(UserRejection::NotAUser),
        UsersState::User(user) => Ok(user),
    }
}

fn active_user(state: &UsersState) -> Result<&User, UserRejection> {
    let user = existing_user(state)?;
    match user.status {
        UserStatus::Active => Ok(user),
        UserStatus::Deactivated => Err(UserRejection::UserDeactivated),
        UserStatus::Erased => Err(UserRejection::UserErased),
    }
}
