//! Property: replay equals live, through the real path. A random stream
//! of client requests and the follow-ups they cause is decided as the
//! processor decides it (the platform's [`ReplayLog`]: `decide_record`
//! against the live partition fold), every record goes through its Avro
//! schema to bytes and back, duplicates, stale re-decisions and forged
//! records are appended like a zombie or a foreign writer would, and then:
//! - the fold of the decoded log, restored from a JSON snapshot at every
//!   split (the processor's restore), equals the live fold, aggregate by
//!   aggregate, version by version;
//! - the gated projection of the decoded log shows exactly those states;
//! - once every follow-up ran, no claim is half-done: an address is held
//!   iff a live (not erased) user holds it as its current address.

use std::collections::{BTreeMap, VecDeque};

use foldline_contracts::envelope::CommandMetadata;
use foldline_contracts::record::EventRecord;
use foldline_contracts::users::{self as wire, UsersCommandRecord};
use foldline_eventsourcing::gate::Admission;
use foldline_platform::gated::{outcome_key, CommandOutcomeRow, GatedProjection};
use foldline_platform::outbox::{Outbox, OUTBOX};
use foldline_platform::projector::{apply_in_memory, MemoryTable};
use foldline_platform::testing::{command_metadata, ReplayLog};
use proptest::prelude::*;
use uuid::Uuid;

use crate::domain::{ClaimKey, UserStatus};
use crate::follow_ups::{follow_up_command, follow_ups};
use crate::projection::{email_key, user_key, EmailRow, UserRow};
use crate::{UsersFollowUps, UsersProjection, UsersWire};

const USERS: u128 = 3;
const ADDRESSES: u8 = 3;

#[derive(Clone, Debug)]
enum Step {
    Register {
        user: u128,
        address: u8,
    },
    ChangeEmail {
        user: u128,
        address: u8,
    },
    ChangeName {
        user: u128,
    },
    ClearPhone {
        user: u128,
    },
    Deactivate {
        user: u128,
    },
    Erase {
        user: u128,
    },
    /// Runs the oldest pending follow-up (the relay is asynchronous).
    FollowUp,
    /// Appends an earlier record again (a producer retry).
    Duplicate {
        index: usize,
    },
    /// Re-decides an earlier command against an empty stream (a zombie).
    Stale {
        index: usize,
    },
    /// Appends a forged copy of an earlier record (a foreign writer).
    Foreign {
        index: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let user = 1..=USERS;
    let address = 1..=ADDRESSES;
    prop_oneof![
        (user.clone(), address.clone())
            .prop_map(|(user, address)| Step::Register { user, address }),
        (user.clone(), address).prop_map(|(user, address)| Step::ChangeEmail { user, address }),
        user.clone().prop_map(|user| Step::ChangeName { user }),
        user.clone().prop_map(|user| Step::ClearPhone { user }),
        user.clone().prop_map(|user| Step::Deactivate { user }),
        user.prop_map(|user| Step::Erase { user }),
        Just(Step::FollowUp),
        Just(Step::FollowUp),
        Just(Step::FollowUp),
        any::<usize>().prop_map(|index| Step::Duplicate { index }),
        any::<usize>().prop_map(|index| Step::Stale { index }),
        any::<usize>().prop_map(|index| Step::Foreign { index }),
    ]
}

fn user_id(user: u128) -> String {
    Uuid::from_u128(user).to_string()
}

fn claim(address: u8) -> String {
    ClaimKey::from_digest(&[address; 32]).to_string()
}

fn sealed(what: &str, counter: u128) -> String {
    format!("v1.{what}{counter}")
}

/// The whole system in one thread: the log and the processor's live fold,
/// the relay's queue of follow-up commands.
struct System {
    log: ReplayLog<UsersWire>,
    /// Where each injected record (copy, stale, forged) sits in the log.
    injected: Vec<usize>,
    pending: VecDeque<UsersCommandRecord>,
    /// Every follow-up the admitted events caused, key destructions included.
    follow_ups: usize,
    counter: u128,
}

impl System {
    fn new() -> Self {
        Self {
            log: ReplayLog::new(UsersWire),
            injected: Vec::new(),
            pending: VecDeque::new(),
            follow_ups: 0,
            counter: 0,
        }
    }

