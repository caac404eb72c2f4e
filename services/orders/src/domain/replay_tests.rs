//! Property: folding a history gives the same state however it is split,
//! resumed from a snapshot, or kept live while the history was decided.

use foldline_eventsourcing::{Decider, DecisionContext, Timestamp};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;

const SKUS: [&str; 4] = ["MUG-1", "TEE.XL", "CAP_2", "PIN"];
const CURRENCIES: [&str; 3] = ["EUR", "JPY", "KWD"];

/// A command before it meets the state, so that payments can be generated
/// for the exact total of whatever order exists by then.
#[derive(Clone, Debug)]
enum Step {
    Place {
        order: OrderId,
        currency: &'static str,
        lines: Vec<(usize, i64, i64)>,
    },
    Cancel {
        order: OrderId,
        reason: String,
    },
    MarkPaid {
        order: OrderId,
        payment: u128,
        pays_exact_total: bool,
        otherwise: i64,
    },
    MarkPaymentFailed {
        order: OrderId,
        payment: u128,
        reason: String,
    },
    Ship {
        order: OrderId,
    },
    Reject {
        order: OrderId,
        code: &'static str,
        reason: String,
    },
}

fn order_id_strategy() -> impl Strategy<Value = OrderId> {
    // Mostly the stream's own order, sometimes a stray one to exercise
    // wrong_order.
    prop_oneof![
        9 => Just(OrderId::from_uuid(Uuid::from_u128(1))),
        1 => Just(OrderId::from_uuid(Uuid::from_u128(2))),
    ]
}

fn reason_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["", " ", "card declined", "changed my mind", "délai dépassé"])
            .prop_map(str::to_owned),
        1 => Just("x".repeat(MAX_REASON_CHARS + 1)),
    ]
}

fn lines_strategy() -> impl Strategy<Value = Vec<(usize, i64, i64)>> {
    let valid = prop::sample::subsequence(vec![0, 1, 2, 3], 1..=SKUS.len()).prop_flat_map(|skus| {
        let count = skus.len();
        (
            Just(skus),
            prop::collection::vec((1..=10_000_i64, 0..=100_000_i64), count),
        )
            .prop_map(|(skus, amounts)| {
                skus.into_iter()
                    .zip(amounts)
                    .map(|(sku, (quantity, price))| (sku, quantity, price))
                    .collect()
            })
    });
    let arbitrary = prop::collection::vec(
        (
            0..SKUS.len(),
            1..=10_000_i64,
            prop_oneof![
                Just(-1_i64),
                Just(MAX_UNIT_PRICE),
                Just(MAX_UNIT_PRICE + 1),
                0..=1_000_i64
            ],
        ),
        0..=5,
    );
    prop_oneof![4 => valid, 1 => arbitrary]
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        (
            order_id_strategy(),
            prop::sample::select(CURRENCIES.to_vec()),
            lines_strategy()
        )
            .prop_map(|(order, currency, lines)| Step::Place {
                order,
                currency,
                lines
            }),
        (order_id_strategy(), reason_strategy())
            .prop_map(|(order, reason)| Step::Cancel { order, reason }),
        (
            order_id_strategy(),
            1..4_u128,
            prop::bool::weighted(0.8),
            any::<i64>()
        )
            .prop_map(
                |(order, payment, pays_exact_total, otherwise)| Step::MarkPaid {
                    order,
                    payment,
                    pays_exact_total,
                    otherwise,
                }
            ),
        (order_id_strategy(), 1..4_u128, reason_strategy()).prop_map(|(order, payment, reason)| {
            Step::MarkPaymentFailed {
                order,
                payment,
                reason,
            }
        }),
        order_id_strategy().prop_map(|order| Step::Ship { order }),
        (
            order_id_strategy(),
            prop::sample::select(vec![
                "payment_deadline_passed",
                "customer_unknown",
                "Bad Code"
            ]),
            reason_strategy()
        )
            .prop_map(|(order, code, reason)| Step::Reject {
                order,
                code,
                reason
            }),
    ]
}

