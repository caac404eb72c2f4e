//! The fold, given records → figures: duplicates, stale decisions, late
//! events and redeliveries; and a property test that any replay of any
//! log (split, interleaved, redelivered, with duplicates) yields the same
//! rows and the figures of the history it records.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use foldline_contracts::envelope::{CommandRejected, EventMetadata};
use foldline_contracts::orders::{
    OrderCancelled, OrderConfirmed, OrderPaymentRejected, OrderPlaced, OrdersEventRecord,
};
use foldline_contracts::payments::{
    PaymentAuthorized, PaymentDeclined, PaymentRequested, PaymentsEventRecord,
};
use foldline_contracts::users::{UserDeactivated, UserRegistered, UsersEventRecord};
use foldline_platform::dlq::headers as dlq_headers;
use foldline_platform::projector::{apply_in_memory, MemoryTable, Projection};
use proptest::prelude::*;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

use crate::adapters::*;
use crate::figures::{Figures, Resolution, HOUR_MS, MINUTE_MS};
use crate::fold::{figures_partition, DeadLetter, DlqFold, EventsFold, FIGURES};

const SOURCE: &str = "orders.events";
/// 2027-01-15T08:00:00Z, a minute and an hour boundary.
const T0: i64 = 1_800_000_000_000 - 1_800_000_000_000 % HOUR_MS;

fn id(n: u128) -> String {
    uuid::Uuid::from_u128(n).to_string()
}

fn metadata(order: u128, version: i64, command: u128, at: i64) -> EventMetadata {
    EventMetadata {
        event_id: id(1 << 64 | command),
        aggregate_id: id(order),
        aggregate_version: version,
        command_id: id(command),
        correlation_id: id(command),
        causation_id: id(command),
        occurred_at: at,
        traceparent: None,
    }
}

fn placed(order: u128, command: u128, at: i64, currency: &str, total: i64) -> OrdersEventRecord {
    OrdersEventRecord::Placed(OrderPlaced {
        metadata: metadata(order, 1, command, at),
        order_id: id(order),
        customer_id: id(7),
        currency: currency.to_owned(),
        lines: Vec::new(),
        total,
        card_token: None,
    })
}

fn confirmed(order: u128, version: i64, command: u128, at: i64, amount: i64) -> OrdersEventRecord {
    OrdersEventRecord::Confirmed(OrderConfirmed {
        metadata: metadata(order, version, command, at),
        order_id: id(order),
        payment_id: id(command),
        amount,
    })
}

fn payment_rejected(order: u128, version: i64, command: u128, at: i64) -> OrdersEventRecord {
    OrdersEventRecord::PaymentRejected(OrderPaymentRejected {
        metadata: metadata(order, version, command, at),
        order_id: id(order),
        payment_id: id(command),
        reason: "card declined".to_owned(),
    })
}

fn cancelled(order: u128, version: i64, command: u128, at: i64) -> OrdersEventRecord {
    OrdersEventRecord::Cancelled(OrderCancelled {
        metadata: metadata(order, version, command, at),
        order_id: id(order),
        reason: "changed my mind".to_owned(),
        refund_payment_id: None,
        refund_amount: None,
    })
}

/// A refusal at the aggregate's current `version`.
fn refused(order: u128, version: i64, command: u128, at: i64) -> OrdersEventRecord {
    OrdersEventRecord::CommandRejected(CommandRejected {
        metadata: metadata(order, version, command, at),
        command_type: "foldline.orders.CancelOrder".to_owned(),
        code: "already_cancelled".to_owned(),
        kind: "conflict".to_owned(),
        message: "order is already cancelled".to_owned(),
    })
}

fn orders_fold() -> EventsFold<OrdersAdapter> {
    EventsFold::new(SOURCE, OrdersAdapter)
}

