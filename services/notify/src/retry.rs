//! The retry consumer: later attempts, off the partition that queued them.
//!
//! A first attempt that fails puts a record in `notify.retry` (due at
//! `not_before`) and the relay moves on, so the notify partition keeps
//! flowing. This consumer waits for each record's time, makes the next
//! attempt, and either records the delivery, puts the notification off
//! again, or — after the last attempt, or when a provider refused the
//! message — parks the record in `notify.dlq` with its reason and records
//! the notification as failed. It commits a retry record's offset only
//! once that is done.

use std::sync::Arc;
use std::time::Duration;

use foldline_contracts::notify::NotificationRetry;
use foldline_contracts::record::WireError;
use foldline_platform::dlq::{Cause, DeadLetterError, DeadLetters, Parked, Screened};
use foldline_platform::kafka::{commit_stored_offsets, store_next_offset};
use foldline_platform::outbox::FollowUpError;
use foldline_platform::processor::retry::until_settled;
use foldline_platform::shutdown::Shutdown;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientConfig, Message as _};

use crate::delivery::{failed_command, AttemptResult, Deliverer};
use crate::domain::Attempt;
use crate::providers::Message;
use crate::wire::request_from_wire;

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("the retry consumer cannot start: {0}")]
    Start(String),
    #[error("a retry cannot be parked: {0}")]
    DeadLetter(#[from] DeadLetterError),
    #[error("a retry failed for good: {0}")]
    FollowUp(String),
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn parse(
    decoded: foldline_platform::codec::Decoded,
) -> Result<(NotificationRetry, Message, Attempt), WireError> {
    let record = decoded.record_name.clone();
    if record != NotificationRetry::RECORD_NAME {
        return Err(WireError::UnknownRecord { record });
    }
    let retry: NotificationRetry =
        decoded
            .into_record()
            .map_err(|error| WireError::DoesNotFitSchema {
                record: NotificationRetry::RECORD_NAME.to_owned(),
                reason: error.to_string(),
            })?;
    let request = request_from_wire(
        &retry.channel,
        &retry.recipient,
        &retry.template,
        &retry.parameters,
    )?;
    let notification_id = foldline_contracts::record::invalid_field(
        "notification_id",
        crate::domain::NotificationId::parse(&retry.notification_id),
    )?;
    let failed = foldline_contracts::record::invalid_field(
        "failed_attempt",
        Attempt::new(i64::from(retry.failed_attempt)),
    )?;
    let message = Message {
        notification_id,
        channel: request.channel,
        recipient: request.recipient,
        template: request.template,
        parameters: request.parameters,
    };
    Ok((retry, message, failed))
}

/// Whether the record is done with (its offset may be stored).
enum Handled {
    Done,
    Stopped,
}

struct RetryLoop {
    deliverer: Arc<Deliverer>,
    dead_letters: DeadLetters,
    shutdown: Shutdown,
}

impl RetryLoop {
    async fn settle<T>(
        &self,
        what: &'static str,
        mut step: impl FnMut() -> futures::future::BoxFuture<'static, Result<T, FollowUpError>>,
    ) -> Result<Option<T>, RetryError> {
        match until_settled(what, &self.shutdown, &mut step, FollowUpError::is_transient).await {
            None => Ok(None),
            Some(Ok(value)) => Ok(Some(value)),
            Some(Err(error)) => Err(RetryError::FollowUp(error.to_string())),
        }
    }

    /// Parks the record with `reason` and records the notification failed.
    async fn exhaust(
        &self,
        kafka_message: &OwnedMessage,
        retry: &NotificationRetry,
        attempt: Attempt,
        reason: &str,
    ) -> Result<Handled, RetryError> {
        if self
            .dead_letters
            .park(kafka_message, Cause::Exhausted, reason, &self.shutdown)
            .await?
            == Parked::Stopped
        {
            return Ok(Handled::Stopped);
        }
        let command = failed_command(&retry.cause, &retry.notification_id, attempt, reason);
        let deliverer = Arc::clone(&self.deliverer);
        let sent = self
            .settle("record a failed notification", || {
                let (deliverer, command) = (Arc::clone(&deliverer), command.clone());
                Box::pin(async move { deliverer.record(&command).await })
            })
            .await?;
        Ok(sent.map_or(Handled::Stopped, |()| Handled::Done))
    }

    async fn handle(&self, kafka_message: &OwnedMessage) -> Result<Handled, RetryError> {
        let screened = self
            .dead_letters
            .screen(
                &self.deliverer.codec,
                kafka_message,
                "notification retry",
                parse,
                &self.shutdown,
            )
            .await?;
        let (retry, message, failed) = match screened {
            Screened::Admitted(parsed) => parsed,
            Screened::Parked => return Ok(Handled::Done),
            Screened::Stopped => return Ok(Handled::Stopped),
        };
        if retry.permanent {
            return self
                .exhaust(kafka_message, &retry, failed, &retry.reason)
                .await;
        }
        let wait = u64::try_from(retry.not_before.saturating_sub(now_millis())).unwrap_or(0);
        if wait > 0 {
            tokio::select! {
                () = self.shutdown.clone().wait() => return Ok(Handled::Stopped),
                () = tokio::time::sleep(Duration::from_millis(wait)) => {}
            }
        }
        let attempt = failed.next();
        let deliverer = Arc::clone(&self.deliverer);
        let result = self
            .settle("make a delivery attempt", || {
                let (deliverer, cause, message) =
                    (Arc::clone(&deliverer), retry.cause.clone(), message.clone());
                Box::pin(async move { deliverer.attempt(&cause, &message, attempt).await })
            })
            .await?;
        match result {
            None => Ok(Handled::Stopped),
            Some(AttemptResult::Delivered) => Ok(Handled::Done),
            Some(AttemptResult::Retry(next)) if next.permanent => {
                self.exhaust(kafka_message, &retry, attempt, &next.reason)
                    .await
            }
            Some(AttemptResult::Retry(next)) => {
                let put_off = self
                    .settle("put a delivery attempt off", || {
                        let (deliverer, next) = (Arc::clone(&deliverer), next.clone());
                        Box::pin(async move { deliverer.put_off(&next).await })
                    })
                    .await?;
                Ok(put_off.map_or(Handled::Stopped, |()| Handled::Done))
            }
        }
    }
}

/// Consumes `notify.retry` until shutdown.
pub async fn run(
    deliverer: Arc<Deliverer>,
    consumer_config: ClientConfig,
    dead_letters: DeadLetters,
    shutdown: Shutdown,
) -> Result<(), RetryError> {
    let consumer: StreamConsumer = consumer_config
        .create()
        .map_err(|error| RetryError::Start(error.to_string()))?;
    let topic = deliverer.retry_topic.clone();
    consumer
        .subscribe(&[topic.as_str()])
        .map_err(|error| RetryError::Start(error.to_string()))?;
    let retries = RetryLoop {
        deliverer,
        dead_letters,
        shutdown: shutdown.clone(),
    };
    loop {
        let received = tokio::select! {
            () = shutdown.clone().wait() => break,
            received = consumer.recv() => received,
        };
        let kafka_message = match received {
            Ok(message) => message.detach(),
            Err(error) => {
                tracing::warn!(%error, "the retry consumer cannot read, will retry");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        match retries.handle(&kafka_message).await? {
            Handled::Stopped => break,
            Handled::Done => {
                if let Err(error) = store_next_offset(
                    &consumer,
                    kafka_message.topic(),
                    kafka_message.partition(),
                    kafka_message.offset() + 1,
                ) {
                    tracing::warn!(%error, "cannot store a retry offset; the retry may run again");
                }
            }
        }
    }
    commit_stored_offsets(&consumer, "the retry consumer");
    Ok(())
}
