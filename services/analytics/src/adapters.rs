//! The adapters: how each domain's events become figures. One small pure
//! type per domain; the fold, the gate, the buckets and the rows are
//! shared (`crate::fold`). A domain whose contracts are not here yet is
//! folded by adding its adapter and one line in `crate::sources`.

use foldline_contracts::notify::{NotifyEventRecord, ORDER_NOTICE_TEMPLATES};
use foldline_contracts::orders::OrdersEventRecord;
use foldline_contracts::payments::PaymentsEventRecord;
use foldline_contracts::record::EventRecord;
use foldline_contracts::users::UsersEventRecord;

use crate::figures::Figures;
use crate::fold::{EventsAdapter, JoinState};

pub const ORDERS_PLACED: &str = "orders.placed";
pub const ORDERS_CONFIRMED: &str = "orders.confirmed";
/// Orders whose payment was refused (`OrderPaymentRejected`).
pub const ORDERS_REJECTED: &str = "orders.rejected";
pub const ORDERS_CANCELLED: &str = "orders.cancelled";
pub const ORDERS_SHIPPED: &str = "orders.shipped";
/// Placed value by currency, minor units: `orders.placed_value.EUR`.
pub const ORDERS_PLACED_VALUE: &str = "orders.placed_value";
/// Confirmed (paid) amount by currency, minor units: `orders.revenue.EUR`.
pub const ORDERS_REVENUE: &str = "orders.revenue";
/// Payment outcomes as the orders log records them.
pub const PAYMENTS_APPROVED: &str = "orders.payment_approved";
pub const PAYMENTS_DECLINED: &str = "orders.payment_declined";
/// Order placed → payment outcome recorded on the order, event time to event time.
pub const ORDER_TO_PAYMENT_MS: &str = "orders.order_to_payment_ms";

pub const PAYMENTS_REQUESTED: &str = "payments.requested";
/// Authorized by the provider, as the payments log records it.
pub const PAYMENTS_AUTHORIZED: &str = "payments.authorized";
/// Declined by the provider; `payments.declined.<code>` splits it.
pub const PAYMENTS_PROVIDER_DECLINED: &str = "payments.declined";
/// Amounts by currency, minor units: `payments.captured_amount.EUR`.
pub const PAYMENTS_AUTHORIZED_AMOUNT: &str = "payments.authorized_amount";
pub const PAYMENTS_CAPTURED_AMOUNT: &str = "payments.captured_amount";
pub const PAYMENTS_REFUNDED_AMOUNT: &str = "payments.refunded_amount";
pub const PAYMENTS_CAPTURE_FAILED: &str = "payments.capture_failed";
pub const PAYMENTS_REFUND_FAILED: &str = "payments.refund_failed";
pub const PAYMENTS_VOIDED: &str = "payments.voided";
/// Payment requested → authorized or declined, event time to event time.
pub const PAYMENT_REQUEST_TO_OUTCOME_MS: &str = "payments.request_to_outcome_ms";

pub const USERS_REGISTERED: &str = "users.registered";
pub const USERS_REGISTRATION_REFUSED: &str = "users.registration_refused";
pub const USERS_DEACTIVATED: &str = "users.deactivated";
pub const USERS_ERASED: &str = "users.erased";

pub const NOTIFY_QUEUED: &str = "notify.queued";
/// Delivered; `notify.sent.<channel>.<provider>` splits it by who took it.
pub const NOTIFY_SENT: &str = "notify.sent";
pub const NOTIFY_FAILED: &str = "notify.failed";
/// Moves to the next provider of a chain; `notify.failovers.<channel>.<from>`
/// splits them by the provider moved away from.
pub const NOTIFY_FAILOVERS: &str = "notify.failovers";
/// Order notices delivered; `notify.order_notices_sent.<template>` splits them.
pub const NOTIFY_ORDER_NOTICES_SENT: &str = "notify.order_notices_sent";
/// The order (or payments) event → the notice's provider accepted it.
pub const ORDER_TO_NOTIFICATION_MS: &str = "notify.order_to_notification_ms";
/// Request (the queueing command's clock) → provider accepted, every notification.
pub const NOTIFY_DELIVERY_MS: &str = "notify.delivery_ms";

/// `orders.events`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OrdersAdapter;

