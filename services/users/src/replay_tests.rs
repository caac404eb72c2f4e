//! Property: replay equals live, through the real path. A random stream
//! of client requests and the follow-ups they cause is decided as the
//! processor decides it (`decide_record` against the live partition fold),
//! every record goes through its Avro schema to bytes and back, duplicates
//! and stale re-decisions are appended like a zombie would, and then:
//! - a fresh fold of the decoded log (the processor's restore) equals the
//!   live fold, aggregate by aggregate, version by version;
//! - the gated projection of the decoded log shows exactly those states;
//! - once every follow-up ran, no claim is half-done: an address is held
//!   iff a live (not erased) user holds it as its current address.

use std::collections::{BTreeMap, VecDeque};

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use foldline_contracts::envelope::CommandMetadata;
use foldline_contracts::record::{CommandRecord, EventRecord};
use foldline_contracts::schema::by_full_name;
use foldline_contracts::users::{self as wire, UsersCommandRecord, UsersEventRecord};
use foldline_eventsourcing::gate::Admission;
use foldline_platform::domain::{decide_record, LogRecord, ValidCommand};
use foldline_platform::gated::{outcome_key, CommandOutcomeRow, GatedProjection};
use foldline_platform::outbox::{Outbox, OUTBOX};
use foldline_platform::processor::PartitionLog;
use foldline_platform::projector::{apply_in_memory, MemoryTable};
use proptest::prelude::*;
use uuid::Uuid;

use crate::domain::{ClaimKey, UserStatus, UsersState};
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

/// The whole system in one thread: the log, the processor's live fold,
/// the relay's queue of follow-up commands.
struct System {
    log: Vec<LogRecord<UsersWire>>,
    live: PartitionLog<UsersState>,
    commands: Vec<ValidCommand<UsersCommandRecord>>,
    pending: VecDeque<UsersCommandRecord>,
    /// Every follow-up the admitted events caused, key destructions included.
    follow_ups: usize,
    counter: u128,
}

impl System {
    fn new() -> Self {
        Self {
            log: Vec::new(),
            live: PartitionLog::empty(0),
            commands: Vec::new(),
            pending: VecDeque::new(),
            follow_ups: 0,
            counter: 0,
        }
    }

    fn metadata(&mut self) -> CommandMetadata {
        self.counter += 1;
        let id = Uuid::from_u128(1_000 + self.counter).to_string();
        CommandMetadata {
            command_id: id.clone(),
            correlation_id: id,
            causation_id: None,
            issued_at: 1_700_000_000_000 + self.counter as i64,
            issued_by: "test".to_owned(),
            traceparent: None,
        }
    }

    fn append(&mut self, record: LogRecord<UsersWire>) {
        let offset = self.log.len() as i64;
        let admission = self.live.fold(&UsersWire, &record, offset);
        if admission == Admission::Apply {
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
        self.log.push(record);
    }

    fn decide(&mut self, record: UsersCommandRecord) {
        let command = ValidCommand::validate(record).expect("a valid command");
        // A redelivered command is settled already: the processor
        // republishes its outcome and appends nothing.
        if self.live.settled(&command.command_id.to_string()).is_some() {
            return;
        }
        let slot = self.live.aggregate(command.record.aggregate_id());
        let record = decide_record::<UsersWire>(&slot.state, slot.version, &command);
        self.commands.push(command);
        self.append(record);
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
                if !self.log.is_empty() {
                    let copy = self.log[index % self.log.len()].clone();
                    self.append(copy);
                }
            }
            Step::Stale { index } => {
                if !self.commands.is_empty() {
                    let command = self.commands[index % self.commands.len()].clone();
                    let stale = decide_record::<UsersWire>(&UsersState::Empty, 0, &command);
                    self.append(stale);
                }
            }
        }
    }
}

/// Through the record's own `.avsc` to bytes and back, as every reader
/// of the topic gets it.
fn round_trip(record: &LogRecord<UsersWire>) -> LogRecord<UsersWire> {
    let name = record.wire.record_name();
    let schema = Schema::parse_str(by_full_name(name).expect("a schema").text).unwrap();
    let value = record.wire.to_avro().unwrap();
    let bytes = GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap();
    let decoded = GenericDatumReader::builder(&schema)
        .build()
        .unwrap()
        .read_value(&mut bytes.as_slice())
        .unwrap();
    LogRecord::from_wire(UsersEventRecord::from_avro(name, &decoded).unwrap()).unwrap()
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

    let decoded: Vec<_> = system.log.iter().map(round_trip).collect();
    prop_assert_eq!(&decoded, &system.log);
    let mut replayed = PartitionLog::<UsersState>::empty(0);
    let projection = GatedProjection::new("users", UsersProjection);
    // The outbox shares the store and runs ahead of the read rows.
    let outbox = GatedProjection::secondary("users", Outbox(UsersFollowUps));
    let mut rows = MemoryTable::new();
    for (offset, record) in decoded.iter().enumerate() {
        apply_in_memory(&outbox, &mut rows, record, 0, offset as i64).unwrap();
    }
    for (offset, record) in decoded.iter().enumerate() {
        replayed.fold(&UsersWire, record, offset as i64);
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
        let (live, replay) = (system.live.aggregate(&key), replayed.aggregate(&key));
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
        let (live, replay) = (system.live.aggregate(&id), replayed.aggregate(&id));
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
        let user = system.live.aggregate(&holder.to_string());
        let current = user
            .state
            .user()
            .map(|user| (user.claim_key.as_str(), user.status));
        prop_assert!(
            matches!(current, Some((held, status)) if held == key && status != UserStatus::Erased),
            "half-claimed: {key} held by {holder}, who is {current:?}"
        );
    }
    for command in &system.commands {
        let id = command.command_id.to_string();
        let settled = system
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
                .live
                .aggregate(&user_id(*user))
                .state
                .user()
                .is_some()
        })
        .count();
    assert_eq!(registered, 1);
}
