//! Property: replay equals live, through the real path. A random stream
//! of payment commands and the provider answers they cause is decided as
//! the processor decides it (`decide_record` against the live partition
//! fold), the provider answers are recorded as the provider worker records
//! them (`answer_command` of the outbox's calls), every record goes through
//! its Avro schema to bytes and back, duplicates and stale re-decisions are
//! appended like a zombie would, and then:
//! - a fresh fold of the decoded log equals the live fold;
//! - the gated projection of the decoded log shows exactly those states,
//!   in `payment_by_id` and `payments_by_order`;
//! - the outbox holds one provider call per requesting event;
//! - no payment ever has more refunded or reserved than it captured.

use std::collections::VecDeque;

use foldline_contracts::envelope::CommandMetadata;
use foldline_contracts::payments::{self as wire, PaymentsCommandRecord};
use foldline_contracts::record::EventRecord;
use foldline_eventsourcing::gate::Admission;
use foldline_platform::gated::{outcome_key, CommandOutcomeRow, GatedProjection};
use foldline_platform::outbox::{Outbox, OUTBOX};
use foldline_platform::processor::PartitionLog;
use foldline_platform::projector::{apply_in_memory, MemoryTable};
use foldline_platform::testing::{command_metadata, ReplayLog};
use proptest::prelude::*;
use uuid::Uuid;

use crate::domain::{PaymentState, PaymentStatus};
use crate::projection::{order_payment_key, payment_key, OrderPaymentRow, PaymentRow};
use crate::worker::{answer_command, provider_call, Outcome, ProviderCall};
use crate::{PaymentsProjection, PaymentsWire, ProviderCalls};

const PAYMENTS: u128 = 3;
const AMOUNT: i64 = 10_000;

#[derive(Clone, Debug)]
enum Step {
    Authorize {
        payment: u128,
    },
    Capture {
        payment: u128,
    },
    Refund {
        payment: u128,
        amount: i64,
    },
    Void {
        payment: u128,
    },
    /// The worker performs the oldest pending provider call.
    Answer {
        approve: bool,
    },
    /// The worker performs the oldest call again (a crash before its
    /// cursor moved): the same command, de-duplicated.
    Reperform,
    Duplicate {
        index: usize,
    },
    Stale {
        index: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1..=PAYMENTS).prop_map(|payment| Step::Authorize { payment }),
        (1..=PAYMENTS).prop_map(|payment| Step::Capture { payment }),
        (1..=PAYMENTS, 1..=AMOUNT).prop_map(|(payment, amount)| Step::Refund { payment, amount }),
        (1..=PAYMENTS).prop_map(|payment| Step::Void { payment }),
        any::<bool>().prop_map(|approve| Step::Answer { approve }),
        any::<bool>().prop_map(|approve| Step::Answer { approve }),
        Just(Step::Reperform),
        any::<usize>().prop_map(|index| Step::Duplicate { index }),
        any::<usize>().prop_map(|index| Step::Stale { index }),
    ]
}

fn payment_id(payment: u128) -> String {
    Uuid::from_u128(payment).to_string()
}

fn order_id(payment: u128) -> String {
    Uuid::from_u128(500 + payment).to_string()
}

struct System {
    replay: ReplayLog<PaymentsWire>,
    pending: VecDeque<ProviderCall>,
    performed: Vec<(ProviderCall, bool)>,
    calls: usize,
    counter: u128,
}

impl System {
    fn new() -> Self {
        Self {
            replay: ReplayLog::new(PaymentsWire),
            pending: VecDeque::new(),
            performed: Vec::new(),
            calls: 0,
            counter: 0,
        }
    }

    fn metadata(&mut self) -> CommandMetadata {
        self.counter += 1;
        command_metadata(self.counter)
    }

    /// The provider call the last record appended asks for, when it was
    /// applied: what the worker finds in the outbox.
    fn appended(&mut self, admission: Option<Admission>) {
        if admission != Some(Admission::Apply) {
            return;
        }
        let Some(record) = self.replay.log.last() else {
            return;
        };
        if let Some(event) = &record.event {
            if let Some(call) = provider_call(event, record.wire.metadata()) {
                self.calls += 1;
                self.pending.push_back(call);
            }
        }
    }

    fn decide(&mut self, record: PaymentsCommandRecord) {
        let admission = self.replay.decide(record);
        self.appended(admission);
    }

