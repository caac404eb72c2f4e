//! Given/when/then scenarios for every transition and every rejection of
//! the users decider, on both kinds of stream.

use foldline_eventsourcing::harness::TestHarness;
use foldline_eventsourcing::{Decider, Rejection, RejectionKind, Timestamp};
use uuid::Uuid;

use super::*;

const CLAIMED_AT: Timestamp = Timestamp(1_000);
const REGISTERED_AT: Timestamp = Timestamp(2_000);
const LATER: Timestamp = Timestamp(3_000);
const NOW: Timestamp = Timestamp(5_000);

fn ada() -> UserId {
    UserId::from_uuid(Uuid::from_u128(1))
}

fn bob() -> UserId {
    UserId::from_uuid(Uuid::from_u128(2))
}

fn claim_key(byte: u8) -> ClaimKey {
    ClaimKey::from_digest(&[byte; 32])
}

fn sealed(text: &str) -> Sealed {
    Sealed::parse(&format!("v1.{text}")).unwrap()
}

fn note(text: &str) -> Note {
    Note::parse(text).unwrap()
}

fn register_purpose() -> ClaimPurpose {
    ClaimPurpose::Register {
        name: sealed("name"),
        phone: None,
    }
}

fn claim(user_id: UserId, purpose: ClaimPurpose) -> UserCommand {
    UserCommand::ClaimEmail {
        claim_key: claim_key(1),
        user_id,
        email: sealed("email"),
        purpose,
    }
}

fn claimed(user_id: UserId) -> UserEvent {
    UserEvent::EmailClaimed {
        claim_key: claim_key(1),
        user_id,
        email: sealed("email"),
        purpose: register_purpose(),
        at: CLAIMED_AT,
    }
}

fn released(user_id: UserId) -> UserEvent {
    UserEvent::EmailReleased {
        claim_key: claim_key(1),
        user_id,
        reason: note("erased"),
        at: LATER,
    }
}

fn release(user_id: UserId) -> UserCommand {
    UserCommand::ReleaseEmail {
        claim_key: claim_key(1),
        user_id,
        reason: note("erased"),
    }
}

fn register() -> UserCommand {
    UserCommand::Register {
        user_id: ada(),
        claim_key: claim_key(1),
        email: sealed("email"),
        name: sealed("name"),
        phone: Some(sealed("phone")),
    }
}

fn registered() -> UserEvent {
    UserEvent::Registered {
        user_id: ada(),
        claim_key: claim_key(1),
        email: sealed("email"),
        name: sealed("name"),
        phone: Some(sealed("phone")),
        at: REGISTERED_AT,
    }
}

fn deactivated() -> UserEvent {
    UserEvent::Deactivated {
        user_id: ada(),
        reason: note("asked to"),
        at: LATER,
    }
}

fn erased() -> UserEvent {
    UserEvent::PersonalDataErased {
        user_id: ada(),
        claim_key: claim_key(1),
        requested_by: note("dpo@example.org"),
        reason: note("gdpr art. 17"),
        at: LATER,
    }
}

fn change_profile(name: Option<Sealed>, phone: PhoneChange) -> UserCommand {
    UserCommand::ChangeProfile {
        user_id: ada(),
        name,
        phone,
    }
}

fn change_email(key: ClaimKey) -> UserCommand {
    UserCommand::ChangeEmail {
        user_id: ada(),
        claim_key: key,
        email: sealed("email2"),
    }
}

fn deactivate() -> UserCommand {
    UserCommand::Deactivate {
        user_id: ada(),
        reason: note("asked to"),
    }
}

fn erase() -> UserCommand {
    UserCommand::ErasePersonalData {
        user_id: ada(),
        requested_by: note("dpo@example.org"),
        reason: note("gdpr art. 17"),
    }
}

fn user_of(state: UsersState) -> User {
    state.user().cloned().expect("a user stream")
}

// ---- the email claim stream

#[test]
fn a_free_address_is_claimed() {
    let state = TestHarness::<Users>::given([])
        .at(CLAIMED_AT)
        .when(claim(ada(), register_purpose()))
        .then(claimed(ada()));
    assert_eq!(state.claim().and_then(|claim| claim.holder), Some(ada()));
}