fn command_for(step: Step, state: &OrderState) -> OrderCommand {
    match step {
        Step::Place {
            order,
            currency,
            lines,
        } => OrderCommand::Place(PlaceOrder {
            order_id: order,
            customer_id: CustomerId::from_uuid(Uuid::from_u128(10)),
            currency: Currency::parse(currency).unwrap(),
            lines: lines
                .into_iter()
                .map(|(sku, quantity, unit_price)| OrderLine {
                    sku: Sku::parse(SKUS[sku]).unwrap(),
                    quantity: Quantity::new(quantity).unwrap(),
                    unit_price,
                })
                .collect(),
            card_token: None,
        }),
        Step::Cancel { order, reason } => OrderCommand::Cancel(CancelOrder {
            order_id: order,
            reason,
        }),
        Step::MarkPaid {
            order,
            payment,
            pays_exact_total,
            otherwise,
        } => OrderCommand::MarkPaid(MarkPaid {
            order_id: order,
            payment_id: PaymentId::from_uuid(Uuid::from_u128(payment)),
            amount: match (pays_exact_total, state.details()) {
                (true, Some(details)) => details.total,
                _ => otherwise,
            },
        }),
        Step::MarkPaymentFailed {
            order,
            payment,
            reason,
        } => OrderCommand::MarkPaymentFailed(MarkPaymentFailed {
            order_id: order,
            payment_id: PaymentId::from_uuid(Uuid::from_u128(payment)),
            reason,
        }),
        Step::Ship { order } => OrderCommand::Ship(ShipOrder { order_id: order }),
        Step::Reject {
            order,
            code,
            reason,
        } => OrderCommand::Reject(RejectOrder {
            order_id: order,
            code: code.to_owned(),
            reason,
        }),
    }
}

fn steps_strategy() -> impl Strategy<Value = Vec<(Step, i64)>> {
    prop::collection::vec((step_strategy(), 0..1_000_i64), 0..40)
}

/// Decides each step against the running state, keeping the accepted
/// events: the history and the state kept live while deciding it.
fn decide_history(steps: Vec<(Step, i64)>) -> (Vec<OrderEvent>, OrderState) {
    let mut live = OrderState::default();
    let mut history = Vec::new();
    let mut now = 0;
    for (step, elapsed) in steps {
        now += elapsed;
        let command = command_for(step, &live);
        let context = DecisionContext {
            now: Timestamp(now),
        };
        if let Ok(event) = Order::decide(&live, &command, &context) {
            assert_eq!(event.order_id(), command.order_id());
            let before = live.clone();
            live = Order::evolve(live, &event);
            // evolve ignores only events that cannot apply; a decided one
            // always can.
            assert_ne!(live, before, "{event:?} was dropped");
            history.push(event);
        }
    }
    (history, live)
}

proptest! {
    #[test]
    fn replay_equals_live_at_every_split(steps in steps_strategy()) {
        let (history, live) = decide_history(steps);

        prop_assert_eq!(&Order::fold(&history), &live);
        for split in 0..=history.len() {
            let (prefix, suffix) = history.split_at(split);
            let resumed = suffix.iter().fold(Order::fold(prefix), Order::evolve);
            prop_assert_eq!(&resumed, &live);

            let snapshot = serde_json::to_string(&Order::fold(prefix)).unwrap();
            let restored: OrderState = serde_json::from_str(&snapshot).unwrap();
            let resumed_from_snapshot = suffix.iter().fold(restored, Order::evolve);
            prop_assert_eq!(&resumed_from_snapshot, &live);
        }
    }
}

/// Guards the property above against a generator that never gets past
/// placement: sampled histories must end in every status.
#[test]
fn generated_histories_reach_every_status() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = steps_strategy();
    let mut reached = std::collections::HashSet::new();
    for _ in 0..256 {
        let steps = strategy.new_tree(&mut runner).unwrap().current();
        reached.insert(decide_history(steps).1.status());
    }
    for status in [
        None,
        Some(OrderStatus::Placed),
        Some(OrderStatus::Confirmed),
        Some(OrderStatus::PaymentRejected),
        Some(OrderStatus::Cancelled),
        Some(OrderStatus::Shipped),
    ] {
        assert!(reached.contains(&status), "never reached {status:?}");
    }
}
