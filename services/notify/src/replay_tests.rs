//! Property: replay equals live, through the real path. A random stream of
//! client sends and the delivery worker's reports (in any order, repeated,
//! late) is decided as the processor decides it (`decide_record` against
//! the live partition fold), every record goes through its Avro schema to
//! bytes and back, duplicates and stale re-decisions are appended like a
//! zombie would, and then:
//! - a fresh fold of the decoded log equals the live fold;
//! - the gated projection of the decoded log shows exactly those states,
//!   and its latency histograms count each admitted delivery once;
//! - the outbox holds exactly one delivery per queued notification.

use std::collections::BTreeMap;

use foldline_contracts::envelope::CommandMetadata;
use foldline_contracts::notify::{self as wire, NotifyCommandRecord};
use foldline_contracts::record::EventRecord;
use foldline_eventsourcing::gate::Admission;
use foldline_platform::gated::{outcome_key, CommandOutcomeRow, GatedProjection};
use foldline_platform::outbox::{Outbox, OUTBOX};
use foldline_platform::processor::PartitionLog;
use foldline_platform::projector::{apply_in_memory, MemoryTable};
use foldline_platform::testing::{command_metadata, ReplayLog};
use proptest::prelude::*;
use uuid::Uuid;

use crate::domain::{Channel, NotificationEvent, NotificationState};
use crate::projection::{
    notification_key, samples_partition, NotificationRow, NOTIFY_LATENCY_SAMPLES,
};
use crate::{NotifyFollowUps, NotifyProjection, NotifyWire};

const NOTIFICATIONS: u128 = 3;
const PROVIDERS: [&str; 2] = ["primary", "backup"];

#[derive(Clone, Debug)]
enum Step {
    Send {
        notification: u128,
    },
    Failover {
        notification: u128,
        attempt: i32,
    },
    Sent {
        notification: u128,
        attempt: i32,
        provider: usize,
    },
    AttemptFailed {
        notification: u128,
        attempt: i32,
    },
    Failed {
        notification: u128,
        attempt: i32,
    },
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
    let notification = 1..=NOTIFICATIONS;
    let attempt = 1..=3i32;
    prop_oneof![
        notification
            .clone()
            .prop_map(|notification| Step::Send { notification }),
        notification
            .clone()
            .prop_map(|notification| Step::Send { notification }),
        (notification.clone(), attempt.clone()).prop_map(|(notification, attempt)| {
            Step::Failover {
                notification,
                attempt,
            }
        }),
        (notification.clone(), attempt.clone(), 0..PROVIDERS.len()).prop_map(
            |(notification, attempt, provider)| Step::Sent {
                notification,
                attempt,
                provider
            }
        ),
        (notification.clone(), attempt.clone()).prop_map(|(notification, attempt)| {
            Step::AttemptFailed {
                notification,
                attempt,
            }
        }),
        (notification, attempt).prop_map(|(notification, attempt)| Step::Failed {
            notification,
            attempt
        }),
        any::<usize>().prop_map(|index| Step::Duplicate { index }),
        any::<usize>().prop_map(|index| Step::Stale { index }),
    ]
}

fn notification_id(notification: u128) -> String {
    Uuid::from_u128(notification).to_string()
}

struct System {
    replay: ReplayLog<NotifyWire>,
    counter: u128,
}

impl System {
    fn new() -> Self {
        Self {
            replay: ReplayLog::new(NotifyWire),
            counter: 0,
        }
    }

    fn metadata(&mut self) -> CommandMetadata {
        self.counter += 1;
        command_metadata(self.counter)
    }