/// One partition's log, folded in order from offset 0.
fn fold_partition<P: Projection>(
    fold: &P,
    table: &mut MemoryTable,
    partition: i32,
    log: &[P::Record],
) {
    for (offset, record) in log.iter().enumerate() {
        apply_in_memory(fold, table, record, partition, offset as i64).unwrap();
    }
}

/// The merged figures of every partition's rows of one span.
fn span(table: &MemoryTable, name: &str, clustering: Option<i64>) -> Figures {
    let mut merged = Figures::default();
    for (key, row) in table {
        if key.table != FIGURES || !key.partition.starts_with(format!("{name}\0").as_bytes()) {
            continue;
        }
        let wanted = clustering.map_or_else(Vec::new, crate::fold::bucket_clustering);
        if key.clustering == wanted {
            merged.merge(&serde_json::from_slice(&row.value).unwrap());
        }
    }
    merged
}

fn totals(table: &MemoryTable) -> Figures {
    span(table, "total", None)
}

/// Every bucket of every resolution with its merged figures.
fn buckets(table: &MemoryTable) -> BTreeMap<(Resolution, i64), Figures> {
    let mut all: BTreeMap<(Resolution, i64), Figures> = BTreeMap::new();
    for (key, row) in table {
        if key.table != FIGURES {
            continue;
        }
        for resolution in Resolution::ALL {
            if key
                .partition
                .starts_with(format!("{}\0", resolution.as_str()).as_bytes())
            {
                let start = crate::fold::bucket_from_clustering(&key.clustering).unwrap();
                all.entry((resolution, start))
                    .or_default()
                    .merge(&serde_json::from_slice(&row.value).unwrap());
            }
        }
    }
    all
}

#[test]
fn placed_paid_refused_and_cancelled_orders_become_figures() {
    let log = vec![
        placed(1, 11, T0, "EUR", 2_599),
        placed(2, 21, T0 + 1_000, "USD", 1_000),
        placed(3, 31, T0 + 2_000, "EUR", 99),
        confirmed(1, 2, 12, T0 + 250, 2_599),
        payment_rejected(2, 2, 22, T0 + 1_400),
        cancelled(3, 2, 32, T0 + 3_000),
        refused(3, 2, 33, T0 + 4_000),
    ];
    let mut table = MemoryTable::new();
    fold_partition(&orders_fold(), &mut table, 0, &log);
    let figures = totals(&table);
    assert_eq!(figures.sum(ORDERS_PLACED), 3);
    assert_eq!(figures.sum(ORDERS_CONFIRMED), 1);
    assert_eq!(figures.sum(ORDERS_REJECTED), 1);
    assert_eq!(figures.sum(ORDERS_CANCELLED), 1);
    assert_eq!(figures.sum("orders.commands_rejected"), 1);
    assert_eq!(figures.sum("orders.placed_value.EUR"), 2_698);
    assert_eq!(figures.sum("orders.placed_value.USD"), 1_000);
    assert_eq!(figures.sum("orders.revenue.EUR"), 2_599);
    assert_eq!(figures.sum("orders.revenue.USD"), 0);
    assert_eq!(figures.sum(PAYMENTS_APPROVED), 1);
    assert_eq!(figures.sum(PAYMENTS_DECLINED), 1);
    let latency = figures.latencies[ORDER_TO_PAYMENT_MS].summary();
    assert_eq!(latency.count, 2);
    assert_eq!(latency.p50, 250);
    assert!((400..=404).contains(&latency.max), "{latency:?}");
    // All of it happened in the first minute.
    assert_eq!(span(&table, "minute", Some(T0)), figures);
    assert_eq!(span(&table, "hour", Some(T0)), figures);
}