impl EventsAdapter for OrdersAdapter {
    type Events = OrdersEventRecord;
    const DOMAIN: &'static str = "orders";
    const METRICS: &'static [&'static str] = &[
        ORDERS_PLACED,
        ORDERS_CONFIRMED,
        ORDERS_REJECTED,
        ORDERS_CANCELLED,
        ORDERS_SHIPPED,
        "orders.placed_value.*",
        "orders.revenue.*",
        PAYMENTS_APPROVED,
        PAYMENTS_DECLINED,
        ORDER_TO_PAYMENT_MS,
        "orders.commands_rejected",
    ];

    fn fold(&self, event: &OrdersEventRecord, join: &mut JoinState, figures: &mut Figures) {
        let at = event.metadata().occurred_at;
        let currency = |join: &JoinState| {
            join.currency
                .clone()
                .unwrap_or_else(|| "unknown".to_owned())
        };
        match event {
            OrdersEventRecord::Placed(placed) => {
                figures.count(ORDERS_PLACED);
                figures.add(
                    format!("{ORDERS_PLACED_VALUE}.{}", placed.currency),
                    placed.total,
                );
                join.started_at = Some(at);
                join.currency = Some(placed.currency.clone());
            }
            OrdersEventRecord::Confirmed(confirmed) => {
                figures.count(ORDERS_CONFIRMED);
                figures.count(PAYMENTS_APPROVED);
                figures.add(
                    format!("{ORDERS_REVENUE}.{}", currency(join)),
                    confirmed.amount,
                );
                if let Some(placed_at) = join.started_at {
                    figures.record_latency(ORDER_TO_PAYMENT_MS, at - placed_at);
                }
            }
            OrdersEventRecord::PaymentRejected(_) => {
                figures.count(ORDERS_REJECTED);
                figures.count(PAYMENTS_DECLINED);
                if let Some(placed_at) = join.started_at {
                    figures.record_latency(ORDER_TO_PAYMENT_MS, at - placed_at);
                }
            }
            // Rejected by the saga before any payment answer (an unknown
            // or deactivated customer, the payment deadline): no decline.
            OrdersEventRecord::Rejected(_) => figures.count(ORDERS_REJECTED),
            OrdersEventRecord::Cancelled(_) => figures.count(ORDERS_CANCELLED),
            OrdersEventRecord::Shipped(_) => figures.count(ORDERS_SHIPPED),
            // Counted by the fold itself, for every domain alike.
            OrdersEventRecord::CommandRejected(_) => {}
        }
    }
}

/// `users.events`: registrations, refusals, deactivations, erasures (the
/// email claims and profile changes carry no figure).
#[derive(Clone, Copy, Debug, Default)]
pub struct UsersAdapter;

impl EventsAdapter for UsersAdapter {
    type Events = UsersEventRecord;
    const DOMAIN: &'static str = "users";
    const METRICS: &'static [&'static str] = &[
        USERS_REGISTERED,
        USERS_REGISTRATION_REFUSED,
        USERS_DEACTIVATED,
        USERS_ERASED,
        "users.commands_rejected",
    ];

    fn fold(&self, event: &UsersEventRecord, _join: &mut JoinState, figures: &mut Figures) {
        match event {
            UsersEventRecord::Registered(_) => figures.count(USERS_REGISTERED),
            UsersEventRecord::RegistrationRefused(_) => figures.count(USERS_REGISTRATION_REFUSED),
            UsersEventRecord::Deactivated(_) => figures.count(USERS_DEACTIVATED),
            UsersEventRecord::Erased(_) => figures.count(USERS_ERASED),
            UsersEventRecord::EmailClaimed(_)
            | UsersEventRecord::EmailReleased(_)
            | UsersEventRecord::ProfileChanged(_)
            | UsersEventRecord::EmailChanged(_)
            | UsersEventRecord::EmailChangeRefused(_)
            | UsersEventRecord::CommandRejected(_) => {}
        }
    }
}

/// `payments.events`: one payment aggregate per payment, so its request
/// time joins its outcome in the payment's gate row.
#[derive(Clone, Copy, Debug, Default)]
pub struct PaymentsAdapter;

impl EventsAdapter for PaymentsAdapter {
    type Events = PaymentsEventRecord;
    const DOMAIN: &'static str = "payments";
    const METRICS: &'static [&'static str] = &[
        PAYMENTS_REQUESTED,
        PAYMENTS_AUTHORIZED,
        PAYMENTS_PROVIDER_DECLINED,
        "payments.declined.*",
        "payments.authorized_amount.*",
        "payments.captured_amount.*",
        "payments.refunded_amount.*",
        PAYMENTS_CAPTURE_FAILED,
        PAYMENTS_REFUND_FAILED,
        PAYMENTS_VOIDED,
        PAYMENT_REQUEST_TO_OUTCOME_MS,
        "payments.commands_rejected",
    ];

    fn fold(&self, event: &PaymentsEventRecord, join: &mut JoinState, figures: &mut Figures) {
        let at = event.metadata().occurred_at;
        let outcome_latency = |join: &JoinState, figures: &mut Figures| {
            if let Some(requested_at) = join.started_at {
                figures.record_latency(PAYMENT_REQUEST_TO_OUTCOME_MS, at - requested_at);
            }
        };
        match event {
            PaymentsEventRecord::Requested(requested) => {
                figures.count(PAYMENTS_REQUESTED);
                join.started_at = Some(at);
                join.currency = Some(requested.currency.clone());
            }
            PaymentsEventRecord::Authorized(authorized) => {
                figures.count(PAYMENTS_AUTHORIZED);
                figures.add(
                    format!("{PAYMENTS_AUTHORIZED_AMOUNT}.{}", authorized.currency),
                    authorized.amount,
                );
                outcome_latency(join, figures);
            }
            PaymentsEventRecord::Declined(declined) => {
                figures.count(PAYMENTS_PROVIDER_DECLINED);
                figures.count(format!("{PAYMENTS_PROVIDER_DECLINED}.{}", declined.code));
                outcome_latency(join, figures);
            }
            PaymentsEventRecord::Captured(captured) => figures.add(
                format!("{PAYMENTS_CAPTURED_AMOUNT}.{}", captured.currency),
                captured.amount,
            ),
            PaymentsEventRecord::CaptureFailed(_) => figures.count(PAYMENTS_CAPTURE_FAILED),
            PaymentsEventRecord::RefundIssued(refund) => figures.add(
                format!("{PAYMENTS_REFUNDED_AMOUNT}.{}", refund.currency),
                refund.amount,
            ),
            PaymentsEventRecord::RefundFailed(_) => figures.count(PAYMENTS_REFUND_FAILED),
            PaymentsEventRecord::Voided(_) => figures.count(PAYMENTS_VOIDED),
            PaymentsEventRecord::CaptureRequested(_)
            | PaymentsEventRecord::RefundRequested(_)
            | PaymentsEventRecord::VoidRequested(_)
            | PaymentsEventRecord::VoidFailed(_)
            | PaymentsEventRecord::CommandRejected(_) => {}
        }
    }
}