#[test]
fn a_released_address_can_be_claimed_by_someone_else() {
    let state = TestHarness::<Users>::given([claimed(ada()), released(ada())])
        .at(NOW)
        .when(claim(bob(), ClaimPurpose::Change))
        .then(UserEvent::EmailClaimed {
            claim_key: claim_key(1),
            user_id: bob(),
            email: sealed("email"),
            purpose: ClaimPurpose::Change,
            at: NOW,
        });
    assert_eq!(state.claim().and_then(|claim| claim.holder), Some(bob()));
}

#[test]
fn an_address_held_by_another_user_is_taken() {
    TestHarness::<Users>::given([claimed(ada())])
        .when(claim(bob(), register_purpose()))
        .then_rejected(UserRejection::EmailTaken);
}

#[test]
fn claiming_the_address_one_holds_is_refused() {
    TestHarness::<Users>::given([claimed(ada())])
        .when(claim(ada(), ClaimPurpose::Change))
        .then_rejected(UserRejection::EmailAlreadyYours);
}

#[test]
fn a_claim_addressed_to_a_user_stream_is_invalid() {
    TestHarness::<Users>::given([registered()])
        .when(claim(ada(), register_purpose()))
        .then_rejected(UserRejection::NotAClaim);
}

#[test]
fn the_holder_releases_its_claim() {
    let state = TestHarness::<Users>::given([claimed(ada())])
        .at(LATER)
        .when(release(ada()))
        .then(released(ada()));
    assert_eq!(state.claim().map(|claim| claim.holder), Some(None));
}

#[test]
fn releasing_is_refused_unless_the_claim_is_held_by_that_user() {
    TestHarness::<Users>::given([])
        .when(release(ada()))
        .then_rejected(UserRejection::ClaimNotFound);
    TestHarness::<Users>::given([claimed(ada())])
        .when(release(bob()))
        .then_rejected(UserRejection::ClaimHeldByAnother);
    TestHarness::<Users>::given([claimed(ada()), released(ada())])
        .when(release(ada()))
        .then_rejected(UserRejection::ClaimAlreadyReleased);
    TestHarness::<Users>::given([registered()])
        .when(release(ada()))
        .then_rejected(UserRejection::NotAClaim);
}

// ---- the user stream

#[test]
fn a_user_is_registered_with_its_sealed_profile() {
    let user = user_of(
        TestHarness::<Users>::given([])
            .at(REGISTERED_AT)
            .when(register())
            .then(registered()),
    );
    assert_eq!(user.status, UserStatus::Active);
    assert_eq!(user.claim_key, claim_key(1));
    assert_eq!(
        user.profile.map(|profile| profile.phone),
        Some(Some(sealed("phone")))
    );
    assert_eq!(user.registered_at, REGISTERED_AT);
}

#[test]
fn registering_an_existing_user_is_a_refusal_event_so_its_claim_is_released() {
    let state = TestHarness::<Users>::given([registered()])
        .at(NOW)
        .when(register())
        .then(UserEvent::RegistrationRefused {
            user_id: ada(),
            claim_key: claim_key(1),
            reason: "the user id is already registered".to_owned(),
            at: NOW,
        });
    assert_eq!(
        user_of(state).registered_at,
        REGISTERED_AT,
        "the user is unchanged"
    );
}

#[test]
fn a_registration_addressed_to_a_claim_stream_is_invalid() {
    TestHarness::<Users>::given([claimed(ada())])
        .when(register())
        .then_rejected(UserRejection::NotAUser);
}

#[test]
fn the_profile_changes_name_and_phone() {
    let user = user_of(
        TestHarness::<Users>::given([registered()])
            .at(NOW)
            .when(change_profile(Some(sealed("name2")), PhoneChange::Clear))
            .then(UserEvent::ProfileChanged {
                user_id: ada(),
                name: Some(sealed("name2")),
                phone: PhoneChange::Clear,
                at: NOW,
            }),
    );
    let profile = user.profile.expect("a profile");
    assert_eq!((profile.name, profile.phone), (sealed("name2"), None));
    assert_eq!(user.updated_at, NOW);
    let user = user_of(
        TestHarness::<Users>::given([registered()])
            .at(NOW)
            .when(change_profile(None, PhoneChange::Set(sealed("phone2"))))
            .then(UserEvent::ProfileChanged {
                user_id: ada(),
                name: None,
                phone: PhoneChange::Set(sealed("phone2")),
                at: NOW,
            }),
    );
    let profile = user.profile.expect("a profile");
    assert_eq!(
        (profile.name, profile.phone),
        (sealed("name"), Some(sealed("phone2")))
    );
}

