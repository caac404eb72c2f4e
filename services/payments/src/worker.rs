//! The effect step: the provider worker. Calling the provider is I/O, so
//! it happens here, outside `decide`, as a follow-up of the platform's
//! outbox (`foldline_platform::outbox`):
//!
//! | admitted event | provider call | idempotency key | answer recorded as |
//! |---|---|---|---|
//! | `PaymentRequested` | authorize | `<payment>:authorize` | `RecordAuthorization` / `RecordDecline` |
//! | `CaptureRequested` | capture | `<payment>:capture:<version>` | `RecordCapture` / `RecordCaptureFailure` |
//! | `RefundRequested` | refund | `<payment>:refund:<refund>` | `RecordRefund` / `RecordRefundFailure` |
//! | `VoidRequested` | void | `<payment>:void:<version>` | `RecordVoid` / `RecordVoidFailure` |
//!
//! The answer goes back to `payments.commands` with a command id derived
//! from the requesting event's id, so performing a call again (a crash
//! before the relay's cursor moved) asks the provider again with the same
//! key (the provider answers from its idempotency store, executing nothing)
//! and records the same command (the processor settles it once).
//!
//! An authorization with no answer by its deadline is declined by us
//! (`RecordDecline`, `deadline_exceeded`) under a command id of its own,
//! and the worker then keeps asking with the same key until the provider
//! answers: an authorization it finds (made before, or only now) is
//! recorded under the answer's id, and the decider turns it into a void of
//! that hold. Why this never charges twice, why no hold outlives a payment
//! we declined, and how the deadline survives restarts, is in `design.md`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backon::{BackoffBuilder, ExponentialBuilder};
use foldline_contracts::envelope::{CommandMetadata, EventMetadata};
use foldline_contracts::payments::{self as wire, PaymentsCommandRecord};
use foldline_platform::codec::Codec;
use foldline_platform::gated::Admitted;
use foldline_platform::outbox::{
    follow_up_metadata, send_command, FollowUpError, Performer, Reactor,
};
use foldline_platform::payments_config::ProviderClientConfig;
use rdkafka::producer::FutureProducer;
use serde::{Deserialize, Serialize};

use crate::domain::{DeclineCode, PaymentEvent, ProviderReference, MAX_TEXT_CHARS};
use crate::provider::{
    AuthorizeRequest, CaptureRequest, PaymentProvider, ProviderAnswer, ProviderError, RefundRequest,
};
use crate::wire::PaymentsWire;

/// Who the worker's commands are issued by.
pub const WORKER: &str = "payments-provider-worker";
/// Names the command recording the provider's answer to a request.
const ANSWER_STEP: &str = "provider-answer";
/// Names the decline we record on our own when the deadline passes: not
/// the provider's answer, so the answer that may still come is recorded
/// too rather than settled as a copy of the decline.
const DEADLINE_STEP: &str = "authorization-deadline";

/// One provider call, as kept in the outbox: everything needed to make it
/// and to record its answer, the cause's metadata included.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderCall {
    pub cause: EventMetadata,
    pub payment_id: String,
    pub operation: Operation,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    Authorize {
        amount: i64,
        currency: String,
        card_token: String,
    },
    Capture {
        authorization: String,
        amount: i64,
    },
    Refund {
        refund_id: String,
        capture: String,
        amount: i64,
    },
    Void {
        authorization: String,
    },
}

impl ProviderCall {
    /// The provider's idempotency key: one per operation of a payment. A
    /// capture or void is keyed by the version of its request, so asking
    /// again after a failed one is a new request, while performing one
    /// request again is not.
    pub fn idempotency_key(&self) -> String {
        let payment = &self.payment_id;
        let version = self.cause.aggregate_version;
        match &self.operation {
            Operation::Authorize { .. } => format!("{payment}:authorize"),
            Operation::Capture { .. } => format!("{payment}:capture:{version}"),
            Operation::Refund { refund_id, .. } => format!("{payment}:refund:{refund_id}"),
            Operation::Void { .. } => format!("{payment}:void:{version}"),
        }
    }
}

/// The pure reaction table of the effect step.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProviderCalls;

