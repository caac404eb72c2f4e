//! Given/when/then scenarios for every transition and every rejection of
//! the notification decider.

use foldline_eventsourcing::harness::TestHarness;
use foldline_eventsourcing::{Decider, Rejection, RejectionKind, Timestamp};
use uuid::Uuid;

use super::*;

const QUEUED_AT: Timestamp = Timestamp(1_000);
const LATER: Timestamp = Timestamp(2_000);
const RETRY_AT: Timestamp = Timestamp(3_000);

type Harness = TestHarness<Notifications>;

fn id() -> NotificationId {
    NotificationId::from_uuid(Uuid::from_u128(7))
}

fn provider(name: &str) -> ProviderName {
    ProviderName::parse(name).unwrap()
}

fn reason(text: &str) -> Reason {
    Reason::parse(text).unwrap()
}

fn attempt(number: i64) -> Attempt {
    Attempt::new(number).unwrap()
}

fn send() -> NotificationCommand {
    NotificationCommand::Send {
        notification_id: id(),
        channel: Channel::Sms,
        recipient: Recipient::parse(Channel::Sms, "+447700900123").unwrap(),
        template: Template::parse("order.confirmed").unwrap(),
        parameters: Parameters::parse([("order", "42")]).unwrap(),
    }
}

fn queued() -> NotificationEvent {
    NotificationEvent::Queued {
        notification_id: id(),
        channel: Channel::Sms,
        recipient: Recipient::parse(Channel::Sms, "+447700900123").unwrap(),
        template: Template::parse("order.confirmed").unwrap(),
        parameters: Parameters::parse([("order", "42")]).unwrap(),
        at: QUEUED_AT,
    }
}

fn delivery(number: i64, name: &str) -> Delivery {
    Delivery {
        attempt: attempt(number),
        provider: provider(name),
        latency_ms: 12,
        provider_call_us: 3_400,
        provider_message_id: Some("m-1".to_owned()),
    }
}

fn record_sent(number: i64, name: &str) -> NotificationCommand {
    NotificationCommand::RecordSent {
        notification_id: id(),
        delivery: delivery(number, name),
    }
}

fn sent(number: i64, name: &str) -> NotificationEvent {
    NotificationEvent::Sent {
        notification_id: id(),
        delivery: delivery(number, name),
        at: LATER,
    }
}

fn record_attempt_failed(number: i64) -> NotificationCommand {
    NotificationCommand::RecordAttemptFailed {
        notification_id: id(),
        attempt: attempt(number),
        reason: reason("every provider failed"),
        retry_at: RETRY_AT,
    }
}

fn attempt_failed(number: i64) -> NotificationEvent {
    NotificationEvent::AttemptFailed {
        notification_id: id(),
        attempt: attempt(number),
        reason: reason("every provider failed"),
        retry_at: RETRY_AT,
        at: LATER,
    }
}

fn record_failed(number: i64) -> NotificationCommand {
    NotificationCommand::RecordFailed {
        notification_id: id(),
        attempt: attempt(number),
        reason: reason("retries exhausted"),
    }
}

fn failed(number: i64) -> NotificationEvent {
    NotificationEvent::Failed {
        notification_id: id(),
        attempt: attempt(number),
        reason: reason("retries exhausted"),
        at: LATER,
    }
}

fn record_failover(from: &str, to: &str) -> NotificationCommand {
    NotificationCommand::RecordFailover {
        notification_id: id(),
        attempt: attempt(1),
        from: provider(from),
        to: provider(to),
        reason: reason("breaker open"),
    }
}

fn notification(state: &NotificationState) -> &Notification {
    state.notification().expect("a notification")
}

#[test]
fn sending_queues_a_new_notification() {
    let state = Harness::given([]).at(QUEUED_AT).when(send()).then(queued());
    let queued = notification(&state);
    assert_eq!(queued.status, NotificationStatus::Queued);
    assert_eq!(queued.failed_attempts, 0);
    assert_eq!(queued.queued_at, QUEUED_AT);
}

#[test]
fn sending_an_existing_notification_is_a_conflict() {
    Harness::given([queued()])
        .at(LATER)
        .when(send())
        .then_rejected(NotifyRejection::NotificationExists(id()));
}

#[test]
fn a_failover_is_recorded_in_the_history() {
    let state = Harness::given([queued()])
        .at(LATER)
        .when(record_failover("primary", "backup"))
        .then(NotificationEvent::ProviderFailedOver {
            notification_id: id(),
            attempt: attempt(1),
            from: provider("primary"),
            to: provider("backup"),
            reason: reason("breaker open"),
            at: LATER,
        });
    let notification = notification(&state);
    assert_eq!(notification.status, NotificationStatus::Queued);
    assert_eq!(notification.failovers.len(), 1);
}

