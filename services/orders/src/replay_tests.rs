//! Property: replay equals live, through the real path. Random commands
//! over several orders (placements valid and not, cancels, payments of the
//! exact total and not, payment failures, shipments, redeliveries) are
//! decided as the processor decides them (the platform's
//! [`ReplayLog`]: `decide_record` against the live fold, through the wire
//! mapping), while copies, stale re-decisions and forged records are
//! appended between them. Then:
//! - every record survives its Avro schema to bytes and back;
//! - the fold of the decoded log, restored from a JSON snapshot at every
//!   split, equals the live fold (every aggregate, version, settled
//!   command and the fingerprint);
//! - none of the injected records was applied, every decided command was
//!   settled exactly once;
//! - the gated projection of the decoded log shows exactly the live state:
//!   `order_by_id` and `orders_by_customer` row by row, no phantom rows,
//!   and every command's outcome.

use std::collections::{BTreeSet, HashSet};

use foldline_contracts::envelope::CommandMetadata;
use foldline_contracts::orders::{self as wire, OrdersCommandRecord};
use foldline_eventsourcing::gate::Admission;
use foldline_platform::gated::{outcome_key, CommandOutcomeRow, GatedProjection};
use foldline_platform::projector::{apply_in_memory, MemoryTable};
use foldline_platform::store::RowKey;
use foldline_platform::testing::{command_metadata, ReplayLog};
use proptest::prelude::*;
use uuid::Uuid;

use crate::domain::{OrderState, OrderStatus};
use crate::projection::{
    customer_order_clustering, order_key, CustomerOrderRow, OrderRow, ORDERS_BY_CUSTOMER,
};
use crate::{OrdersProjection, OrdersWire};

const ORDERS: u128 = 5;
const CUSTOMERS: u128 = 2;
const SKUS: [&str; 3] = ["MUG-1", "TEE.XL", "PIN"];

#[derive(Clone, Debug)]
enum Step {
    Place {
        order: u128,
        customer: u128,
        currency: &'static str,
        /// (sku index, quantity, unit price); a quantity of 0 or a
        /// negative price is refused by the wire mapping or the decider.
        lines: Vec<(usize, i32, i64)>,
    },
    Cancel {
        order: u128,
        reason: &'static str,
    },
    Pay {
        order: u128,
        exact: bool,
        payment: u128,
    },
    PaymentFailed {
        order: u128,
        payment: u128,
    },
    Ship {
        order: u128,
    },
    /// Delivers an earlier command again (same id): decides nothing.
    Redeliver {
        index: usize,
    },
    /// Appends an earlier record again (a producer retry).
    Duplicate {
        index: usize,
    },
    /// Re-decides an earlier command against an empty stream (a zombie).
    Redecided {
        index: usize,
    },
    /// A zombie's decision of a new cancel against version 0 of an order
    /// the log moved on.
    Stale {
        order: u128,
    },
    /// Appends a forged copy of an earlier record.
    Foreign {
        index: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let order = 1..=ORDERS;
    let line = (0..SKUS.len(), 0..=4_i32, -1..=2_000_i64);
    prop_oneof![
        3 => (
            order.clone(),
            1..=CUSTOMERS,
            prop::sample::select(vec!["EUR", "JPY", "KWD", "eur"]),
            prop::collection::vec(line, 0..=3),
        )
            .prop_map(|(order, customer, currency, lines)| Step::Place {
                order,
                customer,
                currency,
                lines
            }),
        2 => (order.clone(), prop::sample::select(vec!["raced", "", "changed my mind"]))
            .prop_map(|(order, reason)| Step::Cancel { order, reason }),
        3 => (order.clone(), prop::bool::weighted(0.8), 1..4_u128)
            .prop_map(|(order, exact, payment)| Step::Pay { order, exact, payment }),
        1 => (order.clone(), 1..4_u128)
            .prop_map(|(order, payment)| Step::PaymentFailed { order, payment }),
        2 => order.prop_map(|order| Step::Ship { order }),
        1 => any::<usize>().prop_map(|index| Step::Redeliver { index }),
        1 => any::<usize>().prop_map(|index| Step::Duplicate { index }),
        1 => any::<usize>().prop_map(|index| Step::Redecided { index }),
        1 => (1..=ORDERS).prop_map(|order| Step::Stale { order }),
        1 => any::<usize>().prop_map(|index| Step::Foreign { index }),
    ]
}

fn id(base: u128, n: u128) -> String {
    Uuid::from_u128(base + n).to_string()
}

fn order_id(order: u128) -> String {
    id(0, order)
}

fn customer_id(customer: u128) -> String {
    id(100, customer)
}

/// The log, and what the test itself injected into it.
struct System {
    log: ReplayLog<OrdersWire>,
    sent: Vec<OrdersCommandRecord>,
    injected: Vec<usize>,
    counter: u128,
}

impl System {
    fn new() -> Self {
        Self {
            log: ReplayLog::new(OrdersWire),
            sent: Vec::new(),
            injected: Vec::new(),
            counter: 0,
        }
    }

