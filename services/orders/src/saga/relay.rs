//! The saga's I/O: performing its follow-ups (commands to `payments` and
//! `orders`, the customer check, the deadline timer) and the two relay
//! workers. Every command's id derives from the event that caused it
//! (`follow_up_metadata`), so a follow-up performed twice issues the same
//! command and its processor de-duplicates it.

use foldline_contracts::envelope::{CommandMetadata, EventMetadata};
use foldline_contracts::orders::{self as orders_wire, OrdersCommandRecord};
use foldline_contracts::payments::{self as payments_wire, PaymentsCommandRecord};
use foldline_platform::codec::Codec;
use foldline_platform::config::SagaConfig;
use foldline_platform::kafka;
use foldline_platform::outbox::{
    follow_up_metadata, read_json, relay_named, send_command, FollowUpError, Performer,
    ProcessManager,
};
use foldline_platform::service::{DomainTopics, RoleContext, RoleFuture, ServiceError};
use foldline_platform::store::Store;
use rdkafka::producer::FutureProducer;

use super::customers::{customer_key, CustomerStatus};
use super::{
    payment_id_for, OrderFollowUp, OrdersSaga, PaymentDeadlines, PaymentFollowUp, PaymentsSaga,
    CUSTOMER_DEACTIVATED, CUSTOMER_UNKNOWN, PAYMENT_DEADLINE_PASSED,
};
use crate::domain::OrderStatus;
use crate::projection::{order_key, OrderRow};

/// Who the saga's commands are issued by.
pub const SAGA: &str = "orders-saga";
pub const ORDERS_RELAY: &str = "saga relay (orders events)";
pub const PAYMENTS_RELAY: &str = "saga relay (payments events)";
pub const DEADLINES_RELAY: &str = "saga relay (payment deadlines)";

/// The topics the saga writes to, and how.
pub struct SagaPerformer {
    pub producer: FutureProducer,
    pub codec: Codec,
    pub orders_commands: String,
    pub payments_commands: String,
    pub store: Store,
    pub settings: SagaConfig,
}

impl std::fmt::Debug for SagaPerformer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SagaPerformer")
            .field("orders_commands", &self.orders_commands)
            .field("payments_commands", &self.payments_commands)
            .finish_non_exhaustive()
    }
}

fn reject(
    metadata: CommandMetadata,
    order_id: &str,
    code: &str,
    reason: String,
) -> OrdersCommandRecord {
    OrdersCommandRecord::Reject(orders_wire::RejectOrder {
        metadata,
        order_id: order_id.to_owned(),
        code: code.to_owned(),
        reason,
    })
}

impl SagaPerformer {
    async fn to_orders(&self, command: &OrdersCommandRecord) -> Result<(), FollowUpError> {
        send_command(&self.producer, &self.codec, &self.orders_commands, command).await
    }

    async fn to_payments(&self, command: &PaymentsCommandRecord) -> Result<(), FollowUpError> {
        send_command(
            &self.producer,
            &self.codec,
            &self.payments_commands,
            command,
        )
        .await
    }

    async fn customer(&self, customer_id: &str) -> Result<Option<CustomerStatus>, FollowUpError> {
        read_json::<CustomerStatus>(&self.store, customer_key(customer_id)).await
    }

    /// Whether the order is still placed in this domain's own projection.
    /// Only saves a refused command: the decider has the last word.
    async fn still_awaiting_payment(&self, order_id: &str) -> Result<bool, FollowUpError> {
        let order = read_json::<OrderRow>(&self.store, order_key(order_id)).await?;
        Ok(order.is_none_or(|order| order.state.status() == Some(OrderStatus::Placed)))
    }

    fn deadline_of(&self, cause: &EventMetadata) -> i64 {
        let deadline = i64::try_from(self.settings.payment_deadline_ms).unwrap_or(i64::MAX);
        cause.occurred_at.saturating_add(deadline)
    }
}

impl Performer<OrderFollowUp> for SagaPerformer {
    fn not_before(&self, follow_up: &OrderFollowUp) -> Option<i64> {
        match follow_up {
            OrderFollowUp::PaymentDeadline { cause, .. } => Some(self.deadline_of(cause)),
            _ => None,
        }
    }