#[test]
fn a_record_written_twice_or_delivered_twice_counts_once() {
    let first = placed(1, 11, T0, "EUR", 1_250);
    let log = vec![
        first.clone(),
        confirmed(1, 2, 12, T0 + 100, 1_250),
        // The same decision appended again (a retried produce, a resent batch).
        first.clone(),
        confirmed(1, 2, 12, T0 + 100, 1_250),
    ];
    let mut table = MemoryTable::new();
    fold_partition(&orders_fold(), &mut table, 0, &log);
    let once = table.clone();
    // Redelivered from the start (a crash before the checkpoint).
    fold_partition(&orders_fold(), &mut table, 0, &log);
    assert_eq!(table, once, "a redelivery changes no row");
    let figures = totals(&table);
    assert_eq!(figures.sum(ORDERS_PLACED), 1);
    assert_eq!(figures.sum(ORDERS_CONFIRMED), 1);
    assert_eq!(figures.sum("orders.revenue.EUR"), 1_250);
    assert_eq!(figures.latencies[ORDER_TO_PAYMENT_MS].count(), 1);
}

#[test]
fn a_stale_decision_of_a_zombie_does_not_count() {
    let log = vec![
        placed(1, 11, T0, "EUR", 1_250),
        confirmed(1, 2, 12, T0 + 100, 1_250),
        // Decided against version 1 by a processor that did not see the
        // confirmation: the gate refuses it, as the domain's projection does.
        payment_rejected(1, 2, 13, T0 + 200),
    ];
    let mut table = MemoryTable::new();
    fold_partition(&orders_fold(), &mut table, 0, &log);
    let figures = totals(&table);
    assert_eq!(figures.sum(ORDERS_CONFIRMED), 1);
    assert_eq!(figures.sum(ORDERS_REJECTED), 0);
    assert_eq!(figures.sum(PAYMENTS_DECLINED), 0);
}

#[test]
fn a_late_event_lands_in_its_own_minute_and_hour() {
    let log = vec![
        placed(1, 11, T0 + 2 * HOUR_MS, "EUR", 100),
        // Arrives after the order above but happened two hours earlier.
        placed(2, 21, T0 + 5 * MINUTE_MS + 10, "EUR", 200),
    ];
    let mut table = MemoryTable::new();
    fold_partition(&orders_fold(), &mut table, 0, &log);
    let late_minute = span(&table, "minute", Some(T0 + 5 * MINUTE_MS));
    assert_eq!(late_minute.sum(ORDERS_PLACED), 1);
    assert_eq!(late_minute.sum("orders.placed_value.EUR"), 200);
    assert_eq!(span(&table, "hour", Some(T0)).sum(ORDERS_PLACED), 1);
    assert_eq!(
        span(&table, "hour", Some(T0 + 2 * HOUR_MS)).sum("orders.placed_value.EUR"),
        100
    );
    assert_eq!(
        span(&table, "minute", Some(T0 + 2 * HOUR_MS)).sum(ORDERS_PLACED),
        1
    );
    assert_eq!(totals(&table).sum(ORDERS_PLACED), 2);
}

#[test]
fn registrations_deactivations_and_erasures_are_counted() {
    let user =
        |n: u128, version: i64, at: i64| metadata(n, version, 100 + n * 10 + version as u128, at);
    let log = vec![
        UsersEventRecord::Registered(UserRegistered {
            metadata: user(1, 1, T0),
            user_id: id(1),
            claim_key: "claim-1".to_owned(),
            email_sealed: "v1.x".to_owned(),
            name_sealed: "v1.y".to_owned(),
            phone_sealed: None,
        }),
        UsersEventRecord::Deactivated(UserDeactivated {
            metadata: user(1, 2, T0 + 10),
            user_id: id(1),
            reason: "asked".to_owned(),
        }),
    ];
    let mut table = MemoryTable::new();
    fold_partition(
        &EventsFold::new("users.events", UsersAdapter),
        &mut table,
        0,
        &log,
    );
    let figures = totals(&table);
    assert_eq!(figures.sum(USERS_REGISTERED), 1);
    assert_eq!(figures.sum(USERS_DEACTIVATED), 1);
    assert_eq!(figures.sum(USERS_ERASED), 0);
}