    fn metadata(&mut self) -> CommandMetadata {
        self.counter += 1;
        command_metadata(self.counter)
    }

    fn send(&mut self, command: OrdersCommandRecord) {
        self.sent.push(command.clone());
        self.log.decide(command);
    }

    fn inject(&mut self, appended: Option<Admission>) {
        if appended.is_some() {
            self.injected.push(self.log.log.len() - 1);
        }
    }

    fn total(&self, order: &str) -> Option<i64> {
        self.log
            .live
            .aggregate(order)
            .state
            .details()
            .map(|details| details.total)
    }

    fn run(&mut self, step: Step) {
        match step {
            Step::Place {
                order,
                customer,
                currency,
                lines,
            } => {
                let metadata = self.metadata();
                self.send(OrdersCommandRecord::Place(wire::PlaceOrder {
                    metadata,
                    order_id: order_id(order),
                    customer_id: customer_id(customer),
                    currency: currency.to_owned(),
                    lines: lines
                        .into_iter()
                        .map(|(sku, quantity, unit_price)| wire::OrderLine {
                            sku: SKUS[sku].to_owned(),
                            quantity,
                            unit_price,
                        })
                        .collect(),
                    card_token: None,
                }));
            }
            Step::Cancel { order, reason } => {
                let metadata = self.metadata();
                self.send(OrdersCommandRecord::Cancel(wire::CancelOrder {
                    metadata,
                    order_id: order_id(order),
                    reason: reason.to_owned(),
                }));
            }
            Step::Pay {
                order,
                exact,
                payment,
            } => {
                let order = order_id(order);
                let amount = match (exact, self.total(&order)) {
                    (true, Some(total)) => total,
                    (_, total) => total.unwrap_or(0) + 1,
                };
                let metadata = self.metadata();
                self.send(OrdersCommandRecord::MarkPaid(wire::MarkOrderPaid {
                    metadata,
                    order_id: order,
                    payment_id: id(500, payment),
                    amount,
                }));
            }
            Step::PaymentFailed { order, payment } => {
                let metadata = self.metadata();
                self.send(OrdersCommandRecord::MarkPaymentFailed(
                    wire::MarkOrderPaymentFailed {
                        metadata,
                        order_id: order_id(order),
                        payment_id: id(500, payment),
                        reason: "card declined".to_owned(),
                    },
                ));
            }
            Step::Ship { order } => {
                let metadata = self.metadata();
                self.send(OrdersCommandRecord::Ship(wire::ShipOrder {
                    metadata,
                    order_id: order_id(order),
                }));
            }
            Step::Redeliver { index } => {
                if let Some(command) = index
                    .checked_rem(self.sent.len())
                    .map(|index| self.sent[index].clone())
                {
                    assert_eq!(self.log.decide(command), None, "a redelivery decided");
                }
            }
            Step::Duplicate { index } => {
                let appended = self.log.duplicate(index);
                self.inject(appended);
            }
            Step::Redecided { index } => {
                let appended = self.log.redecided(index);
                self.inject(appended);
            }
            Step::Stale { order } => {
                let order = order_id(order);
                if self.log.live.aggregate(&order).version > 0 {
                    let metadata = self.metadata();
                    let admission =
                        self.log
                            .stale(OrdersCommandRecord::Cancel(wire::CancelOrder {
                                metadata,
                                order_id: order,
                                reason: "a zombie's".to_owned(),
                            }));
                    self.inject(Some(admission));
                }
            }
            Step::Foreign { index } => {
                let appended = self.log.foreign(index);
                self.inject(appended);
            }
        }
    }
}

fn project(decoded: &[foldline_platform::domain::LogRecord<OrdersWire>]) -> MemoryTable {
    let projection = GatedProjection::new("orders", OrdersProjection);
    let mut rows = MemoryTable::new();
    for (offset, record) in decoded.iter().enumerate() {
        apply_in_memory(&projection, &mut rows, record, 0, offset as i64).unwrap();
    }
    rows
}

fn check(steps: Vec<Step>) -> Result<System, TestCaseError> {
    let mut system = System::new();
    for step in steps {
        system.run(step);
    }
    let log = &system.log;

    let decoded = log.decoded();
    prop_assert_eq!(&decoded, &log.log);
    for split in 0..=decoded.len() {
        prop_assert_eq!(
            &log.restore_at(&decoded, split),
            &log.live,
            "split {}",
            split
        );
    }

    for &index in &system.injected {
        prop_assert_ne!(
            log.admissions[index],
            Admission::Apply,
            "injected #{}",
            index
        );
    }
    let applied = log
        .admissions
        .iter()
        .filter(|admission| **admission == Admission::Apply)
        .count();
    prop_assert_eq!(
        applied,
        log.decided.len(),
        "each decided command settles once"
    );

    let rows = project(&decoded);
    let mut customer_rows = HashSet::new();
    for order in 1..=ORDERS {
        let id = order_id(order);
        let live = log.live.aggregate(&id);
        let row = rows
            .get(&order_key(&id))
            .map(|row| serde_json::from_slice::<OrderRow>(&row.value).unwrap());
        match live.state.details() {
            None => {
                prop_assert_eq!(live.version, 0);
                prop_assert!(row.is_none(), "a row for an order never placed: {row:?}");
            }
            Some(details) => {
                prop_assert_eq!(
                    row,
                    Some(OrderRow {
                        version: live.version,
                        state: live.state.clone(),
                    })
                );
                let key = RowKey::new(
                    ORDERS_BY_CUSTOMER,
                    details.customer_id.to_string().into_bytes(),
                    customer_order_clustering(details.placed_at.millis(), &id),
                );
                let listed: CustomerOrderRow = serde_json::from_slice(&rows[&key].value).unwrap();
                prop_assert_eq!(listed.version, live.version);
                prop_assert_eq!(listed.status.as_str(), details.status.as_str());
                prop_assert_eq!(listed.total, details.total);
                customer_rows.insert(key);
            }
        }
    }
    let listed: HashSet<RowKey> = rows
        .keys()
        .filter(|key| key.table == ORDERS_BY_CUSTOMER)
        .cloned()
        .collect();
    prop_assert_eq!(
        listed,
        customer_rows,
        "phantom or missing orders_by_customer rows"
    );
    for command in &log.decided {
        let id = command.command_id.to_string();
        let settled = log
            .live
            .settled(&id)
            .expect("every decided command is settled");
        let projected: CommandOutcomeRow =
            serde_json::from_slice(&rows[&outcome_key(&id)].value).unwrap();
        prop_assert_eq!(&projected.outcome, settled);
    }
    Ok(system)
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(step(), 0..70)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn replay_equals_live_through_avro_the_gate_and_snapshots(steps in steps()) {
        check(steps)?;
    }
}

/// Guards the property above against a generator that never gets far:
/// sampled runs must end orders in every status and inject every kind.
#[test]
fn generated_runs_reach_every_status_and_inject_every_kind() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = steps();
    let mut reached = BTreeSet::new();
    let mut verdicts = BTreeSet::new();
    for _ in 0..64 {
        let steps = strategy.new_tree(&mut runner).unwrap().current();
        let system = check(steps).unwrap();
        for order in 1..=ORDERS {
            let state: OrderState = system.log.live.aggregate(&order_id(order)).state;
            reached.insert(state.status().map(|status: OrderStatus| status.as_str()));
        }
        for &index in &system.injected {
            verdicts.insert(
                format!("{:?}", system.log.admissions[index])
                    .split([' ', '{'])
                    .next()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    for status in [
        None,
        Some("placed"),
        Some("confirmed"),
        Some("payment_rejected"),
        Some("cancelled"),
        Some("shipped"),
    ] {
        assert!(
            reached.contains(&status),
            "never reached {status:?}: {reached:?}"
        );
    }
    for verdict in ["AlreadySettled", "WrongVersion", "Foreign"] {
        assert!(
            verdicts.contains(verdict),
            "never injected {verdict}: {verdicts:?}"
        );
    }
}
