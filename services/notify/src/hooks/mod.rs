//! Order notices: the saga's events turned into notifications, by two
//! process managers on the platform's generic `ProcessManager` (their
//! outboxes are `Reactions<_>` projections, their relays `relay_named`).
//! They read the orders and payments logs through `contracts` records
//! only; the recipient comes from notify's own read models of
//! `orders.events` (`order_customers`: an order's customer and currency)
//! and `users.events` (`contacts`: sealed addresses, opened with the
//! user's data key when a notice is sent). Rules and failure table:
//! `design.md` beside this file.
//!
//! | log | event | notice |
//! |---|---|---|
//! | `orders.events` | `OrderConfirmed` | `order.confirmed`: email, and SMS when the user has a phone |
//! | `orders.events` | `OrderRejected`, `OrderPaymentRejected` | `order.rejected` with the reason |
//! | `payments.events` | `RefundIssued` | `order.refunded` with the amount |

pub mod read_models;
pub mod relay;

use std::collections::BTreeMap;

use foldline_contracts::envelope::EventMetadata;
use foldline_contracts::notify::{self as wire, NotifyCommandRecord, ORDER_NOTICE_TEMPLATES};
use foldline_contracts::orders::OrdersEventRecord;
use foldline_contracts::payments::PaymentsEventRecord;
use foldline_platform::outbox::{follow_up_metadata, ProcessManager};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::Channel;

/// Names every notification id an order notice derives.
const NOTICES_NAMESPACE: Uuid = Uuid::from_u128(0x0d1c_e5a1_3f7b_4c2e_8a91_6b0f_2d4e_7c35);

/// Who the notices' commands are issued by.
pub const ISSUER: &str = "notify-order-notices";

pub const ORDER_CONFIRMED: &str = ORDER_NOTICE_TEMPLATES[0];
pub const ORDER_REJECTED: &str = ORDER_NOTICE_TEMPLATES[1];
pub const ORDER_REFUNDED: &str = ORDER_NOTICE_TEMPLATES[2];
/// The orders saga's reason code for an order of a customer no user is
/// registered as (`RejectOrder.code`, a value of the orders contract).
pub const CUSTOMER_UNKNOWN: &str = "customer_unknown";

/// What happened to the order, as much as the notice says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notice {
    Confirmation {
        payment_id: String,
        amount: i64,
    },
    Rejection {
        code: String,
        reason: String,
    },
    Refund {
        refund_id: String,
        amount: i64,
        currency: String,
    },
}

impl Notice {
    pub fn template(&self) -> &'static str {
        match self {
            Notice::Confirmation { .. } => ORDER_CONFIRMED,
            Notice::Rejection { .. } => ORDER_REJECTED,
            Notice::Refund { .. } => ORDER_REFUNDED,
        }
    }
}

/// One notice to send: the follow-up of one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderNotice {
    /// The event the notice reports; every id it sends derives from it.
    pub cause: EventMetadata,
    pub order_id: String,
    pub notice: Notice,
}

/// Reacts to `orders.events`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OrderNotices;

/// Reacts to `payments.events`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RefundNotices;

impl ProcessManager for OrderNotices {
    type Events = OrdersEventRecord;
    type FollowUp = OrderNotice;
    const NAME: &'static str = "notices_orders";
    const SOURCE: &'static str = "orders";

    fn react(&self, event: &OrdersEventRecord) -> Vec<OrderNotice> {
        order_notices(event)
    }
}

impl ProcessManager for RefundNotices {
    type Events = PaymentsEventRecord;
    type FollowUp = OrderNotice;
    const NAME: &'static str = "notices_payments";
    const SOURCE: &'static str = "payments";

    fn react(&self, event: &PaymentsEventRecord) -> Vec<OrderNotice> {
        refund_notices(event)
    }
}

/// The notices of one admitted orders event. Pure.
pub fn order_notices(event: &OrdersEventRecord) -> Vec<OrderNotice> {
    let notice = |cause: &EventMetadata, order_id: &str, notice: Notice| OrderNotice {
        cause: cause.clone(),
        order_id: order_id.to_owned(),
        notice,
    };
    match event {
        OrdersEventRecord::Confirmed(confirmed) => vec![notice(
            &confirmed.metadata,
            &confirmed.order_id,
            Notice::Confirmation {
                payment_id: confirmed.payment_id.clone(),
                amount: confirmed.amount,
            },
        )],
        OrdersEventRecord::Rejected(rejected) => vec![notice(
            &rejected.metadata,
            &rejected.order_id,
            Notice::Rejection {
                code: rejected.code.clone(),
                reason: rejected.reason.clone(),
            },
        )],
        OrdersEventRecord::PaymentRejected(rejected) => vec![notice(
            &rejected.metadata,
            &rejected.order_id,
            Notice::Rejection {
                code: "payment_rejected".to_owned(),
                reason: rejected.reason.clone(),
            },
        )],
        OrdersEventRecord::Placed(_)
        | OrdersEventRecord::Cancelled(_)
        | OrdersEventRecord::Shipped(_)
        | OrdersEventRecord::CommandRejected(_) => Vec::new(),
    }
}

/// The notices of one admitted payments event. Pure.
pub fn refund_notices(event: &PaymentsEventRecord) -> Vec<OrderNotice> {
    match event {
        PaymentsEventRecord::RefundIssued(refund) => vec![OrderNotice {
            cause: refund.metadata.clone(),
            order_id: refund.order_id.clone(),
            notice: Notice::Refund {
                refund_id: refund.refund_id.clone(),
                amount: refund.amount,
                currency: refund.currency.clone(),
            },
        }],
        _ => Vec::new(),
    }
}