    fn perform(&mut self, call: &ProviderCall, approve: bool) {
        let outcome = match approve {
            true => Outcome::Approved {
                reference: format!("ref_{}", call.idempotency_key()),
            },
            false => Outcome::Refused {
                code: "card_declined".to_owned(),
                reason: "no".to_owned(),
                reference: None,
            },
        };
        self.decide(answer_command(call, outcome));
    }

    fn run(&mut self, step: Step) {
        match step {
            Step::Authorize { payment } => {
                let metadata = self.metadata();
                self.decide(PaymentsCommandRecord::Authorize(wire::AuthorizePayment {
                    metadata,
                    payment_id: payment_id(payment),
                    order_id: order_id(payment),
                    customer_id: Uuid::from_u128(900).to_string(),
                    amount: AMOUNT,
                    currency: "EUR".to_owned(),
                    card_token: "tok_visa".to_owned(),
                }))
            }
            Step::Capture { payment } => {
                let metadata = self.metadata();
                self.decide(PaymentsCommandRecord::Capture(wire::CapturePayment {
                    metadata,
                    payment_id: payment_id(payment),
                }))
            }
            Step::Refund { payment, amount } => {
                let metadata = self.metadata();
                let refund_id = metadata.command_id.clone();
                self.decide(PaymentsCommandRecord::Refund(wire::RefundPayment {
                    metadata,
                    payment_id: payment_id(payment),
                    refund_id,
                    amount,
                    reason: "returned".to_owned(),
                }))
            }
            Step::Void { payment } => {
                let metadata = self.metadata();
                self.decide(PaymentsCommandRecord::Void(wire::VoidAuthorization {
                    metadata,
                    payment_id: payment_id(payment),
                    reason: "expired".to_owned(),
                }))
            }
            Step::Answer { approve } => {
                if let Some(call) = self.pending.pop_front() {
                    self.perform(&call, approve);
                    self.performed.push((call, approve));
                }
            }
            Step::Reperform => {
                if let Some((call, approve)) = self.performed.last().cloned() {
                    self.perform(&call, approve);
                }
            }
            Step::Duplicate { index } => {
                let admission = self.replay.duplicate(index);
                self.appended(admission);
            }
            Step::Stale { index } => {
                let admission = self.replay.redecided(index);
                self.appended(admission);
            }
        }
    }
}

fn check(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut system = System::new();
    for step in steps {
        system.run(step);
    }
    let decoded = system.replay.decoded();
    prop_assert_eq!(&decoded, &system.replay.log);
    let mut replayed = PartitionLog::<PaymentState>::empty(0);
    let projection = GatedProjection::new("payments", PaymentsProjection);
    let outbox = GatedProjection::secondary("payments", Outbox(ProviderCalls));
    let mut rows = MemoryTable::new();
    for (offset, record) in decoded.iter().enumerate() {
        apply_in_memory(&outbox, &mut rows, record, 0, offset as i64).unwrap();
        replayed.fold(&PaymentsWire, record, offset as i64);
        apply_in_memory(&projection, &mut rows, record, 0, offset as i64).unwrap();
    }
    let outbox_rows = rows.keys().filter(|key| key.table == OUTBOX).count();
    prop_assert_eq!(
        outbox_rows,
        system.calls,
        "one outbox row per provider call"
    );
    for payment in 1..=PAYMENTS {
        let id = payment_id(payment);
        let (live, replay) = (system.replay.live.aggregate(&id), replayed.aggregate(&id));
        prop_assert_eq!(&live.state, &replay.state);
        prop_assert_eq!(live.version, replay.version);
        let row = rows
            .get(&payment_key(&id))
            .map(|row| serde_json::from_slice::<PaymentRow>(&row.value).unwrap());
        prop_assert_eq!(
            row.as_ref().map(|row| &row.payment),
            live.state.payment.as_ref()
        );
        let summary = rows
            .get(&order_payment_key(&order_id(payment), &id))
            .map(|row| serde_json::from_slice::<OrderPaymentRow>(&row.value).unwrap());
        prop_assert_eq!(
            summary.map(|summary| (summary.status, summary.refunded)),
            live.state
                .payment
                .as_ref()
                .map(|payment| (payment.status, payment.refunded()))
        );
        if let Some(payment) = &live.state.payment {
            prop_assert!(payment.refundable() >= 0, "{payment:?}");
            prop_assert!(payment.refunded() <= AMOUNT);
            if payment.status != PaymentStatus::Captured {
                prop_assert!(payment.refunds.is_empty());
            }
        }
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
    fn replay_equals_live_and_refunds_never_exceed_the_capture(
        steps in prop::collection::vec(step(), 0..80)
    ) {
        check(steps)?;
    }
}