    fn metadata(&mut self) -> CommandMetadata {
        self.counter += 1;
        command_metadata(self.counter)
    }

    /// The follow-ups of the last record appended, when it was applied.
    fn appended(&mut self, admission: Option<Admission>) {
        if admission != Some(Admission::Apply) {
            return;
        }
        let Some(record) = self.log.log.last() else {
            return;
        };
        if let Some(event) = &record.event {
            let caused = follow_ups(event, record.wire.metadata());
            self.follow_ups += caused.len();
            for follow_up in caused {
                if let Some(command) = follow_up_command(&follow_up) {
                    self.pending.push_back(command);
                }
            }
        }
    }

    /// A redelivered command is settled already: the processor republishes
    /// its outcome and appends nothing.
    fn decide(&mut self, record: UsersCommandRecord) {
        let admission = self.log.decide(record);
        self.appended(admission);
    }

    fn inject(&mut self, admission: Option<Admission>) {
        if admission.is_some() {
            self.injected.push(self.log.log.len() - 1);
        }
        self.appended(admission);
    }

    fn run(&mut self, step: Step) {
        let n = self.counter + 1;
        match step {
            Step::Register { user, address } => {
                let metadata = self.metadata();
                self.decide(UsersCommandRecord::ClaimEmail(wire::ClaimEmail {
                    metadata,
                    aggregate_id: claim(address),
                    user_id: user_id(user),
                    purpose: "register".to_owned(),
                    email_sealed: sealed("email", n),
                    name_sealed: Some(sealed("name", n)),
                    phone_sealed: Some(sealed("phone", n)),
                }))
            }
            Step::ChangeEmail { user, address } => {
                let metadata = self.metadata();
                self.decide(UsersCommandRecord::ClaimEmail(wire::ClaimEmail {
                    metadata,
                    aggregate_id: claim(address),
                    user_id: user_id(user),
                    purpose: "change".to_owned(),
                    email_sealed: sealed("email", n),
                    name_sealed: None,
                    phone_sealed: None,
                }))
            }
            Step::ChangeName { user } => {
                let metadata = self.metadata();
                self.decide(UsersCommandRecord::ChangeProfile(wire::ChangeProfile {
                    metadata,
                    aggregate_id: user_id(user),
                    name_sealed: Some(sealed("name", n)),
                    phone_sealed: None,
                    clear_phone: false,
                }))
            }
            Step::ClearPhone { user } => {
                let metadata = self.metadata();
                self.decide(UsersCommandRecord::ChangeProfile(wire::ChangeProfile {
                    metadata,
                    aggregate_id: user_id(user),
                    name_sealed: None,
                    phone_sealed: None,
                    clear_phone: true,
                }))
            }
            Step::Deactivate { user } => {
                let metadata = self.metadata();
                self.decide(UsersCommandRecord::Deactivate(wire::DeactivateUser {
                    metadata,
                    aggregate_id: user_id(user),
                    reason: "asked to".to_owned(),
                }))
            }
            Step::Erase { user } => {
                let metadata = self.metadata();
                self.decide(UsersCommandRecord::Erase(wire::ErasePersonalData {
                    metadata,
                    aggregate_id: user_id(user),
                    requested_by: "dpo".to_owned(),
                    reason: "art. 17".to_owned(),
                }))
            }
            Step::FollowUp => {
                if let Some(command) = self.pending.pop_front() {
                    self.decide(command);
                }
            }
            Step::Duplicate { index } => {
                let admission = self.log.duplicate(index);
                self.inject(admission);
            }
            Step::Stale { index } => {
                let admission = self.log.redecided(index);
                self.inject(admission);
            }
            Step::Foreign { index } => {
                let admission = self.log.foreign(index);
                self.inject(admission);
            }
        }
    }
}

fn check(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut system = System::new();
    for step in steps {
        system.run(step);
    }
    // The relay catches up.
    while !system.pending.is_empty() {
        system.run(Step::FollowUp);
    }

    let decoded = system.log.decoded();
    prop_assert_eq!(&decoded, &system.log.log);
    for split in 0..=decoded.len() {
        prop_assert_eq!(
            &system.log.restore_at(&decoded, split),
            &system.log.live,
            "split {}",
            split
        );
    }
    for &index in &system.injected {
        prop_assert_ne!(system.log.admissions[index], Admission::Apply);
    }
    let replayed = system.log.restore_at(&decoded, 0);
    let projection = GatedProjection::new("users", UsersProjection);
    // The outbox shares the store and runs ahead of the read rows.
    let outbox = GatedProjection::secondary("users", Outbox(UsersFollowUps));
    let mut rows = MemoryTable::new();
    for (offset, record) in decoded.iter().enumerate() {
        apply_in_memory(&outbox, &mut rows, record, 0, offset as i64).unwrap();
    }
    for (offset, record) in decoded.iter().enumerate() {
        apply_in_memory(&projection, &mut rows, record, 0, offset as i64).unwrap();
    }
    let outbox_rows = rows.keys().filter(|key| key.table == OUTBOX).count();
    prop_assert_eq!(
        outbox_rows,
        system.follow_ups,
        "one outbox row per follow-up"
    );

    let mut holders = BTreeMap::new();
    for address in 1..=ADDRESSES {
        let key = claim(address);
        let (live, replay) = (system.log.live.aggregate(&key), replayed.aggregate(&key));
        prop_assert_eq!(&live.state, &replay.state);
        prop_assert_eq!(live.version, replay.version);
        let holder = live.state.claim().and_then(|claim| claim.holder);
        let row = rows
            .get(&email_key(&key))
            .map(|row| serde_json::from_slice::<EmailRow>(&row.value).unwrap());
        prop_assert_eq!(row.and_then(|row| row.holder), holder);
        if let Some(holder) = holder {
            holders.insert(key, holder);
        }
    }
    for user in 1..=USERS {
        let id = user_id(user);
        let (live, replay) = (system.log.live.aggregate(&id), replayed.aggregate(&id));
        prop_assert_eq!(&live.state, &replay.state);
        prop_assert_eq!(live.version, replay.version);
        let row = rows
            .get(&user_key(&id))
            .map(|row| serde_json::from_slice::<UserRow>(&row.value).unwrap());
        prop_assert_eq!(row.and_then(|row| row.user), live.state.user().cloned());
        if let Some(user) = live.state.user() {
            let holds = holders.get(user.claim_key.as_str()) == Some(&user.user_id);
            match user.status {
                UserStatus::Erased => {
                    prop_assert!(user.profile.is_none());
                    prop_assert!(!holds, "an erased user still holds its address");
                }
                _ => prop_assert!(holds, "a live user lost its address: {user:?}"),
            }
        }
    }
    // Every held address is some live user's current address.
    for (key, holder) in &holders {
        let user = system.log.live.aggregate(&holder.to_string());
        let current = user
            .state
            .user()
            .map(|user| (user.claim_key.as_str(), user.status));
        prop_assert!(
            matches!(current, Some((held, status)) if held == key && status != UserStatus::Erased),
            "half-claimed: {key} held by {holder}, who is {current:?}"
        );
    }
    for command in &system.log.decided {
        let id = command.command_id.to_string();
        let settled = system
            .log
            .live
            .settled(&id)
            .expect("every decided command is settled");
        let projected: CommandOutcomeRow =
            serde_json::from_slice(&rows[&outcome_key(&id)].value).unwrap();
        prop_assert_eq!(&projected.outcome, settled);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn replay_equals_live_and_no_claim_is_half_done(steps in prop::collection::vec(step(), 0..60)) {
        check(steps)?;
    }
}

#[test]
fn the_race_for_one_address_has_one_winner_in_the_log() {
    let mut steps: Vec<Step> = (1..=USERS)
        .map(|user| Step::Register { user, address: 1 })
        .collect();
    steps.extend([Step::FollowUp, Step::FollowUp, Step::FollowUp]);
    check(steps.clone()).unwrap();
    let mut system = System::new();
    for step in steps {
        system.run(step);
    }
    let codes: Vec<_> = system
        .log
        .log
        .iter()
        .filter_map(|record| {
            record
                .wire
                .rejection()
                .map(|rejected| rejected.code.clone())
        })
        .collect();
    assert_eq!(codes, ["email_taken", "email_taken"]);
    let registered = (1..=USERS)
        .filter(|user| {
            system
                .log
                .live
                .aggregate(&user_id(*user))
                .state
                .user()
                .is_some()
        })
        .count();
    assert_eq!(registered, 1);
}