impl Reactor for ProviderCalls {
    type Wire = PaymentsWire;
    type FollowUp = ProviderCall;
    const NAME: &'static str = "provider_calls";

    fn react(&self, admitted: &Admitted<'_, PaymentsWire>) -> Vec<ProviderCall> {
        provider_call(admitted.event, admitted.metadata)
            .into_iter()
            .collect()
    }
}

pub fn provider_call(event: &PaymentEvent, cause: &EventMetadata) -> Option<ProviderCall> {
    let (payment_id, operation) = match event {
        PaymentEvent::Requested(terms) => (
            terms.payment_id,
            Operation::Authorize {
                amount: terms.amount.minor_units(),
                currency: terms.currency.as_str().to_owned(),
                card_token: terms.card_token.as_str().to_owned(),
            },
        ),
        PaymentEvent::CaptureRequested {
            payment_id,
            amount,
            authorization,
            ..
        } => (
            *payment_id,
            Operation::Capture {
                authorization: authorization.as_str().to_owned(),
                amount: amount.minor_units(),
            },
        ),
        PaymentEvent::RefundRequested {
            payment_id,
            refund_id,
            amount,
            capture,
            ..
        } => (
            *payment_id,
            Operation::Refund {
                refund_id: refund_id.to_string(),
                capture: capture.as_str().to_owned(),
                amount: amount.minor_units(),
            },
        ),
        PaymentEvent::VoidRequested {
            payment_id,
            authorization,
            ..
        } => (
            *payment_id,
            Operation::Void {
                authorization: authorization.as_str().to_owned(),
            },
        ),
        _ => return None,
    };
    Some(ProviderCall {
        cause: cause.clone(),
        payment_id: payment_id.to_string(),
        operation,
    })
}

/// How one call ended, as far as the payment is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Approved {
        reference: String,
    },
    Refused {
        code: String,
        reason: String,
        reference: Option<String>,
    },
    /// Authorizations only: no answer before the deadline.
    DeadlineExceeded {
        deadline_ms: u64,
    },
}

/// A reason fit for a `Note`: no control characters, bounded.
fn reason(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_TEXT_CHARS)
        .collect();
    cleaned.trim().to_owned()
}

fn decline_code(provider_code: &str) -> DeclineCode {
    match provider_code {
        "card_declined" => DeclineCode::CardDeclined,
        "insufficient_funds" => DeclineCode::InsufficientFunds,
        _ => DeclineCode::ProviderRejected,
    }
}