#[test]
fn a_profile_change_is_refused_when_empty_or_the_user_is_not_active() {
    let some_change = || change_profile(Some(sealed("name2")), PhoneChange::Keep);
    TestHarness::<Users>::given([registered()])
        .when(change_profile(None, PhoneChange::Keep))
        .then_rejected(UserRejection::NothingToChange);
    TestHarness::<Users>::given([])
        .when(some_change())
        .then_rejected(UserRejection::UserNotFound);
    TestHarness::<Users>::given([registered(), deactivated()])
        .when(some_change())
        .then_rejected(UserRejection::UserDeactivated);
    TestHarness::<Users>::given([registered(), erased()])
        .when(some_change())
        .then_rejected(UserRejection::UserErased);
    TestHarness::<Users>::given([claimed(ada())])
        .when(some_change())
        .then_rejected(UserRejection::NotAUser);
}

#[test]
fn the_email_changes_to_a_newly_claimed_address_naming_the_previous_claim() {
    let user = user_of(
        TestHarness::<Users>::given([registered()])
            .at(NOW)
            .when(change_email(claim_key(2)))
            .then(UserEvent::EmailChanged {
                user_id: ada(),
                previous_claim_key: claim_key(1),
                claim_key: claim_key(2),
                email: sealed("email2"),
                at: NOW,
            }),
    );
    assert_eq!(user.claim_key, claim_key(2));
    assert_eq!(
        user.profile.map(|profile| profile.email),
        Some(sealed("email2"))
    );
}

#[test]
fn an_email_change_that_cannot_apply_is_a_refusal_event_so_the_new_claim_is_released() {
    for (history, reason) in [
        (vec![], UserRejection::UserNotFound),
        (
            vec![registered(), deactivated()],
            UserRejection::UserDeactivated,
        ),
        (vec![registered(), erased()], UserRejection::UserErased),
    ] {
        TestHarness::<Users>::given(history)
            .at(NOW)
            .when(change_email(claim_key(2)))
            .then(UserEvent::EmailChangeRefused {
                user_id: ada(),
                claim_key: claim_key(2),
                reason: reason.to_string(),
                at: NOW,
            });
    }
}

#[test]
fn an_email_change_to_the_held_address_or_a_claim_stream_is_rejected() {
    // Releasing here would release the address the user still holds.
    TestHarness::<Users>::given([registered()])
        .when(change_email(claim_key(1)))
        .then_rejected(UserRejection::EmailUnchanged);
    TestHarness::<Users>::given([claimed(ada())])
        .when(change_email(claim_key(2)))
        .then_rejected(UserRejection::NotAUser);
}

#[test]
fn an_active_user_is_deactivated() {
    let user = user_of(
        TestHarness::<Users>::given([registered()])
            .at(LATER)
            .when(deactivate())
            .then(deactivated()),
    );
    assert_eq!(user.status, UserStatus::Deactivated);
    assert_eq!(user.deactivation_reason, Some(note("asked to")));
    assert!(user.profile.is_some(), "deactivation keeps the profile");
}

#[test]
fn deactivation_is_refused_for_missing_deactivated_erased_or_claim_streams() {
    TestHarness::<Users>::given([])
        .when(deactivate())
        .then_rejected(UserRejection::UserNotFound);
    TestHarness::<Users>::given([registered(), deactivated()])
        .when(deactivate())
        .then_rejected(UserRejection::AlreadyDeactivated);
    TestHarness::<Users>::given([registered(), erased()])
        .when(deactivate())
        .then_rejected(UserRejection::UserErased);
    TestHarness::<Users>::given([claimed(ada())])
        .when(deactivate())
        .then_rejected(UserRejection::NotAUser);
}