    fn run(&mut self, step: Step) {
        let metadata = self.metadata();
        let record = match step {
            Step::Send { notification } => NotifyCommandRecord::Send(wire::SendNotification {
                metadata,
                aggregate_id: notification_id(notification),
                channel: "sms".to_owned(),
                recipient: format!("+4477009001{notification:02}"),
                template: "order.confirmed".to_owned(),
                parameters: vec![wire::TemplateParameter {
                    name: "order".to_owned(),
                    value: notification.to_string(),
                }],
            }),
            Step::Failover {
                notification,
                attempt,
            } => NotifyCommandRecord::RecordFailover(wire::RecordProviderFailover {
                metadata,
                aggregate_id: notification_id(notification),
                attempt,
                from_provider: PROVIDERS[0].to_owned(),
                to_provider: PROVIDERS[1].to_owned(),
                reason: "circuit breaker open".to_owned(),
            }),
            Step::Sent {
                notification,
                attempt,
                provider,
            } => NotifyCommandRecord::RecordSent(wire::RecordNotificationSent {
                metadata,
                aggregate_id: notification_id(notification),
                attempt,
                provider: PROVIDERS[provider].to_owned(),
                latency_ms: 10 * i64::from(attempt),
                provider_call_us: 900,
                provider_message_id: None,
            }),
            Step::AttemptFailed {
                notification,
                attempt,
            } => NotifyCommandRecord::RecordAttemptFailed(wire::RecordAttemptFailed {
                metadata,
                aggregate_id: notification_id(notification),
                attempt,
                reason: "every provider failed".to_owned(),
                retry_at: 1_800_000_000_000,
            }),
            Step::Failed {
                notification,
                attempt,
            } => NotifyCommandRecord::RecordFailed(wire::RecordNotificationFailed {
                metadata,
                aggregate_id: notification_id(notification),
                attempt,
                reason: "retries exhausted".to_owned(),
            }),
            Step::Duplicate { index } => {
                self.replay.duplicate(index);
                return;
            }
            Step::Stale { index } => {
                self.replay.redecided(index);
                return;
            }
        };
        self.replay.decide(record);
    }
}

fn check(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut system = System::new();
    for step in steps {
        system.run(step);
    }
    let decoded = system.replay.decoded();
    prop_assert_eq!(&decoded, &system.replay.log);

    let mut replayed = PartitionLog::<NotificationState>::empty(0);
    let projection = GatedProjection::new("notify", NotifyProjection);
    let outbox = GatedProjection::secondary("notify", Outbox(NotifyFollowUps));
    let mut rows = MemoryTable::new();
    let mut sent_by_provider: BTreeMap<String, u64> = BTreeMap::new();
    for (offset, record) in decoded.iter().enumerate() {
        let admission = replayed.fold(&NotifyWire, record, offset as i64);
        if admission == Admission::Apply {
            if let Some(NotificationEvent::Sent { delivery, .. }) = &record.event {
                *sent_by_provider
                    .entry(delivery.provider.to_string())
                    .or_default() += 1;
            }
        }
        apply_in_memory(&outbox, &mut rows, record, 0, offset as i64).unwrap();
        apply_in_memory(&projection, &mut rows, record, 0, offset as i64).unwrap();
    }
    let queued = (1..=NOTIFICATIONS)
        .filter(|n| {
            system
                .replay
                .live
                .aggregate(&notification_id(*n))
                .state
                .notification()
                .is_some()
        })
        .count();
    let outbox_rows = rows.keys().filter(|key| key.table == OUTBOX).count();
    prop_assert_eq!(outbox_rows, queued, "one delivery per queued notification");

    for notification in 1..=NOTIFICATIONS {
        let id = notification_id(notification);
        let (live, replay) = (system.replay.live.aggregate(&id), replayed.aggregate(&id));
        prop_assert_eq!(&live.state, &replay.state);
        prop_assert_eq!(live.version, replay.version);
        let row = rows
            .get(&notification_key(&id))
            .map(|row| serde_json::from_slice::<NotificationRow>(&row.value).unwrap());
        prop_assert_eq!(
            row.map(|row| row.notification),
            live.state.notification().cloned()
        );
    }
    for provider in PROVIDERS {
        let partition = samples_partition(Channel::Sms, provider);
        let counted = rows
            .keys()
            .filter(|key| key.table == NOTIFY_LATENCY_SAMPLES && key.partition == partition)
            .count() as u64;
        prop_assert_eq!(
            counted,
            sent_by_provider.get(provider).copied().unwrap_or(0)
        );
    }
    for command in &system.replay.decided {
        let id = command.command_id.to_string();
        let settled = system
            .replay
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
    fn replay_equals_live_however_reports_arrive(steps in prop::collection::vec(step(), 0..60)) {
        check(steps)?;
    }
}

#[test]
fn one_notification_is_sent_once_whatever_is_reported_after() {
    let steps = vec![
        Step::Send { notification: 1 },
        Step::Failover {
            notification: 1,
            attempt: 1,
        },
        Step::Sent {
            notification: 1,
            attempt: 1,
            provider: 1,
        },
        Step::Sent {
            notification: 1,
            attempt: 2,
            provider: 0,
        },
        Step::Failed {
            notification: 1,
            attempt: 2,
        },
    ];
    check(steps.clone()).unwrap();
    let mut system = System::new();
    for step in steps {
        system.run(step);
    }
    let codes: Vec<_> = system
        .replay
        .log
        .iter()
        .filter_map(|record| {
            record
                .wire
                .rejection()
                .map(|rejected| rejected.code.clone())
        })
        .collect();
    assert_eq!(codes, ["notification_settled", "notification_settled"]);
}