/// The command recording `outcome` of `call`. Pure: the same call and
/// outcome always give the same command (id included).
pub fn answer_command(call: &ProviderCall, outcome: Outcome) -> PaymentsCommandRecord {
    let step = match outcome {
        Outcome::DeadlineExceeded { .. } => DEADLINE_STEP,
        _ => ANSWER_STEP,
    };
    let metadata: CommandMetadata = follow_up_metadata(&call.cause, step, WORKER);
    let payment_id = call.payment_id.clone();
    // A reference the domain would not accept cannot be recorded as done.
    let outcome = match outcome {
        Outcome::Approved { reference } if ProviderReference::parse(&reference).is_err() => {
            Outcome::Refused {
                code: "unreadable_reference".to_owned(),
                reason: "the provider answered with an unusable reference".to_owned(),
                reference: None,
            }
        }
        other => other,
    };
    let (refusal, approved) = match outcome {
        Outcome::Approved { reference } => (None, Some(reference)),
        Outcome::Refused {
            code,
            reason: text,
            reference,
        } => (
            Some((
                decline_code(&code),
                reason(&format!("{code}: {text}")),
                reference.filter(|reference| ProviderReference::parse(reference).is_ok()),
            )),
            None,
        ),
        Outcome::DeadlineExceeded { deadline_ms } => (
            Some((
                DeclineCode::DeadlineExceeded,
                format!("no answer from the payment provider within {deadline_ms} ms"),
                None,
            )),
            None,
        ),
    };
    match (&call.operation, approved, refusal) {
        (Operation::Authorize { .. }, Some(reference), _) => {
            PaymentsCommandRecord::RecordAuthorization(wire::RecordAuthorization {
                metadata,
                payment_id,
                provider_reference: reference,
            })
        }
        (Operation::Authorize { .. }, None, refusal) => {
            let (code, reason, reference) =
                refusal.unwrap_or((DeclineCode::ProviderRejected, String::new(), None));
            PaymentsCommandRecord::RecordDecline(wire::RecordDecline {
                metadata,
                payment_id,
                code: code.as_str().to_owned(),
                reason,
                provider_reference: reference,
            })
        }
        (Operation::Capture { .. }, Some(reference), _) => {
            PaymentsCommandRecord::RecordCapture(wire::RecordCapture {
                metadata,
                payment_id,
                provider_reference: reference,
            })
        }
        (Operation::Capture { .. }, None, refusal) => {
            PaymentsCommandRecord::RecordCaptureFailure(wire::RecordCaptureFailure {
                metadata,
                payment_id,
                reason: refusal.map(|(_, reason, _)| reason).unwrap_or_default(),
            })
        }
        (Operation::Refund { refund_id, .. }, Some(reference), _) => {
            PaymentsCommandRecord::RecordRefund(wire::RecordRefund {
                metadata,
                payment_id,
                refund_id: refund_id.clone(),
                provider_reference: reference,
            })
        }
        (Operation::Refund { refund_id, .. }, None, refusal) => {
            PaymentsCommandRecord::RecordRefundFailure(wire::RecordRefundFailure {
                metadata,
                payment_id,
                refund_id: refund_id.clone(),
                reason: refusal.map(|(_, reason, _)| reason).unwrap_or_default(),
            })
        }
        (Operation::Void { .. }, Some(reference), _) => {
            PaymentsCommandRecord::RecordVoid(wire::RecordVoid {
                metadata,
                payment_id,
                provider_reference: reference,
            })
        }
        (Operation::Void { .. }, None, refusal) => {
            PaymentsCommandRecord::RecordVoidFailure(wire::RecordVoidFailure {
                metadata,
                payment_id,
                reason: refusal.map(|(_, reason, _)| reason).unwrap_or_default(),
            })
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Makes provider calls until they end, and records their outcomes.
pub struct ProviderWorker<P> {
    pub provider: P,
    pub config: ProviderClientConfig,
    pub producer: FutureProducer,
    pub codec: Codec,
    pub commands_topic: String,
}

impl<P> std::fmt::Debug for ProviderWorker<P> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ProviderWorker")
            .field("provider", &self.config.url)
            .field("commands_topic", &self.commands_topic)
            .finish_non_exhaustive()
    }
}

async fn attempt<P: PaymentProvider>(
    provider: &P,
    key: &str,
    call: &ProviderCall,
) -> Result<ProviderAnswer, ProviderError> {
    match &call.operation {
        Operation::Authorize {
            amount,
            currency,
            card_token,
        } => {
            provider
                .authorize(
                    key,
                    &AuthorizeRequest {
                        amount: *amount,
                        currency: currency.clone(),
                        card_token: card_token.clone(),
                        reference: call.payment_id.clone(),
                    },
                )
                .await
        }
        Operation::Capture {
            authorization,
            amount,
        } => {
            provider
                .capture(key, authorization, &CaptureRequest { amount: *amount })
                .await
        }
        Operation::Refund {
            refund_id,
            capture,
            amount,
        } => {
            provider
                .refund(
                    key,
                    capture,
                    &RefundRequest {
                        amount: *amount,
                        reference: refund_id.clone(),
                    },
                )
                .await
        }
        Operation::Void { authorization } => provider.void(key, authorization).await,
    }
}

/// When `call` gives up waiting for the provider, in Unix milliseconds:
/// authorizations only, the requesting event's time plus the configured
/// deadline (absolute, so a restarted worker keeps the same one).
pub fn deadline_of(call: &ProviderCall, config: &ProviderClientConfig) -> Option<i64> {
    match call.operation {
        Operation::Authorize { .. } => {
            Some(call.cause.occurred_at.saturating_add(
                i64::try_from(config.authorization_deadline_ms).unwrap_or(i64::MAX),
            ))
        }
        _ => None,
    }
}

/// Calls the provider until it answers, retrying transient failures with
/// backoff (the same key every time). An authorization gives up at its
/// deadline ([`deadline_of`]); it is always asked at least once, so an
/// authorization made before a crash is found (answered from the
/// provider's store) rather than declined.
pub async fn call_until_answered<P: PaymentProvider>(
    provider: &P,
    config: &ProviderClientConfig,
    call: &ProviderCall,
    now: impl Fn() -> i64,
) -> Outcome {
    call_with_retries(provider, config, call, deadline_of(call, config), now).await
}

/// After the deadline declined an authorization: asks the provider with
/// the same key and parameters until it answers, however long that takes.
/// A key the provider executed is answered from its store; one it never
/// executed is executed now. Either way, once it answered, the key holds
/// nothing the answer does not name, so an authorization found here is the
/// only hold there is, and recording it voids it.
pub async fn reconcile_after_deadline<P: PaymentProvider>(
    provider: &P,
    config: &ProviderClientConfig,
    call: &ProviderCall,
) -> Outcome {
    call_with_retries(provider, config, call, None, now_ms).await
}

async fn call_with_retries<P: PaymentProvider>(
    provider: &P,
    config: &ProviderClientConfig,
    call: &ProviderCall,
    deadline: Option<i64>,
    now: impl Fn() -> i64,
) -> Outcome {
    let key = call.idempotency_key();
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(config.retry_first_delay_ms))
        .with_max_delay(Duration::from_millis(config.retry_max_delay_ms))
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        let error = match attempt(provider, &key, call).await {
            Ok(ProviderAnswer::Approved { reference }) => return Outcome::Approved { reference },
            Ok(ProviderAnswer::Refused {
                code,
                message,
                reference,
            }) => {
                return Outcome::Refused {
                    code,
                    reason: message,
                    reference,
                }
            }
            Err(ProviderError::Permanent(reason)) => {
                return Outcome::Refused {
                    code: "provider_rejected".to_owned(),
                    reason,
                    reference: None,
                }
            }
            Err(ProviderError::Transient(reason)) => reason,
        };
        let mut delay = delays
            .next()
            .unwrap_or(Duration::from_millis(config.retry_max_delay_ms));
        if let Some(deadline) = deadline {
            let left = deadline.saturating_sub(now());
            if left <= 0 {
                tracing::warn!(payment_id = %call.payment_id, %error, "no authorization within the deadline: declining");
                return Outcome::DeadlineExceeded {
                    deadline_ms: config.authorization_deadline_ms,
                };
            }
            // One last attempt at the deadline, not after it.
            delay = delay.min(Duration::from_millis(left.unsigned_abs()));
        }
        tracing::warn!(payment_id = %call.payment_id, %error, retry_in_ms = delay.as_millis() as u64, "provider call failed, retrying with the same key");
        tokio::time::sleep(delay).await;
    }
}