#[test]
fn payment_requests_and_provider_answers_become_figures() {
    let requested = |payment: u128, at: i64| {
        PaymentsEventRecord::Requested(PaymentRequested {
            metadata: metadata(payment, 1, payment * 10 + 1, at),
            payment_id: id(payment),
            order_id: id(payment + 500),
            customer_id: id(7),
            amount: 2_500,
            currency: "EUR".to_owned(),
            card_token: "tok".to_owned(),
        })
    };
    let log = vec![
        requested(1, T0),
        requested(2, T0 + 10),
        PaymentsEventRecord::Authorized(PaymentAuthorized {
            metadata: metadata(1, 2, 12, T0 + 120),
            payment_id: id(1),
            order_id: id(501),
            amount: 2_500,
            currency: "EUR".to_owned(),
            provider_reference: "auth-1".to_owned(),
        }),
        PaymentsEventRecord::Declined(PaymentDeclined {
            metadata: metadata(2, 2, 22, T0 + 40),
            payment_id: id(2),
            order_id: id(502),
            code: "card_declined".to_owned(),
            reason: "declined".to_owned(),
            provider_reference: None,
        }),
    ];
    let mut table = MemoryTable::new();
    let fold = EventsFold::new("payments.events", PaymentsAdapter);
    fold_partition(&fold, &mut table, 0, &log);
    fold_partition(&fold, &mut table, 0, &log);
    let figures = totals(&table);
    assert_eq!(figures.sum(PAYMENTS_REQUESTED), 2);
    assert_eq!(figures.sum(PAYMENTS_AUTHORIZED), 1);
    assert_eq!(figures.sum("payments.authorized_amount.EUR"), 2_500);
    assert_eq!(figures.sum("payments.declined.card_declined"), 1);
    let latency = figures.latencies[PAYMENT_REQUEST_TO_OUTCOME_MS].summary();
    assert_eq!((latency.count, latency.p50), (2, 30));
}