#[test]
fn erasure_drops_the_profile_and_records_who_when_and_why() {
    for history in [vec![registered()], vec![registered(), deactivated()]] {
        let user = user_of(
            TestHarness::<Users>::given(history)
                .at(LATER)
                .when(erase())
                .then(erased()),
        );
        assert_eq!(user.status, UserStatus::Erased);
        assert_eq!(user.profile, None);
        assert_eq!(
            user.erasure,
            Some(Erasure {
                requested_by: note("dpo@example.org"),
                reason: note("gdpr art. 17"),
                at: LATER,
            })
        );
    }
}

#[test]
fn erasure_names_the_claim_held_at_the_time() {
    let changed = UserEvent::EmailChanged {
        user_id: ada(),
        previous_claim_key: claim_key(1),
        claim_key: claim_key(2),
        email: sealed("email2"),
        at: LATER,
    };
    let event = TestHarness::<Users>::given([registered(), changed])
        .at(NOW)
        .when(erase())
        .result()
        .unwrap();
    let UserEvent::PersonalDataErased {
        claim_key: held, ..
    } = event
    else {
        panic!("an erasure: {event:?}");
    };
    assert_eq!(held, claim_key(2));
}

#[test]
fn erasure_is_refused_for_missing_erased_or_claim_streams() {
    TestHarness::<Users>::given([])
        .when(erase())
        .then_rejected(UserRejection::UserNotFound);
    TestHarness::<Users>::given([registered(), erased()])
        .when(erase())
        .then_rejected(UserRejection::AlreadyErased);
    TestHarness::<Users>::given([claimed(ada())])
        .when(erase())
        .then_rejected(UserRejection::NotAUser);
}

#[test]
fn every_rejection_has_a_stable_code_a_kind_and_a_message() {
    let all = [
        (
            UserRejection::EmailTaken,
            "email_taken",
            RejectionKind::Conflict,
        ),
        (
            UserRejection::EmailAlreadyYours,
            "email_already_yours",
            RejectionKind::Conflict,
        ),
        (
            UserRejection::EmailUnchanged,
            "email_unchanged",
            RejectionKind::Conflict,
        ),
        (
            UserRejection::ClaimNotFound,
            "claim_not_found",
            RejectionKind::NotFound,
        ),
        (
            UserRejection::ClaimHeldByAnother,
            "claim_held_by_another",
            RejectionKind::Conflict,
        ),
        (
            UserRejection::ClaimAlreadyReleased,
            "claim_already_released",
            RejectionKind::Conflict,
        ),
        (
            UserRejection::UserNotFound,
            "user_not_found",
            RejectionKind::NotFound,
        ),
        (
            UserRejection::UserDeactivated,
            "user_deactivated",
            RejectionKind::Conflict,
        ),
        (
            UserRejection::UserErased,
            "user_erased",
            RejectionKind::Conflict,
        ),
        (
            UserRejection::AlreadyDeactivated,
            "already_deactivated",
            RejectionKind::Conflict,
        ),
        (
            UserRejection::AlreadyErased,
            "already_erased",
            RejectionKind::Conflict,
        ),
        (
            UserRejection::NothingToChange,
            "nothing_to_change",
            RejectionKind::Invalid,
        ),
        (
            UserRejection::NotAUser,
            "not_a_user",
            RejectionKind::Invalid,
        ),
        (
            UserRejection::NotAClaim,
            "not_a_claim",
            RejectionKind::Invalid,
        ),
    ];
    for (rejection, code, kind) in all {
        assert_eq!((rejection.code(), rejection.kind()), (code, kind));
        assert!(!rejection.to_string().is_empty());
    }
}

#[test]
fn a_whole_life_folds_to_an_erased_user_with_no_personal_data() {
    let history = [
        registered(),
        UserEvent::ProfileChanged {
            user_id: ada(),
            name: Some(sealed("name2")),
            phone: PhoneChange::Keep,
            at: LATER,
        },
        deactivated(),
        erased(),
    ];
    let user = user_of(Users::fold(&history));
    assert_eq!(user.status, UserStatus::Erased);
    assert!(user.profile.is_none());
}