impl<P: PaymentProvider> Performer<ProviderCall> for ProviderWorker<P> {
    async fn perform(&self, call: &ProviderCall) -> Result<(), FollowUpError> {
        let outcome = call_until_answered(&self.provider, &self.config, call, now_ms).await;
        let gave_up = matches!(outcome, Outcome::DeadlineExceeded { .. });
        let command = answer_command(call, outcome);
        send_command(&self.producer, &self.codec, &self.commands_topic, &command).await?;
        if gave_up {
            // The provider may hold an authorization whose answer never
            // came; the relay's cursor stays on this row until the key is
            // answered, so a crash in between reconciles again.
            let answer = reconcile_after_deadline(&self.provider, &self.config, call).await;
            tracing::info!(payment_id = %call.payment_id, ?answer, "the provider answered after the deadline decline");
            let command = answer_command(call, answer);
            send_command(&self.producer, &self.codec, &self.commands_topic, &command).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use foldline_contracts::record::CommandRecord;
    use foldline_eventsourcing::{CommandId, EventId};
    use foldline_platform::payments_config::{OutageWindow, ProviderSimulatorConfig};

    use super::*;
    use crate::provider::http::HttpProvider;
    use crate::provider::simulator::{self, Simulator};

    fn cause(occurred_at: i64, version: i64) -> EventMetadata {
        EventMetadata {
            event_id: EventId::decided_by(CommandId::from_idempotency_key("t", "1")).to_string(),
            aggregate_id: "00000000-0000-0000-0000-000000000001".to_owned(),
            aggregate_version: version,
            command_id: "c".to_owned(),
            correlation_id: "corr".to_owned(),
            causation_id: "c".to_owned(),
            occurred_at,
            traceparent: None,
        }
    }

    fn authorize_call(occurred_at: i64) -> ProviderCall {
        ProviderCall {
            cause: cause(occurred_at, 1),
            payment_id: "00000000-0000-0000-0000-000000000001".to_owned(),
            operation: Operation::Authorize {
                amount: 500,
                currency: "EUR".to_owned(),
                card_token: "tok_visa".to_owned(),
            },
        }
    }

    fn client(url: &str) -> ProviderClientConfig {
        ProviderClientConfig {
            url: url.to_owned(),
            request_timeout_ms: 500,
            retry_first_delay_ms: 10,
            retry_max_delay_ms: 50,
            authorization_deadline_ms: 1_000,
            ..ProviderClientConfig::default()
        }
    }

    /// A simulator on a free port, and its URL.
    async fn serve_simulator(config: ProviderSimulatorConfig) -> (Simulator, String) {
        let simulator = Simulator::new(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(simulator::serve(
            simulator.clone(),
            listener,
            std::future::pending(),
        ));
        (simulator, url)
    }

    #[test]
    fn keys_are_one_per_operation_and_stable() {
        let call = authorize_call(1);
        assert_eq!(call.idempotency_key(), authorize_call(2).idempotency_key());
        let capture = |version| ProviderCall {
            cause: cause(1, version),
            payment_id: call.payment_id.clone(),
            operation: Operation::Capture {
                authorization: "auth_1".to_owned(),
                amount: 500,
            },
        };
        assert_eq!(capture(3).idempotency_key(), capture(3).idempotency_key());
        assert_ne!(capture(3).idempotency_key(), capture(5).idempotency_key());
        assert_ne!(capture(3).idempotency_key(), call.idempotency_key());
    }

    #[test]
    fn a_re_performed_call_records_the_same_command_whatever_it_heard() {
        let call = authorize_call(1);
        let approved = answer_command(
            &call,
            Outcome::Approved {
                reference: "auth_1".to_owned(),
            },
        );
        assert_eq!(
            approved,
            answer_command(
                &call,
                Outcome::Approved {
                    reference: "auth_1".to_owned()
                }
            )
        );
        let refused = answer_command(
            &call,
            Outcome::Refused {
                code: "card_declined".to_owned(),
                reason: "no".to_owned(),
                reference: None,
            },
        );
        assert_eq!(
            approved.metadata().command_id,
            refused.metadata().command_id,
            "one answer per request: the processor settles the first"
        );
    }

    #[test]
    fn the_deadline_decline_is_not_the_answer_so_a_late_answer_is_recorded_too() {
        let call = authorize_call(1);
        let declined = answer_command(&call, Outcome::DeadlineExceeded { deadline_ms: 9 });
        assert_eq!(
            declined,
            answer_command(&call, Outcome::DeadlineExceeded { deadline_ms: 9 }),
            "a re-performed deadline records the same decline"
        );
        let late = answer_command(
            &call,
            Outcome::Approved {
                reference: "auth_1".to_owned(),
            },
        );
        assert_ne!(
            declined.metadata().command_id,
            late.metadata().command_id,
            "the processor must decide the late authorization, not settle it as the decline"
        );
        assert_eq!(
            declined.metadata().causation_id,
            late.metadata().causation_id
        );
        let PaymentsCommandRecord::RecordDecline(decline) = declined else {
            panic!("{declined:?}")
        };
        assert_eq!(decline.code, "deadline_exceeded");
        assert!(decline.reason.contains("9 ms"));
        assert!(matches!(
            late,
            PaymentsCommandRecord::RecordAuthorization(_)
        ));
    }

    #[test]
    fn provider_garbage_is_recorded_as_a_refusal_the_domain_accepts() {
        let call = authorize_call(1);
        let command = answer_command(
            &call,
            Outcome::Approved {
                reference: "bad\nreference".to_owned(),
            },
        );
        assert!(matches!(command, PaymentsCommandRecord::RecordDecline(_)));
        let command = answer_command(
            &call,
            Outcome::Refused {
                code: "card_declined".to_owned(),
                reason: format!("{}\u{7}", "x".repeat(600)),
                reference: Some(String::new()),
            },
        );
        let PaymentsCommandRecord::RecordDecline(decline) = &command else {
            panic!("{command:?}")
        };
        assert_eq!(decline.code, "card_declined");
        assert_eq!(decline.provider_reference, None);
        assert!(
            crate::wire::command_from_wire(&command).is_ok(),
            "{command:?}"
        );
    }

    #[tokio::test]
    async fn no_answer_by_the_deadline_declines_after_one_attempt_even_when_late() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let config = client(&url);
        let provider = HttpProvider::new(&config).unwrap();
        // Requested long ago: the deadline passed while the worker was down.
        let outcome = call_until_answered(&provider, &config, &authorize_call(0), now_ms).await;
        assert_eq!(outcome, Outcome::DeadlineExceeded { deadline_ms: 1_000 });
        // Requested now: retried until the deadline, then declined.
        let started = std::time::Instant::now();
        let outcome =
            call_until_answered(&provider, &config, &authorize_call(now_ms()), now_ms).await;
        assert_eq!(outcome, Outcome::DeadlineExceeded { deadline_ms: 1_000 });
        assert!(started.elapsed() >= Duration::from_millis(900));
    }

    #[tokio::test]
    async fn a_lost_answer_at_the_deadline_is_declined_then_found_by_reconciling() {
        let (simulator, url) = serve_simulator(ProviderSimulatorConfig {
            lost_answer_rate: 1.0,
            unreachable_after_lost_answer_ms: 1_500,
            ..ProviderSimulatorConfig::default()
        })
        .await;
        let mut config = client(&url);
        config.authorization_deadline_ms = 500;
        let provider = HttpProvider::new(&config).unwrap();
        let call = authorize_call(now_ms());
        // Executed at once, its answer lost, the provider unreachable past
        // the deadline: we decline without knowing of the hold.
        let outcome = call_until_answered(&provider, &config, &call, now_ms).await;
        assert_eq!(outcome, Outcome::DeadlineExceeded { deadline_ms: 500 });
        assert_eq!(simulator.counts().authorizations, 1);
        // The same key, asked on until it answers: the hold it made.
        let found = reconcile_after_deadline(&provider, &config, &call).await;
        assert!(matches!(found, Outcome::Approved { .. }), "{found:?}");
        let counts = simulator.counts();
        assert_eq!(
            (counts.authorizations, counts.lost_answers, counts.replayed),
            (1, 1, 1),
            "{counts:?}"
        );
        assert!(counts.unavailable >= 1, "{counts:?}");
        assert!(matches!(
            answer_command(&call, found),
            PaymentsCommandRecord::RecordAuthorization(_)
        ));
    }

    #[tokio::test]
    async fn an_outage_is_retried_with_the_same_key_until_authorized() {
        let (simulator, url) = serve_simulator(ProviderSimulatorConfig {
            outages: vec![OutageWindow {
                after_ms: 0,
                for_ms: 200,
            }],
            lost_answer_rate: 0.5,
            ..ProviderSimulatorConfig::default()
        })
        .await;
        let mut config = client(&url);
        config.authorization_deadline_ms = 30_000;
        let provider = HttpProvider::new(&config).unwrap();
        let call = authorize_call(now_ms());
        let outcome = call_until_answered(&provider, &config, &call, now_ms).await;
        assert!(matches!(outcome, Outcome::Approved { .. }), "{outcome:?}");
        // Performed again (a crash before the cursor moved): the same answer.
        let again = call_until_answered(&provider, &config, &call, now_ms).await;
        assert_eq!(again, outcome);
        let counts = simulator.counts();
        assert_eq!(counts.authorizations, 1, "{counts:?}");
        assert!(counts.unavailable >= 1, "{counts:?}");
    }
}