/// An order as the notices need it (from its `OrderPlaced`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCustomer {
    pub customer_id: String,
    pub currency: String,
}

/// A user's addresses, opened.
#[derive(Clone, PartialEq, Eq)]
pub struct Contact {
    pub email: String,
    pub phone: Option<String>,
}

impl std::fmt::Debug for Contact {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Personal data: never in a log line.
        formatter
            .debug_struct("Contact")
            .field("has_phone", &self.phone.is_some())
            .finish_non_exhaustive()
    }
}

/// What the lookup of the order's customer found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContactLookup {
    /// No `UserRegistered` folded for the customer.
    Missing,
    /// The user erased their personal data (the contact row says so, or
    /// the data key is destroyed).
    Erased,
    /// The sealed email does not open (a wrong key-encryption key, or a
    /// tampered value).
    Unreadable,
    Found(Contact),
}

/// Why a notice was not sent. Recorded in `notify_order_notices`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// No `OrderPlaced` for the order within the grace period.
    OrderUnknown,
    /// No registered user for the order's customer within the grace period.
    RecipientUnknown,
    RecipientErased,
    RecipientUnreadable,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::OrderUnknown => "order_unknown",
            SkipReason::RecipientUnknown => "recipient_unknown",
            SkipReason::RecipientErased => "recipient_erased",
            SkipReason::RecipientUnreadable => "recipient_unreadable",
        }
    }
}

/// What to do with a notice, given what the read models hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    Send(Vec<NotifyCommandRecord>),
    Skip(SkipReason),
    /// A read model has not folded what the notice needs yet: try again.
    Wait(&'static str),
}

/// How long a missing order or user may be the read models' lag rather
/// than a fact, and what time it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patience {
    pub now_ms: i64,
    pub grace_ms: i64,
}

impl Patience {
    fn exhausted(self, cause: &EventMetadata) -> bool {
        self.now_ms.saturating_sub(cause.occurred_at) >= self.grace_ms
    }
}

/// The notification id a notice derives for `channel`: one per event and
/// channel, so a notice performed twice queues the same notification.
pub fn notification_id_for(cause: &EventMetadata, channel: Channel) -> String {
    Uuid::new_v5(
        &NOTICES_NAMESPACE,
        format!("{}/{}", cause.event_id, channel.as_str()).as_bytes(),
    )
    .to_string()
}

/// Decides a notice. Pure: the read models' answers and the time are inputs.
pub fn resolve(
    notice: &OrderNotice,
    order: Option<&OrderCustomer>,
    contact: Option<&ContactLookup>,
    patience: Patience,
) -> Resolution {
    let Some(order) = order else {
        return match patience.exhausted(&notice.cause) {
            true => Resolution::Skip(SkipReason::OrderUnknown),
            false => Resolution::Wait("the order's placement is not folded yet"),
        };
    };
    // The saga already judged this customer unknown: nothing to wait for.
    let judged_unknown =
        matches!(&notice.notice, Notice::Rejection { code, .. } if code == CUSTOMER_UNKNOWN);
    match contact {
        None | Some(ContactLookup::Missing) if judged_unknown => {
            Resolution::Skip(SkipReason::RecipientUnknown)
        }
        None | Some(ContactLookup::Missing) => match patience.exhausted(&notice.cause) {
            true => Resolution::Skip(SkipReason::RecipientUnknown),
            false => Resolution::Wait("the order's customer is not folded yet"),
        },
        Some(ContactLookup::Erased) => Resolution::Skip(SkipReason::RecipientErased),
        Some(ContactLookup::Unreadable) => Resolution::Skip(SkipReason::RecipientUnreadable),
        Some(ContactLookup::Found(contact)) => {
            Resolution::Send(notice_commands(notice, order, contact))
        }
    }
}

fn parameters(notice: &OrderNotice, order: &OrderCustomer) -> Vec<wire::TemplateParameter> {
    let mut parameters = BTreeMap::from([("order_id", notice.order_id.clone())]);
    match &notice.notice {
        Notice::Confirmation { amount, .. } => {
            parameters.insert("amount", amount.to_string());
            parameters.insert("currency", order.currency.clone());
        }
        Notice::Rejection { code, reason } => {
            parameters.insert("code", code.clone());
            parameters.insert("reason", reason.clone());
        }
        Notice::Refund {
            amount, currency, ..
        } => {
            parameters.insert("amount", amount.to_string());
            parameters.insert("currency", currency.clone());
        }
    }
    parameters
        .into_iter()
        .map(|(name, value)| wire::TemplateParameter {
            name: name.to_owned(),
            value,
        })
        .collect()
}

/// The `SendNotification`s of a notice: an email, and an SMS when the
/// user has a phone. Ids derive from the event. Pure.
pub fn notice_commands(
    notice: &OrderNotice,
    order: &OrderCustomer,
    contact: &Contact,
) -> Vec<NotifyCommandRecord> {
    let recipients = std::iter::once((Channel::Email, contact.email.clone()))
        .chain(contact.phone.clone().map(|phone| (Channel::Sms, phone)));
    recipients
        .map(|(channel, recipient)| {
            NotifyCommandRecord::Send(wire::SendNotification {
                metadata: follow_up_metadata(
                    &notice.cause,
                    &format!("notice/{}", channel.as_str()),
                    ISSUER,
                ),
                aggregate_id: notification_id_for(&notice.cause, channel),
                channel: channel.as_str().to_owned(),
                recipient,
                template: notice.notice.template().to_owned(),
                parameters: parameters(notice, order),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