#[test]
fn notifications_count_by_channel_and_provider_and_order_notices_time_from_their_order_event() {
    use foldline_contracts::notify::{
        NotificationFailed, NotificationQueued, NotificationSent, NotifyEventRecord,
        ProviderFailedOver,
    };
    let queued = |notification: u128, channel: &str, template: &str, caused_by_event: bool| {
        let mut metadata = metadata(notification, 1, notification * 10 + 1, T0);
        if caused_by_event {
            // An order notice: its command reacted to an orders event.
            metadata.causation_id = id(9_000 + notification);
        }
        NotifyEventRecord::Queued(NotificationQueued {
            metadata,
            notification_id: id(notification),
            channel: channel.to_owned(),
            recipient: "+447700900123".to_owned(),
            template: template.to_owned(),
            parameters: Vec::new(),
        })
    };
    let sent = |notification: u128, version: i64, provider: &str, latency_ms: i64| {
        NotifyEventRecord::Sent(NotificationSent {
            metadata: metadata(
                notification,
                version,
                notification * 10 + version as u128,
                T0,
            ),
            notification_id: id(notification),
            attempt: 1,
            provider: provider.to_owned(),
            latency_ms,
            provider_call_us: 900,
            provider_message_id: None,
        })
    };
    let log = vec![
        queued(1, "sms", "order.confirmed", true),
        NotifyEventRecord::FailedOver(ProviderFailedOver {
            metadata: metadata(1, 2, 12, T0),
            notification_id: id(1),
            attempt: 1,
            from_provider: "primary".to_owned(),
            to_provider: "backup".to_owned(),
            reason: "timeout".to_owned(),
        }),
        sent(1, 3, "backup", 120),
        // A client's notification with an order template is no order notice.
        queued(2, "email", "order.confirmed", false),
        sent(2, 2, "email-sink", 30),
        queued(3, "email", "order.refunded", true),
        sent(3, 2, "email-sink", 80),
        queued(4, "sms", "welcome", false),
        NotifyEventRecord::Failed(NotificationFailed {
            metadata: metadata(4, 2, 42, T0),
            notification_id: id(4),
            attempt: 3,
            reason: "every provider failed".to_owned(),
        }),
    ];
    let fold = EventsFold::new("notify.events", NotifyAdapter);
    let mut table = MemoryTable::new();
    fold_partition(&fold, &mut table, 0, &log);
    // Redelivered: the gate keeps every figure as it was.
    fold_partition(&fold, &mut table, 0, &log);
    let figures = totals(&table);
    assert_eq!(figures.sum(NOTIFY_QUEUED), 4);
    assert_eq!(figures.sum("notify.queued.sms"), 2);
    assert_eq!(figures.sum(NOTIFY_SENT), 3);
    assert_eq!(figures.sum("notify.sent.sms.backup"), 1);
    assert_eq!(figures.sum("notify.sent.email.email_sink"), 2);
    assert_eq!(figures.sum(NOTIFY_FAILOVERS), 1);
    assert_eq!(figures.sum("notify.failovers.sms.primary"), 1);
    assert_eq!(figures.sum(NOTIFY_FAILED), 1);
    assert_eq!(figures.sum("notify.failed.sms"), 1);
    assert_eq!(figures.sum(NOTIFY_ORDER_NOTICES_SENT), 2);
    assert_eq!(figures.sum("notify.order_notices_sent.order_confirmed"), 1);
    assert_eq!(figures.sum("notify.order_notices_sent.order_refunded"), 1);
    let order_to_notification = figures.latencies[ORDER_TO_NOTIFICATION_MS].summary();
    assert_eq!(
        (order_to_notification.count, order_to_notification.max),
        (2, 120)
    );
    assert_eq!(figures.latencies[NOTIFY_DELIVERY_MS].summary().count, 3);
    // A fresh replay writes the same rows.
    let mut replayed = MemoryTable::new();
    fold_partition(&fold, &mut replayed, 0, &log);
    assert_eq!(replayed, table);
}

fn dead_letter(origin_offset: Option<i64>, cause: &str, at: i64, offset: i64) -> OwnedMessage {
    let mut headers = OwnedHeaders::new().insert(Header {
        key: dlq_headers::CAUSE,
        value: Some(cause),
    });
    if let Some(origin) = origin_offset {
        let origin = origin.to_string();
        headers = headers
            .insert(Header {
                key: dlq_headers::TOPIC,
                value: Some("it-orders.events"),
            })
            .insert(Header {
                key: dlq_headers::PARTITION,
                value: Some("2"),
            })
            .insert(Header {
                key: dlq_headers::OFFSET,
                value: Some(&origin),
            });
    }
    OwnedMessage::new(
        Some(b"garbage".to_vec()),
        None,
        "it-orders.dlq".to_owned(),
        Timestamp::CreateTime(at),
        0,
        offset,
        Some(headers),
    )
}

#[test]
fn a_poison_record_parked_twice_counts_once_per_origin() {
    let fold = DlqFold::new("orders.dlq", "orders");
    let messages = [
        dead_letter(Some(5), "poison", T0, 0),
        // The same origin parked again by another consumer, later.
        dead_letter(Some(5), "poison", T0 + HOUR_MS, 1),
        dead_letter(Some(6), "undecidable", T0 + 1, 2),
        // No origin headers: counted by its own place.
        dead_letter(None, "poison", T0 + 2, 3),
    ];
    let letters: Vec<DeadLetter> = messages
        .iter()
        .map(|message| fold.parse_raw(message).unwrap().unwrap())
        .collect();
    assert_eq!(letters[0].origin, "it-orders.events/2/5");
    assert_eq!(letters[0].parked_at, Some(T0));
    let mut table = MemoryTable::new();
    fold_partition(&fold, &mut table, 0, &letters);
    fold_partition(&fold, &mut table, 0, &letters);
    let figures = totals(&table);
    assert_eq!(figures.sum("dlq.orders"), 3);
    assert_eq!(figures.sum("dlq.orders.poison"), 2);
    assert_eq!(figures.sum("dlq.orders.undecidable"), 1);
    assert_eq!(span(&table, "hour", Some(T0 + HOUR_MS)), Figures::default());
    assert_eq!(span(&table, "minute", Some(T0)).sum("dlq.orders"), 3);
}