    async fn perform(&self, follow_up: &OrderFollowUp) -> Result<(), FollowUpError> {
        match follow_up {
            OrderFollowUp::OpenPayment {
                cause,
                order_id,
                customer_id,
                amount,
                currency,
                card_token,
            } => {
                // The check reads the customers read model as it is now:
                // see design.md for its race window.
                let refusal = match self.customer(customer_id).await? {
                    Some(CustomerStatus::Active) => None,
                    None => Some((
                        CUSTOMER_UNKNOWN,
                        format!("no user {customer_id} is registered"),
                    )),
                    Some(CustomerStatus::Deactivated) => Some((
                        CUSTOMER_DEACTIVATED,
                        format!("user {customer_id} is deactivated"),
                    )),
                    Some(CustomerStatus::Erased) => Some((
                        CUSTOMER_DEACTIVATED,
                        format!("user {customer_id} erased their personal data"),
                    )),
                };
                match refusal {
                    Some((code, reason)) => {
                        let metadata = follow_up_metadata(cause, "customer-check", SAGA);
                        self.to_orders(&reject(metadata, order_id, code, reason))
                            .await
                    }
                    None => {
                        let command =
                            PaymentsCommandRecord::Authorize(payments_wire::AuthorizePayment {
                                metadata: follow_up_metadata(cause, "authorize-payment", SAGA),
                                payment_id: payment_id_for(order_id),
                                order_id: order_id.clone(),
                                customer_id: customer_id.clone(),
                                amount: *amount,
                                currency: currency.clone(),
                                card_token: card_token
                                    .clone()
                                    .unwrap_or_else(|| self.settings.default_card_token.clone()),
                            });
                        self.to_payments(&command).await
                    }
                }
            }
            OrderFollowUp::PaymentDeadline { cause, order_id } => {
                if !self.still_awaiting_payment(order_id).await? {
                    return Ok(());
                }
                let mut metadata = follow_up_metadata(cause, "payment-deadline", SAGA);
                // The decision's clock is the deadline itself: deterministic,
                // and the rejection says when the order ran out of time.
                metadata.issued_at = self.deadline_of(cause);
                let reason = format!(
                    "no payment was confirmed within {} ms of placing the order",
                    self.settings.payment_deadline_ms
                );
                self.to_orders(&reject(metadata, order_id, PAYMENT_DEADLINE_PASSED, reason))
                    .await
            }
            OrderFollowUp::Void {
                cause,
                payment_id,
                reason,
            } => {
                let command = PaymentsCommandRecord::Void(payments_wire::VoidAuthorization {
                    metadata: follow_up_metadata(cause, "void-authorization", SAGA),
                    payment_id: payment_id.clone(),
                    reason: reason.clone(),
                });
                self.to_payments(&command).await
            }
            OrderFollowUp::Refund {
                cause,
                payment_id,
                refund_id,
                amount,
                reason,
            } => {
                let command = PaymentsCommandRecord::Refund(payments_wire::RefundPayment {
                    metadata: follow_up_metadata(cause, "refund-payment", SAGA),
                    payment_id: payment_id.clone(),
                    refund_id: refund_id.clone(),
                    amount: *amount,
                    reason: reason.clone(),
                });
                self.to_payments(&command).await
            }
        }
    }
}

impl Performer<PaymentFollowUp> for SagaPerformer {
    async fn perform(&self, follow_up: &PaymentFollowUp) -> Result<(), FollowUpError> {
        match follow_up {
            PaymentFollowUp::Capture { cause, payment_id } => {
                let command = PaymentsCommandRecord::Capture(payments_wire::CapturePayment {
                    metadata: follow_up_metadata(cause, "capture-payment", SAGA),
                    payment_id: payment_id.clone(),
                });
                self.to_payments(&command).await
            }
            PaymentFollowUp::MarkPaid {
                cause,
                order_id,
                payment_id,
                amount,
            } => {
                let command = OrdersCommandRecord::MarkPaid(orders_wire::MarkOrderPaid {
                    metadata: follow_up_metadata(cause, "mark-order-paid", SAGA),
                    order_id: order_id.clone(),
                    payment_id: payment_id.clone(),
                    amount: *amount,
                });
                self.to_orders(&command).await
            }
            PaymentFollowUp::MarkPaymentFailed {
                cause,
                order_id,
                payment_id,
                reason,
            } => {
                let command =
                    OrdersCommandRecord::MarkPaymentFailed(orders_wire::MarkOrderPaymentFailed {
                        metadata: follow_up_metadata(cause, "mark-order-payment-failed", SAGA),
                        order_id: order_id.clone(),
                        payment_id: payment_id.clone(),
                        reason: reason.clone(),
                    });
                self.to_orders(&command).await
            }
        }
    }
}

async fn performer(
    worker: &'static str,
    context: &RoleContext,
) -> Result<SagaPerformer, ServiceError> {
    let orders = DomainTopics::resolve(&context.config, &context.topology, crate::DOMAIN)?;
    let payments = DomainTopics::resolve(&context.config, &context.topology, PaymentsSaga::SOURCE)?;
    let producer = kafka::producer_config(&context.config.kafka, "foldline-orders-saga")
        .create()
        .map_err(|error| ServiceError::WorkerStart {
            worker,
            reason: error.to_string(),
        })?;
    Ok(SagaPerformer {
        producer,
        codec: context.codec.clone(),
        orders_commands: orders.commands,
        payments_commands: payments.commands,
        store: context.store.clone(),
        settings: context.config.saga.clone(),
    })
}

async fn run_relay<M>(worker: &'static str, context: RoleContext) -> Result<(), ServiceError>
where
    M: ProcessManager,
    SagaPerformer: Performer<M::FollowUp>,
{
    if !context.config.saga.enabled {
        tracing::info!(
            worker,
            "the saga is off (saga.enabled = false): its relay issues nothing"
        );
        context.shutdown.wait().await;
        return Ok(());
    }
    let source = DomainTopics::resolve(&context.config, &context.topology, M::SOURCE)?;
    let performer = performer(worker, &context).await?;
    relay_named::<M::FollowUp, _>(
        M::NAME,
        performer,
        context.store,
        source.partitions,
        context.shutdown,
    )
    .await?;
    Ok(())
}

/// The relay of the saga's reactions to `orders.events`.
pub fn run_orders_relay(_domain: &'static str, context: RoleContext) -> RoleFuture {
    Box::pin(run_relay::<OrdersSaga>(ORDERS_RELAY, context))
}

/// The relay of the saga's reactions to `payments.events`.
pub fn run_payments_relay(_domain: &'static str, context: RoleContext) -> RoleFuture {
    Box::pin(run_relay::<PaymentsSaga>(PAYMENTS_RELAY, context))
}

/// The relay of the payment deadline timers.
pub fn run_deadlines_relay(_domain: &'static str, context: RoleContext) -> RoleFuture {
    Box::pin(run_relay::<PaymentDeadlines>(DEADLINES_RELAY, context))
}