/// A provider or template name as a metric family member (letters, digits
/// and `_`: what a series request may name).
fn member(name: &str) -> String {
    name.chars()
        .map(|c| match c.is_ascii_alphanumeric() {
            true => c.to_ascii_lowercase(),
            false => '_',
        })
        .take(32)
        .collect()
}

/// `notify.events`: one aggregate per notification, so its channel and
/// whether it is an order notice join its delivery in the notification's
/// gate row. An order notice's `NotificationQueued` carries its causing
/// event's time (the queueing command's clock is its cause's, and an
/// event's time is its command's), and `NotificationSent.latency_ms` is
/// measured from that clock: so it *is* order event → provider accepted,
/// an integer of the log.
#[derive(Clone, Copy, Debug, Default)]
pub struct NotifyAdapter;

impl EventsAdapter for NotifyAdapter {
    type Events = NotifyEventRecord;
    const DOMAIN: &'static str = "notify";
    const METRICS: &'static [&'static str] = &[
        NOTIFY_QUEUED,
        "notify.queued.*",
        NOTIFY_SENT,
        "notify.sent.email.*",
        "notify.sent.sms.*",
        "notify.sent.webhook.*",
        NOTIFY_FAILED,
        "notify.failed.*",
        NOTIFY_FAILOVERS,
        "notify.failovers.email.*",
        "notify.failovers.sms.*",
        "notify.failovers.webhook.*",
        NOTIFY_ORDER_NOTICES_SENT,
        "notify.order_notices_sent.*",
        ORDER_TO_NOTIFICATION_MS,
        NOTIFY_DELIVERY_MS,
        "notify.commands_rejected",
    ];

    fn fold(&self, event: &NotifyEventRecord, join: &mut JoinState, figures: &mut Figures) {
        let channel =
            |join: &JoinState| join.channel.clone().unwrap_or_else(|| "unknown".to_owned());
        match event {
            NotifyEventRecord::Queued(queued) => {
                figures.count(NOTIFY_QUEUED);
                figures.count(format!("{NOTIFY_QUEUED}.{}", member(&queued.channel)));
                join.channel = Some(member(&queued.channel));
                let caused_by_an_event = queued.metadata.causation_id != queued.metadata.command_id;
                if caused_by_an_event && ORDER_NOTICE_TEMPLATES.contains(&queued.template.as_str())
                {
                    join.order_notice = Some(member(&queued.template));
                }
            }
            NotifyEventRecord::Sent(sent) => {
                figures.count(NOTIFY_SENT);
                figures.count(format!(
                    "{NOTIFY_SENT}.{}.{}",
                    channel(join),
                    member(&sent.provider)
                ));
                figures.record_latency(NOTIFY_DELIVERY_MS, sent.latency_ms);
                if let Some(template) = &join.order_notice {
                    figures.count(NOTIFY_ORDER_NOTICES_SENT);
                    figures.count(format!("{NOTIFY_ORDER_NOTICES_SENT}.{template}"));
                    figures.record_latency(ORDER_TO_NOTIFICATION_MS, sent.latency_ms);
                }
            }
            NotifyEventRecord::FailedOver(failover) => {
                figures.count(NOTIFY_FAILOVERS);
                figures.count(format!(
                    "{NOTIFY_FAILOVERS}.{}.{}",
                    channel(join),
                    member(&failover.from_provider)
                ));
            }
            NotifyEventRecord::Failed(_) => {
                figures.count(NOTIFY_FAILED);
                figures.count(format!("{NOTIFY_FAILED}.{}", channel(join)));
            }
            NotifyEventRecord::AttemptFailed(_) | NotifyEventRecord::CommandRejected(_) => {}
        }
    }
}