#[test]
fn rows_are_owned_by_their_source_partition() {
    let mut table = MemoryTable::new();
    fold_partition(
        &orders_fold(),
        &mut table,
        0,
        &[placed(1, 11, T0, "EUR", 1)],
    );
    fold_partition(
        &orders_fold(),
        &mut table,
        4,
        &[placed(2, 21, T0, "EUR", 2)],
    );
    let owners: Vec<_> = table
        .keys()
        .filter(|key| key.table == FIGURES && key.clustering.is_empty())
        .map(|key| key.partition.clone())
        .collect();
    assert_eq!(owners.len(), 2, "one total row per source partition");
    assert!(owners.contains(&figures_partition("total", SOURCE, 4)));
    assert_eq!(totals(&table).sum("orders.placed_value.EUR"), 3);
}

// ---- replay equals live, however the log is split or repeated ----

/// What happens to one order: its placement and what follows.
#[derive(Clone, Debug)]
struct OrderPlan {
    currency: &'static str,
    total: i64,
    placed_at: i64,
    /// Approved or declined, and how long after the placement.
    payment: Option<(bool, i64)>,
    /// Cancelled this long after the last event, then a refused cancel.
    cancel: Option<i64>,
}

fn order_plan() -> impl Strategy<Value = OrderPlan> {
    (
        prop::sample::select(vec!["EUR", "USD", "JPY"]),
        1..100_000i64,
        0..3 * HOUR_MS,
        prop::option::of((any::<bool>(), 0..20 * MINUTE_MS)),
        prop::option::of(0..2 * MINUTE_MS),
    )
        .prop_map(|(currency, total, placed_at, payment, cancel)| OrderPlan {
            currency,
            total,
            placed_at: T0 + placed_at,
            payment,
            cancel,
        })
}

/// An order's records in its log order, and the figures they should add.
fn order_records(order: u128, plan: &OrderPlan, expected: &mut Expected) -> Vec<OrdersEventRecord> {
    let command = |step: u128| order * 100 + step;
    let mut records = vec![placed(
        order,
        command(1),
        plan.placed_at,
        plan.currency,
        plan.total,
    )];
    expected.at(plan.placed_at, |figures| {
        figures.count(ORDERS_PLACED);
        figures.add(format!("orders.placed_value.{}", plan.currency), plan.total);
    });
    let mut version = 1;
    let mut last = plan.placed_at;
    if let Some((approved, after)) = plan.payment {
        version += 1;
        last = plan.placed_at + after;
        records.push(match approved {
            true => confirmed(order, version, command(2), last, plan.total),
            false => payment_rejected(order, version, command(2), last),
        });
        expected.at(last, |figures| {
            match approved {
                true => {
                    figures.count(ORDERS_CONFIRMED);
                    figures.count(PAYMENTS_APPROVED);
                    figures.add(format!("orders.revenue.{}", plan.currency), plan.total);
                }
                false => {
                    figures.count(ORDERS_REJECTED);
                    figures.count(PAYMENTS_DECLINED);
                }
            }
            figures.record_latency(ORDER_TO_PAYMENT_MS, after);
        });
    }
    if let Some(after) = plan.cancel {
        version += 1;
        let at = last + after;
        records.push(cancelled(order, version, command(3), at));
        records.push(refused(order, version, command(4), at + 1));
        expected.at(at, |figures| figures.count(ORDERS_CANCELLED));
        expected.at(at + 1, |figures| figures.count("orders.commands_rejected"));
    }
    records
}

