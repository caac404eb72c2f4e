//! The `.avsc` files of `schemas/avro/`, embedded at build time.
//!
//! Subjects follow TopicRecordNameStrategy: `<topic>-<record full name>`, so
//! one topic holds several record types and each evolves on its own.

/// One record schema as the data team sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordSchema {
    /// Avro full name, e.g. `foldline.orders.OrderPlaced`.
    pub full_name: &'static str,
    /// The `.avsc` text, registered verbatim.
    pub text: &'static str,
}

macro_rules! avsc {
    ($full_name:literal, $path:literal) => {
        RecordSchema {
            full_name: $full_name,
            text: include_str!(concat!("../../../../schemas/avro/", $path)),
        }
    };
}

/// Every record schema Foldline writes.
pub const ALL: &[RecordSchema] = &[
    avsc!("foldline.CommandOutcome", "envelope/CommandOutcome.avsc"),
    avsc!("foldline.CommandRejected", "envelope/CommandRejected.avsc"),
    avsc!("foldline.orders.PlaceOrder", "orders/PlaceOrder.avsc"),
    avsc!("foldline.orders.CancelOrder", "orders/CancelOrder.avsc"),
    avsc!("foldline.orders.MarkOrderPaid", "orders/MarkOrderPaid.avsc"),
    avsc!(
        "foldline.orders.MarkOrderPaymentFailed",
        "orders/MarkOrderPaymentFailed.avsc"
    ),
    avsc!("foldline.orders.ShipOrder", "orders/ShipOrder.avsc"),
    avsc!("foldline.orders.OrderPlaced", "orders/OrderPlaced.avsc"),
    avsc!(
        "foldline.orders.OrderCancelled",
        "orders/OrderCancelled.avsc"
    ),
    avsc!(
        "foldline.orders.OrderConfirmed",
        "orders/OrderConfirmed.avsc"
    ),
    avsc!(
        "foldline.orders.OrderPaymentRejected",
        "orders/OrderPaymentRejected.avsc"
    ),
    avsc!("foldline.orders.OrderShipped", "orders/OrderShipped.avsc"),
    avsc!("foldline.orders.RejectOrder", "orders/RejectOrder.avsc"),
    avsc!("foldline.orders.OrderRejected", "orders/OrderRejected.avsc"),
    avsc!("foldline.users.ClaimEmail", "users/ClaimEmail.avsc"),
    avsc!("foldline.users.ReleaseEmail", "users/ReleaseEmail.avsc"),
    avsc!("foldline.users.RegisterUser", "users/RegisterUser.avsc"),
    avsc!("foldline.users.ChangeProfile", "users/ChangeProfile.avsc"),
    avsc!("foldline.users.ChangeEmail", "users/ChangeEmail.avsc"),
    avsc!("foldline.users.DeactivateUser", "users/DeactivateUser.avsc"),
    avsc!(
        "foldline.users.ErasePersonalData",
        "users/ErasePersonalData.avsc"
    ),
    avsc!("foldline.users.EmailClaimed", "users/EmailClaimed.avsc"),
    avsc!("foldline.users.EmailReleased", "users/EmailReleased.avsc"),
    avsc!("foldline.users.UserRegistered", "users/UserRegistered.avsc"),
    avsc!(
        "foldline.users.UserRegistrationRefused",
        "users/UserRegistrationRefused.avsc"
    ),
    avsc!(
        "foldline.users.UserProfileChanged",
        "users/UserProfileChanged.avsc"
    ),
    avsc!(
        "foldline.users.UserEmailChanged",
        "users/UserEmailChanged.avsc"
    ),
    avsc!(
        "foldline.users.UserEmailChangeRefused",
        "users/UserEmailChangeRefused.avsc"
    ),
    avsc!(
        "foldline.users.UserDeactivated",
        "users/UserDeactivated.avsc"
    ),
    avsc!(
        "foldline.users.PersonalDataErased",
        "users/PersonalDataErased.avsc"
    ),
    avsc!(
        "foldline.notify.SendNotification",
        "notify/SendNotification.avsc"
    ),
    avsc!(
        "foldline.notify.RecordProviderFailover",
        "notify/RecordProviderFailover.avsc"
    ),
    avsc!(
        "foldline.notify.RecordNotificationSent",
        "notify/RecordNotificationSent.avsc"
    ),
    avsc!(
        "foldline.notify.RecordAttemptFailed",
        "notify/RecordAttemptFailed.avsc"
    ),
    avsc!(
        "foldline.notify.RecordNotificationFailed",
        "notify/RecordNotificationFailed.avsc"
    ),
    avsc!(
        "foldline.notify.NotificationQueued",
        "notify/NotificationQueued.avsc"
    ),
    avsc!(
        "foldline.notify.ProviderFailedOver",
        "notify/ProviderFailedOver.avsc"
    ),
    avsc!(
        "foldline.notify.NotificationSent",
        "notify/NotificationSent.avsc"
    ),
    avsc!(
        "foldline.notify.NotificationAttemptFailed",
        "notify/NotificationAttemptFailed.avsc"
    ),
    avsc!(
        "foldline.notify.NotificationFailed",
        "notify/NotificationFailed.avsc"
    ),
    avsc!(
        "foldline.notify.NotificationRetry",
        "notify/NotificationRetry.avsc"
    ),
    avsc!(
        "foldline.payments.AuthorizePayment",
        "payments/AuthorizePayment.avsc"
    ),
    avsc!(
        "foldline.payments.RecordAuthorization",
        "payments/RecordAuthorization.avsc"
    ),
    avsc!(
        "foldline.payments.RecordDecline",
        "payments/RecordDecline.avsc"
    ),
    avsc!(
        "foldline.payments.CapturePayment",
        "payments/CapturePayment.avsc"
    ),
    avsc!(
        "foldline.payments.RecordCapture",
        "payments/RecordCapture.avsc"
    ),
    avsc!(
        "foldline.payments.RecordCaptureFailure",
        "payments/RecordCaptureFailure.avsc"
    ),
    avsc!(
        "foldline.payments.RefundPayment",
        "payments/RefundPayment.avsc"
    ),
    avsc!(
        "foldline.payments.RecordRefund",
        "payments/RecordRefund.avsc"
    ),
    avsc!(
        "foldline.payments.RecordRefundFailure",
        "payments/RecordRefundFailure.avsc"
    ),
    avsc!(
        "foldline.payments.VoidAuthorization",
        "payments/VoidAuthorization.avsc"
    ),
    avsc!("foldline.payments.RecordVoid", "payments/RecordVoid.avsc"),
    avsc!(
        "foldline.payments.RecordVoidFailure",
        "payments/RecordVoidFailure.avsc"
    ),
    avsc!(
        "foldline.payments.PaymentRequested",
        "payments/PaymentRequested.avsc"
    ),
    avsc!(
        "foldline.payments.PaymentAuthorized",
        "payments/PaymentAuthorized.avsc"
    ),
    avsc!(
        "foldline.payments.PaymentDeclined",
        "payments/PaymentDeclined.avsc"
    ),
    avsc!(
        "foldline.payments.CaptureRequested",
        "payments/CaptureRequested.avsc"
    ),
    avsc!(
        "foldline.payments.PaymentCaptured",
        "payments/PaymentCaptured.avsc"
    ),
    avsc!(
        "foldline.payments.CaptureFailed",
        "payments/CaptureFailed.avsc"
    ),
    avsc!(
        "foldline.payments.RefundRequested",
        "payments/RefundRequested.avsc"
    ),
    avsc!(
        "foldline.payments.RefundIssued",
        "payments/RefundIssued.avsc"
    ),
    avsc!(
        "foldline.payments.RefundFailed",
        "payments/RefundFailed.avsc"
    ),
    avsc!(
        "foldline.payments.VoidRequested",
        "payments/VoidRequested.avsc"
    ),
    avsc!(
        "foldline.payments.AuthorizationVoided",
        "payments/AuthorizationVoided.avsc"
    ),
    avsc!("foldline.payments.VoidFailed", "payments/VoidFailed.avsc"),
];