#[test]
fn a_failover_to_the_same_provider_is_invalid() {
    Harness::given([queued()])
        .at(LATER)
        .when(record_failover("primary", "primary"))
        .then_rejected(NotifyRejection::SameProvider(provider("primary")));
}

#[test]
fn a_provider_accepting_sends_the_notification() {
    let state = Harness::given([queued()])
        .at(LATER)
        .when(record_sent(1, "primary"))
        .then(sent(1, "primary"));
    let notification = notification(&state);
    assert_eq!(notification.status, NotificationStatus::Sent);
    assert_eq!(notification.delivery, Some(delivery(1, "primary")));
}

#[test]
fn a_failed_attempt_schedules_the_next() {
    let state = Harness::given([queued()])
        .at(LATER)
        .when(record_attempt_failed(1))
        .then(attempt_failed(1));
    let notification = notification(&state);
    assert_eq!(notification.status, NotificationStatus::Retrying);
    assert_eq!(notification.failed_attempts, 1);
    assert_eq!(notification.retry_at, Some(RETRY_AT));
}

#[test]
fn a_retried_notification_can_still_be_sent() {
    let state = Harness::given([queued(), attempt_failed(1)])
        .at(LATER)
        .when(record_sent(2, "backup"))
        .then(sent(2, "backup"));
    assert_eq!(notification(&state).retry_at, None);
}

#[test]
fn attempts_fail_in_order() {
    Harness::given([queued(), attempt_failed(1)])
        .at(LATER)
        .when(record_attempt_failed(1))
        .then_rejected(NotifyRejection::StaleAttempt {
            attempt: 1,
            expected: 2,
        });
    Harness::given([queued()])
        .at(LATER)
        .when(record_attempt_failed(3))
        .then_rejected(NotifyRejection::StaleAttempt {
            attempt: 3,
            expected: 1,
        });
}

#[test]
fn the_last_attempt_failing_fails_the_notification() {
    let state = Harness::given([queued(), attempt_failed(1)])
        .at(LATER)
        .when(record_failed(2))
        .then(failed(2));
    assert_eq!(notification(&state).status, NotificationStatus::Failed);
}

#[test]
fn a_failure_of_an_attempt_already_failed_is_stale() {
    Harness::given([queued(), attempt_failed(1)])
        .at(LATER)
        .when(record_failed(1))
        .then_rejected(NotifyRejection::StaleAttempt {
            attempt: 1,
            expected: 2,
        });
}

#[test]
fn a_settled_notification_takes_no_further_report() {
    for history in [
        vec![queued(), sent(1, "primary")],
        vec![queued(), failed(1)],
    ] {
        let status = notification(&Notifications::fold(&history)).status.as_str();
        for command in [
            record_sent(2, "backup"),
            record_attempt_failed(2),
            record_failed(2),
            record_failover("primary", "backup"),
        ] {
            Harness::given(history.clone())
                .at(LATER)
                .when(command)
                .then_rejected(NotifyRejection::Settled { id: id(), status });
        }
    }
}

#[test]
fn reports_on_an_unknown_notification_are_not_found() {
    for command in [
        record_sent(1, "primary"),
        record_attempt_failed(1),
        record_failed(1),
        record_failover("primary", "backup"),
    ] {
        Harness::given([])
            .at(LATER)
            .when(command)
            .then_rejected(NotifyRejection::NotFound(id()));
    }
}

#[test]
fn rejections_have_stable_codes_and_kinds() {
    let cases = [
        (
            NotifyRejection::NotificationExists(id()),
            "notification_exists",
            RejectionKind::Conflict,
        ),
        (
            NotifyRejection::NotFound(id()),
            "notification_not_found",
            RejectionKind::NotFound,
        ),
        (
            NotifyRejection::Settled {
                id: id(),
                status: "sent",
            },
            "notification_settled",
            RejectionKind::Conflict,
        ),
        (
            NotifyRejection::StaleAttempt {
                attempt: 1,
                expected: 2,
            },
            "stale_attempt",
            RejectionKind::Conflict,
        ),
        (
            NotifyRejection::SameProvider(provider("a")),
            "same_provider",
            RejectionKind::Invalid,
        ),
    ];
    for (rejection, code, kind) in cases {
        assert_eq!((rejection.code(), rejection.kind()), (code, kind));
    }
}