/// The figures a history should yield, computed without the fold.
#[derive(Debug, Default)]
struct Expected {
    total: Figures,
    buckets: BTreeMap<(Resolution, i64), Figures>,
}

impl Expected {
    fn at(&mut self, at: i64, add: impl Fn(&mut Figures)) {
        add(&mut self.total);
        for resolution in Resolution::ALL {
            add(self
                .buckets
                .entry((resolution, resolution.bucket_start(at)))
                .or_default());
        }
    }
}

const PARTITIONS: usize = 3;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_replay_of_any_split_yields_the_figures_of_the_history(
        plans in prop::collection::vec(order_plan(), 1..24),
        duplicates in prop::collection::vec((0..PARTITIONS, any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..12),
        zombies in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        redeliveries in prop::collection::vec((0..PARTITIONS, any::<prop::sample::Index>(), 1..8usize), 0..6),
        interleaving in prop::collection::vec(0..PARTITIONS, 0..200),
    ) {
        // The history: each order's records in order, orders spread over
        // partitions by id, partitions interleaving orders as they come.
        let mut expected = Expected::default();
        let mut logs: Vec<Vec<OrdersEventRecord>> = vec![Vec::new(); PARTITIONS];
        for (index, plan) in plans.iter().enumerate() {
            let order = index as u128 + 1;
            let records = order_records(order, plan, &mut expected);
            logs[index % PARTITIONS].extend(records);
        }
        // Copies of decisions appended after their originals.
        for (partition, original, at) in &duplicates {
            let log = &mut logs[*partition];
            if log.is_empty() {
                continue;
            }
            let original = original.index(log.len());
            let copy = log[original].clone();
            let position = original + 1 + at.index(log.len() - original);
            log.insert(position, copy);
        }
        // A zombie's placement of an order that is already placed: another
        // command, decided against version 0, after the original.
        for zombie in &zombies {
            let order = zombie.index(plans.len());
            let plan = &plans[order];
            logs[order % PARTITIONS].push(placed(order as u128 + 1, 999_000 + order as u128, plan.placed_at + 5, plan.currency, 1));
        }

        // Live: every partition in order, crashing before checkpoints and
        // redelivering the last few records here and there.
        let fold = orders_fold();
        let mut live = MemoryTable::new();
        for (partition, log) in logs.iter().enumerate() {
            for (offset, record) in log.iter().enumerate() {
                apply_in_memory(&fold, &mut live, record, partition as i32, offset as i64).unwrap();
                for (crashing, at, back) in &redeliveries {
                    if *crashing == partition && !log.is_empty() && at.index(log.len()) == offset {
                        let from = offset.saturating_sub(*back);
                        for (again, record) in log.iter().enumerate().take(offset + 1).skip(from) {
                            apply_in_memory(&fold, &mut live, record, partition as i32, again as i64).unwrap();
                        }
                    }
                }
            }
        }

        // A fresh replay by another instance, the partitions interleaved
        // in another order.
        let mut replay = MemoryTable::new();
        let mut next = [0usize; PARTITIONS];
        let picks = interleaving.iter().copied().chain((0..PARTITIONS).cycle().take(PARTITIONS * logs.iter().map(Vec::len).sum::<usize>().max(1)));
        for partition in picks {
            if let Some(record) = logs[partition].get(next[partition]) {
                apply_in_memory(&fold, &mut replay, record, partition as i32, next[partition] as i64).unwrap();
                next[partition] += 1;
            }
        }
        for (partition, log) in logs.iter().enumerate() {
            prop_assert_eq!(next[partition], log.len(), "the replay read every record");
        }

        prop_assert_eq!(&replay, &live, "the replay's rows equal the live rows, byte for byte");
        prop_assert_eq!(totals(&live), expected.total.clone());
        prop_assert_eq!(buckets(&live), expected.buckets.clone());
    }
}