/// Envelope parts inlined in every record; published for reference.
pub const ENVELOPE: &[RecordSchema] = &[
    avsc!("foldline.CommandMetadata", "envelope/CommandMetadata.avsc"),
    avsc!("foldline.EventMetadata", "envelope/EventMetadata.avsc"),
];

/// The schema of a record by full name.
pub fn by_full_name(full_name: &str) -> Option<&'static RecordSchema> {
    ALL.iter().find(|schema| schema.full_name == full_name)
}

/// The registry subject of a record on a topic (TopicRecordNameStrategy).
pub fn subject(topic: &str, full_name: &str) -> String {
    format!("{topic}-{full_name}")
}

#[cfg(test)]
mod tests {
    use apache_avro::{AvroSchema, Schema};
    use serde_json::Value;

    use super::*;
    use crate::envelope::{CommandMetadata, CommandOutcome, CommandRejected, EventMetadata};
    use crate::orders::*;
    use crate::record::{CommandRecord, EventRecord};

    /// Docs are for readers, not for compatibility: compare everything else.
    fn without_docs(value: Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .filter(|(key, _)| key != "doc")
                    .map(|(key, value)| (key, without_docs(value)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.into_iter().map(without_docs).collect()),
            other => other,
        }
    }

    fn assert_bound<T: AvroSchema>(full_name: &str) {
        let file = by_full_name(full_name)
            .or_else(|| ENVELOPE.iter().find(|schema| schema.full_name == full_name))
            .unwrap_or_else(|| panic!("no .avsc for {full_name}"));
        let parsed = Schema::parse_str(file.text).expect("the .avsc parses");
        let derived = T::get_schema();
        assert_eq!(
            without_docs(serde_json::to_value(&derived).unwrap()),
            without_docs(serde_json::to_value(&parsed).unwrap()),
            "the Rust type of {full_name} drifted from its .avsc"
        );
        assert_eq!(derived.canonical_form(), parsed.canonical_form());
    }

    #[test]
    fn every_wire_type_matches_its_avsc_file() {
        assert_bound::<CommandMetadata>("foldline.CommandMetadata");
        assert_bound::<EventMetadata>("foldline.EventMetadata");
        assert_bound::<CommandOutcome>("foldline.CommandOutcome");
        assert_bound::<PlaceOrder>("foldline.orders.PlaceOrder");
        assert_bound::<CancelOrder>("foldline.orders.CancelOrder");
        assert_bound::<MarkOrderPaid>("foldline.orders.MarkOrderPaid");
        assert_bound::<MarkOrderPaymentFailed>("foldline.orders.MarkOrderPaymentFailed");
        assert_bound::<ShipOrder>("foldline.orders.ShipOrder");
        assert_bound::<OrderPlaced>("foldline.orders.OrderPlaced");
        assert_bound::<OrderCancelled>("foldline.orders.OrderCancelled");
        assert_bound::<OrderConfirmed>("foldline.orders.OrderConfirmed");
        assert_bound::<OrderPaymentRejected>("foldline.orders.OrderPaymentRejected");
        assert_bound::<OrderShipped>("foldline.orders.OrderShipped");
        assert_bound::<crate::orders::RejectOrder>("foldline.orders.RejectOrder");
        assert_bound::<crate::orders::OrderRejected>("foldline.orders.OrderRejected");
        assert_bound::<CommandRejected>("foldline.CommandRejected");
        assert_bound::<crate::users::ClaimEmail>("foldline.users.ClaimEmail");
        assert_bound::<crate::users::ReleaseEmail>("foldline.users.ReleaseEmail");
        assert_bound::<crate::users::RegisterUser>("foldline.users.RegisterUser");
        assert_bound::<crate::users::ChangeProfile>("foldline.users.ChangeProfile");
        assert_bound::<crate::users::ChangeEmail>("foldline.users.ChangeEmail");
        assert_bound::<crate::users::DeactivateUser>("foldline.users.DeactivateUser");
        assert_bound::<crate::users::ErasePersonalData>("foldline.users.ErasePersonalData");
        assert_bound::<crate::users::EmailClaimed>("foldline.users.EmailClaimed");
        assert_bound::<crate::users::EmailReleased>("foldline.users.EmailReleased");
        assert_bound::<crate::users::UserRegistered>("foldline.users.UserRegistered");
        assert_bound::<crate::users::UserRegistrationRefused>(
            "foldline.users.UserRegistrationRefused",
        );
        assert_bound::<crate::users::UserProfileChanged>("foldline.users.UserProfileChanged");
        assert_bound::<crate::users::UserEmailChanged>("foldline.users.UserEmailChanged");
        assert_bound::<crate::users::UserEmailChangeRefused>(
            "foldline.users.UserEmailChangeRefused",
        );
        assert_bound::<crate::users::UserDeactivated>("foldline.users.UserDeactivated");
        assert_bound::<crate::users::PersonalDataErased>("foldline.users.PersonalDataErased");
        assert_bound::<crate::payments::AuthorizePayment>("foldline.payments.AuthorizePayment");
        assert_bound::<crate::payments::RecordAuthorization>(
            "foldline.payments.RecordAuthorization",
        );
        assert_bound::<crate::payments::RecordDecline>("foldline.payments.RecordDecline");
        assert_bound::<crate::payments::CapturePayment>("foldline.payments.CapturePayment");
        assert_bound::<crate::payments::RecordCapture>("foldline.payments.RecordCapture");
        assert_bound::<crate::payments::RecordCaptureFailure>(
            "foldline.payments.RecordCaptureFailure",
        );
        assert_bound::<crate::payments::RefundPayment>("foldline.payments.RefundPayment");
        assert_bound::<crate::payments::RecordRefund>("foldline.payments.RecordRefund");
        assert_bound::<crate::payments::RecordRefundFailure>(
            "foldline.payments.RecordRefundFailure",
        );
        assert_bound::<crate::payments::VoidAuthorization>("foldline.payments.VoidAuthorization");
        assert_bound::<crate::payments::RecordVoid>("foldline.payments.RecordVoid");
        assert_bound::<crate::payments::RecordVoidFailure>("foldline.payments.RecordVoidFailure");
        assert_bound::<crate::payments::PaymentRequested>("foldline.payments.PaymentRequested");
        assert_bound::<crate::payments::PaymentAuthorized>("foldline.payments.PaymentAuthorized");
        assert_bound::<crate::payments::PaymentDeclined>("foldline.payments.PaymentDeclined");
        assert_bound::<crate::payments::CaptureRequested>("foldline.payments.CaptureRequested");
        assert_bound::<crate::payments::PaymentCaptured>("foldline.payments.PaymentCaptured");
        assert_bound::<crate::payments::CaptureFailed>("foldline.payments.CaptureFailed");
        assert_bound::<crate::payments::RefundRequested>("foldline.payments.RefundRequested");
        assert_bound::<crate::payments::RefundIssued>("foldline.payments.RefundIssued");
        assert_bound::<crate::payments::RefundFailed>("foldline.payments.RefundFailed");
        assert_bound::<crate::payments::VoidRequested>("foldline.payments.VoidRequested");
        assert_bound::<crate::payments::AuthorizationVoided>(
            "foldline.payments.AuthorizationVoided",
        );
        assert_bound::<crate::payments::VoidFailed>("foldline.payments.VoidFailed");
        assert_bound::<crate::notify::SendNotification>("foldline.notify.SendNotification");
        assert_bound::<crate::notify::RecordProviderFailover>(
            "foldline.notify.RecordProviderFailover",
        );
        assert_bound::<crate::notify::RecordNotificationSent>(
            "foldline.notify.RecordNotificationSent",
        );
        assert_bound::<crate::notify::RecordAttemptFailed>("foldline.notify.RecordAttemptFailed");
        assert_bound::<crate::notify::RecordNotificationFailed>(
            "foldline.notify.RecordNotificationFailed",
        );
        assert_bound::<crate::notify::NotificationQueued>("foldline.notify.NotificationQueued");
        assert_bound::<crate::notify::ProviderFailedOver>("foldline.notify.ProviderFailedOver");
        assert_bound::<crate::notify::NotificationSent>("foldline.notify.NotificationSent");
        assert_bound::<crate::notify::NotificationAttemptFailed>(
            "foldline.notify.NotificationAttemptFailed",
        );
        assert_bound::<crate::notify::NotificationFailed>("foldline.notify.NotificationFailed");
        assert_bound::<crate::notify::NotificationRetry>("foldline.notify.NotificationRetry");
    }

    #[test]
    fn every_union_names_only_declared_records() {
        for name in OrdersCommandRecord::RECORD_NAMES
            .iter()
            .chain(OrdersEventRecord::RECORD_NAMES)
            .chain(crate::users::UsersCommandRecord::RECORD_NAMES)
            .chain(crate::users::UsersEventRecord::RECORD_NAMES)
            .chain(crate::payments::PaymentsCommandRecord::RECORD_NAMES)
            .chain(crate::payments::PaymentsEventRecord::RECORD_NAMES)
            .chain(crate::notify::NotifyCommandRecord::RECORD_NAMES)
            .chain(crate::notify::NotifyEventRecord::RECORD_NAMES)
        {
            assert!(by_full_name(name).is_some(), "{name} has no .avsc");
        }
    }

    #[test]
    fn every_file_is_named_after_its_record() {
        for schema in ALL.iter().chain(ENVELOPE) {
            let parsed = Schema::parse_str(schema.text).expect("the .avsc parses");
            let name = match &parsed {
                Schema::Record(record) => record.name.fullname(None),
                other => panic!("{} is not a record: {other:?}", schema.full_name),
            };
            assert_eq!(name, schema.full_name);
        }
    }

    #[test]
    fn subjects_use_topic_record_name_strategy() {
        assert_eq!(
            subject("orders.events", "foldline.orders.OrderPlaced"),
            "orders.events-foldline.orders.OrderPlaced"
        );
    }
}
