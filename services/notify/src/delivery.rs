//! The delivery worker's I/O: one attempt through a channel's provider
//! chain, each provider behind its own circuit breaker, and what the
//! attempt leaves behind (commands back to `notify.commands`, a record in
//! `notify.retry`, or the dead-letter topic). Rules and failure cases:
//! `design.md`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backon::{BackoffBuilder, ExponentialBuilder};
use foldline_contracts::envelope::EventMetadata;
use foldline_contracts::notify::{self as wire, NotifyCommandRecord};
use foldline_platform::breaker::{Breaker, BreakerPolicy, Counted};
use foldline_platform::codec::Codec;
use foldline_platform::config::NotifyConfig;
use foldline_platform::outbox::{follow_up_metadata, send_command, FollowUpError, Performer};
use foldline_platform::processor::retry::produce_is_transient;
use foldline_platform::store::{RowKey, Store, StoredRow};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::domain::{Attempt, Channel, ProviderName, Reason};
use crate::follow_ups::DeliverNotification;
use crate::providers::{Accepted, Adapter, ChainError, Chains, Message, ProviderError};
use crate::wire::parameters_to_wire;

/// Who the worker's commands are issued by.
pub const WORKER: &str = "notify-delivery";
/// Our side of de-duplication: notification id → the delivery a provider
/// accepted. Read before any provider is called.
pub const NOTIFY_DELIVERIES: &str = "notify_deliveries";
const BREAKER_OPEN: &str = "circuit breaker open";

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A provider of a chain and its breaker.
#[derive(Debug)]
pub struct Provider {
    pub name: ProviderName,
    adapter: Adapter,
    breaker: Breaker,
}

/// One move to the next provider within an attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    pub from: ProviderName,
    pub to: ProviderName,
    pub reason: Reason,
}

/// What one attempt through a chain came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainOutcome {
    Accepted {
        provider: ProviderName,
        call_us: u64,
        accepted: Accepted,
        hops: Vec<Hop>,
    },
    Failed {
        reason: Reason,
        /// A provider refused the message itself: no retry can help.
        permanent: bool,
        hops: Vec<Hop>,
    },
}

/// One channel's chain, and how many of its deliveries may be in flight.
#[derive(Debug)]
struct Chain {
    providers: Vec<Provider>,
    in_flight: Semaphore,
}

/// Every channel's providers, each behind its breaker. Shared by the
/// outbox relay and the retry consumer, so both see one breaker state and
/// one in-flight limit per channel.
#[derive(Debug)]
pub struct ProviderChains {
    chains: BTreeMap<Channel, Chain>,
}

impl ProviderChains {
    pub fn new(config: &NotifyConfig, store: &Store) -> Result<ProviderChains, ChainError> {
        let chains = Chains::from_config(config)?;
        let timeout = Duration::from_millis(config.provider_timeout_ms);
        let mut built = BTreeMap::new();
        for (channel, specs) in chains.0 {
            let mut providers = Vec::new();
            let last = specs.len().saturating_sub(1);
            for (index, spec) in specs.into_iter().enumerate() {
                let adapter = Adapter::new(&spec.target, timeout, store).map_err(|_| {
                    ChainError::BadTarget {
                        channel: channel.as_str(),
                        name: spec.name.to_string(),
                    }
                })?;
                // Slowness opens a breaker only where there is a next
                // provider to move to: the last one of a chain that
                // answers slowly still delivers, which beats refusing.
                let policy = match index == last {
                    true => BreakerPolicy {
                        slow_call: None,
                        ..config.breaker_policy()
                    },
                    false => config.breaker_policy(),
                };
                let breaker = Breaker::new(
                    &format!("notify {} provider {}", channel.as_str(), spec.name),
                    &policy,
                )?;
                providers.push(Provider {
                    name: spec.name,
                    adapter,
                    breaker,
                });
            }
            built.insert(
                channel,
                Chain {
                    providers,
                    in_flight: Semaphore::new(config.in_flight_per_channel),
                },
            );
        }
        Ok(ProviderChains { chains: built })
    }

    /// Tries the channel's providers in order until one accepts, once one
    /// of the channel's `in_flight_per_channel` places is free (waiting
    /// for it is the channel's backpressure). A provider whose breaker is
    /// open is skipped without a call; a refusal of the message itself
    /// ends the attempt (no provider will take it).
    pub async fn deliver(&self, message: &Message) -> ChainOutcome {
        let Some(chain) = self.chains.get(&message.channel) else {
            return ChainOutcome::Failed {
                reason: Reason::truncated("the channel has no provider"),
                permanent: false,
                hops: Vec::new(),
            };
        };
        // The semaphore is never closed, so acquiring only waits.
        let _place = chain.in_flight.acquire().await;
        let providers = chain.providers.as_slice();
        let mut hops = Vec::new();
        let mut previous: Option<(ProviderName, Reason)> = None;
        for provider in providers {
            if let Some((from, reason)) = previous.take() {
                hops.push(Hop {
                    from,
                    to: provider.name.clone(),
                    reason,
                });
            }
            if !provider.breaker.permits() {
                previous = Some((provider.name.clone(), Reason::truncated(BREAKER_OPEN)));
                continue;
            }
            let started = Instant::now();
            let answer = provider.adapter.send(&provider.name, message).await;
            let took = started.elapsed();
            // A refusal of the message itself says the provider is up. A
            // slow acceptance counts against the breaker, but the message
            // was delivered: it is recorded as sent, never sent again.
            let counted = provider.breaker.record_call(
                !matches!(&answer, Err(error) if error.counts_against_breaker()),
                took,
            );
            if counted == Counted::Slow {
                tracing::debug!(
                    provider = %provider.name,
                    took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                    "slow provider call, counted against its breaker"
                );
            }
            match answer {
                Ok(accepted) => {
                    return ChainOutcome::Accepted {
                        provider: provider.name.clone(),
                        call_us: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
                        accepted,
                        hops,
                    }
                }
                Err(ProviderError::Unavailable(reason)) => {
                    previous = Some((provider.name.clone(), Reason::truncated(&reason)));
                }
                Err(ProviderError::Refused(reason)) => {
                    return ChainOutcome::Failed {
                        reason: Reason::truncated(&format!(
                            "{} refused it: {reason}",
                            provider.name
                        )),
                        permanent: true,
                        hops,
                    }
                }
            }
        }
        let reason = match previous {
            Some((last, reason)) => {
                format!("every provider failed; last, {last}: {}", reason.as_str())
            }
            None => "the channel has no provider".to_owned(),
        };
        ChainOutcome::Failed {
            reason: Reason::truncated(&reason),
            permanent: false,
            hops,
        }
    }
}

/// `notify_deliveries` row: what a provider accepted, kept so a repeated
/// attempt (a crash, a redelivered retry) records it instead of calling
/// again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredRow {
    pub attempt: Attempt,
    pub provider: ProviderName,
    pub latency_ms: u64,
    pub call_us: u64,
    pub message_id: Option<String>,
    pub hops: Vec<Hop>,
}

pub fn delivered_key(notification_id: &str) -> RowKey {
    RowKey::new(
        NOTIFY_DELIVERIES,
        notification_id.as_bytes().to_vec(),
        Vec::new(),
    )
}

/// When each retry is due, from config (backon's exponential schedule, no
/// jitter: the delay after failed attempt n is the n-th step).
#[derive(Clone, Debug)]
pub struct RetrySchedule {
    pub max_attempts: u32,
    first: Duration,
    max: Duration,
}

impl RetrySchedule {
    pub fn new(config: &NotifyConfig) -> RetrySchedule {
        RetrySchedule {
            max_attempts: config.max_attempts,
            first: Duration::from_millis(config.retry_backoff_ms),
            max: Duration::from_millis(config.retry_backoff_max_ms),
        }
    }

    pub fn delay_after(&self, failed: Attempt) -> Duration {
        let steps = usize::try_from(failed.number().saturating_sub(1)).unwrap_or(usize::MAX);
        ExponentialBuilder::default()
            .with_min_delay(self.first)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .without_max_times()
            .build()
            .nth(steps)
            .unwrap_or(self.max)
    }

    pub fn is_last(&self, attempt: Attempt) -> bool {
        attempt.number() >= self.max_attempts
    }
}

/// Where a failed attempt goes next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    Delivered,
    /// Put off: the record to write to `notify.retry`.
    Retry(Box<wire::NotificationRetry>),
}

/// Performs attempts: shared by the relay (first attempts) and the retry
/// consumer (later ones).
pub struct Deliverer {
    pub chains: Arc<ProviderChains>,
    pub schedule: RetrySchedule,
    pub store: Store,
    pub producer: FutureProducer,
    pub codec: Codec,
    pub commands_topic: String,
    pub retry_topic: String,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Deliverer")
            .field("commands_topic", &self.commands_topic)
            .field("retry_topic", &self.retry_topic)
            .finish_non_exhaustive()
    }
}

fn store_error(error: foldline_platform::store::StoreError) -> FollowUpError {
    FollowUpError::from(error)
}

fn wire_attempt(attempt: Attempt) -> i32 {
    i32::try_from(attempt.number()).unwrap_or(i32::MAX)
}

fn step(attempt: Attempt, what: &str) -> String {
    format!("attempt/{}/{what}", attempt.number())
}

/// The commands recording a delivery a provider accepted. Pure.
pub fn sent_commands(
    cause: &EventMetadata,
    id: &str,
    row: &DeliveredRow,
) -> Vec<NotifyCommandRecord> {
    let mut commands = failover_commands(cause, id, row.attempt, &row.hops);
    commands.push(NotifyCommandRecord::RecordSent(
        wire::RecordNotificationSent {
            metadata: follow_up_metadata(cause, &step(row.attempt, "sent"), WORKER),
            aggregate_id: id.to_owned(),
            attempt: wire_attempt(row.attempt),
            provider: row.provider.to_string(),
            latency_ms: i64::try_from(row.latency_ms).unwrap_or(i64::MAX),
            provider_call_us: i64::try_from(row.call_us).unwrap_or(i64::MAX),
            provider_message_id: row.message_id.clone(),
        },
    ));
    commands
}

/// The commands recording an attempt's moves between providers. Pure.
pub fn failover_commands(
    cause: &EventMetadata,
    id: &str,
    attempt: Attempt,
    hops: &[Hop],
) -> Vec<NotifyCommandRecord> {
    hops.iter()
        .enumerate()
        .map(|(index, hop)| {
            NotifyCommandRecord::RecordFailover(wire::RecordProviderFailover {
                metadata: follow_up_metadata(
                    cause,
                    &step(attempt, &format!("failover/{index}")),
                    WORKER,
                ),
                aggregate_id: id.to_owned(),
                attempt: wire_attempt(attempt),
                from_provider: hop.from.to_string(),
                to_provider: hop.to.to_string(),
                reason: hop.reason.as_str().to_owned(),
            })
        })
        .collect()
}

/// The command recording that a notification failed for good. Pure.
pub fn failed_command(
    cause: &EventMetadata,
    id: &str,
    attempt: Attempt,
    reason: &str,
) -> NotifyCommandRecord {
    NotifyCommandRecord::RecordFailed(wire::RecordNotificationFailed {
        metadata: follow_up_metadata(cause, "failed", WORKER),
        aggregate_id: id.to_owned(),
        attempt: wire_attempt(attempt),
        reason: Reason::truncated(reason).as_str().to_owned(),
    })
}

impl Deliverer {
    /// Produces one command to `notify.commands`.
    pub async fn record(&self, command: &NotifyCommandRecord) -> Result<(), FollowUpError> {
        send_command(&self.producer, &self.codec, &self.commands_topic, command).await
    }

    async fn send_all(&self, commands: &[NotifyCommandRecord]) -> Result<(), FollowUpError> {
        for command in commands {
            send_command(&self.producer, &self.codec, &self.commands_topic, command).await?;
        }
        Ok(())
    }

    /// Makes attempt `attempt` of `message` unless a provider already took
    /// it, and records what happened. Idempotent: every command id derives
    /// from (cause, attempt, step), and a delivery already accepted is
    /// recorded again rather than sent again.
    pub async fn attempt(
        &self,
        cause: &EventMetadata,
        message: &Message,
        attempt: Attempt,
    ) -> Result<AttemptResult, FollowUpError> {
        let id = message.notification_id.to_string();
        if let Some(row) = self
            .store
            .get(delivered_key(&id))
            .await
            .map_err(store_error)?
        {
            let delivered: DeliveredRow = serde_json::from_slice(&row.value)
                .map_err(|error| FollowUpError::Permanent(error.to_string()))?;
            self.send_all(&sent_commands(cause, &id, &delivered))
                .await?;
            return Ok(AttemptResult::Delivered);
        }
        match self.chains.deliver(message).await {
            ChainOutcome::Accepted {
                provider,
                call_us,
                accepted,
                hops,
            } => {
                let latency_ms =
                    u64::try_from(now_millis().saturating_sub(cause.occurred_at)).unwrap_or(0);
                let delivered = DeliveredRow {
                    attempt,
                    provider,
                    latency_ms,
                    call_us,
                    message_id: accepted.message_id,
                    hops,
                };
                let value = serde_json::to_vec(&delivered)
                    .map_err(|error| FollowUpError::Permanent(error.to_string()))?;
                self.store
                    .put(delivered_key(&id), StoredRow { position: 0, value })
                    .await
                    .map_err(store_error)?;
                self.send_all(&sent_commands(cause, &id, &delivered))
                    .await?;
                Ok(AttemptResult::Delivered)
            }
            ChainOutcome::Failed {
                reason,
                permanent,
                hops,
            } => {
                self.send_all(&failover_commands(cause, &id, attempt, &hops))
                    .await?;
                let last = permanent || self.schedule.is_last(attempt);
                let not_before = match last {
                    true => now_millis(),
                    false => now_millis().saturating_add(
                        i64::try_from(self.schedule.delay_after(attempt).as_millis())
                            .unwrap_or(i64::MAX),
                    ),
                };
                let retry = wire::NotificationRetry {
                    cause: cause.clone(),
                    notification_id: id.clone(),
                    channel: message.channel.as_str().to_owned(),
                    recipient: message.recipient.as_str().to_owned(),
                    template: message.template.as_str().to_owned(),
                    parameters: parameters_to_wire(&message.parameters),
                    failed_attempt: wire_attempt(attempt),
                    reason: reason.as_str().to_owned(),
                    permanent: last,
                    not_before,
                };
                if !last {
                    self.send_all(&[NotifyCommandRecord::RecordAttemptFailed(
                        wire::RecordAttemptFailed {
                            metadata: follow_up_metadata(cause, &step(attempt, "failed"), WORKER),
                            aggregate_id: id.clone(),
                            attempt: wire_attempt(attempt),
                            reason: reason.as_str().to_owned(),
                            retry_at: not_before,
                        },
                    )])
                    .await?;
                }
                Ok(AttemptResult::Retry(Box::new(retry)))
            }
        }
    }

    /// Writes a put-off attempt to `notify.retry`, keyed by notification.
    pub async fn put_off(&self, retry: &wire::NotificationRetry) -> Result<(), FollowUpError> {
        let value = apache_avro::to_value(retry)
            .map_err(|error| FollowUpError::Permanent(error.to_string()))?;
        let bytes = self
            .codec
            .encode_value(
                &self.retry_topic,
                wire::NotificationRetry::RECORD_NAME,
                value,
            )
            .await
            .map_err(|error| match error.is_transient() {
                true => FollowUpError::Transient(error.to_string()),
                false => FollowUpError::Permanent(error.to_string()),
            })?;
        let record = FutureRecord::to(&self.retry_topic)
            .key(&retry.notification_id)
            .payload(&bytes);
        self.producer
            .send(record, Duration::from_secs(5))
            .await
            .map(|_| ())
            .map_err(|(error, _)| match produce_is_transient(&error) {
                true => FollowUpError::Transient(error.to_string()),
                false => FollowUpError::Permanent(error.to_string()),
            })
    }
}

/// The outbox relay's performer: first attempts.
#[derive(Debug, Clone)]
pub struct FirstAttempts(pub Arc<Deliverer>);

impl Performer<DeliverNotification> for FirstAttempts {
    async fn perform(&self, follow_up: &DeliverNotification) -> Result<(), FollowUpError> {
        match self
            .0
            .attempt(&follow_up.cause, &follow_up.message, follow_up.attempt)
            .await?
        {
            AttemptResult::Delivered => Ok(()),
            AttemptResult::Retry(retry) => self.0.put_off(&retry).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{NotificationId, Parameters, Recipient, Template};

    fn text() -> Message {
        Message {
            notification_id: NotificationId::parse(&uuid::Uuid::new_v4().to_string()).unwrap(),
            channel: Channel::Sms,
            recipient: Recipient::parse(Channel::Sms, "+447700900123").unwrap(),
            template: Template::parse("order.confirmed").unwrap(),
            parameters: Parameters::default(),
        }
    }

    #[tokio::test]
    async fn a_provider_that_keeps_failing_is_skipped_without_a_call_once_its_breaker_opens() {
        // A port nothing listens on: every call to it fails at once.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config = NotifyConfig {
            sms_providers: format!("down=http://{closed},backup=sink"),
            breaker_consecutive_failures: 2,
            breaker_open_wait_ms: 600_000,
            ..NotifyConfig::default()
        };
        let chains = ProviderChains::new(&config, &Store::in_memory()).unwrap();
        let mut reasons = Vec::new();
        for _ in 0..4 {
            match chains.deliver(&text()).await {
                ChainOutcome::Accepted { provider, hops, .. } => {
                    assert_eq!(provider.to_string(), "backup");
                    reasons.extend(hops.into_iter().map(|hop| hop.reason.as_str().to_owned()));
                }
                failed => panic!("the backup takes it: {failed:?}"),
            }
        }
        assert_eq!(
            reasons,
            [
                "cannot be reached",
                "cannot be reached",
                BREAKER_OPEN,
                BREAKER_OPEN
            ]
        );
    }

    /// A provider API on loopback that accepts every message after
    /// `delay`, counting the calls in flight and the most at once.
    #[derive(Default)]
    struct Counters {
        calls: std::sync::atomic::AtomicUsize,
        running: std::sync::atomic::AtomicUsize,
        most_running: std::sync::atomic::AtomicUsize,
    }

    async fn provider_answering_after(delay: Duration) -> (String, Arc<Counters>) {
        use std::sync::atomic::Ordering::SeqCst;
        let counters = Arc::new(Counters::default());
        let shared = Arc::clone(&counters);
        let app = axum::Router::new().route(
            "/v1/messages",
            axum::routing::post(move || {
                let counters = Arc::clone(&shared);
                async move {
                    counters.calls.fetch_add(1, SeqCst);
                    let running = counters.running.fetch_add(1, SeqCst) + 1;
                    counters.most_running.fetch_max(running, SeqCst);
                    tokio::time::sleep(delay).await;
                    counters.running.fetch_sub(1, SeqCst);
                    axum::Json(serde_json::json!({"message_id": "m"}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{address}"), counters)
    }

    #[tokio::test]
    async fn a_slow_primary_still_delivers_but_its_breaker_opens_and_traffic_moves_to_the_backup() {
        // Answers well after the slow-call threshold, well before the
        // timeout: every call is a slow success.
        let (slow, counters) = provider_answering_after(Duration::from_millis(400)).await;
        let config = NotifyConfig {
            sms_providers: format!("slow={slow},backup=sink"),
            provider_timeout_ms: 30_000,
            breaker_slow_call_ms: 100,
            breaker_consecutive_failures: 2,
            breaker_open_wait_ms: 600_000,
            ..NotifyConfig::default()
        };
        let chains = ProviderChains::new(&config, &Store::in_memory()).unwrap();
        let mut delivered_by = Vec::new();
        let mut reasons = Vec::new();
        for _ in 0..4 {
            match chains.deliver(&text()).await {
                ChainOutcome::Accepted { provider, hops, .. } => {
                    delivered_by.push(provider.to_string());
                    reasons.extend(hops.into_iter().map(|hop| hop.reason.as_str().to_owned()));
                }
                failed => panic!("a provider takes it: {failed:?}"),
            }
        }
        assert_eq!(
            delivered_by,
            ["slow", "slow", "backup", "backup"],
            "the slow calls delivered, once each; then the open breaker skips it"
        );
        assert_eq!(reasons, [BREAKER_OPEN, BREAKER_OPEN]);
        assert_eq!(counters.calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_last_provider_of_a_chain_keeps_its_traffic_however_slow() {
        let (slow, counters) = provider_answering_after(Duration::from_millis(150)).await;
        let config = NotifyConfig {
            sms_providers: format!("only={slow}"),
            provider_timeout_ms: 30_000,
            breaker_slow_call_ms: 10,
            breaker_consecutive_failures: 1,
            breaker_open_wait_ms: 600_000,
            ..NotifyConfig::default()
        };
        let chains = ProviderChains::new(&config, &Store::in_memory()).unwrap();
        for _ in 0..3 {
            assert!(
                matches!(chains.deliver(&text()).await, ChainOutcome::Accepted { .. }),
                "nowhere faster to go: a slow delivery beats none"
            );
        }
        assert_eq!(counters.calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_channel_has_at_most_its_in_flight_limit_of_deliveries_at_once() {
        let (provider, counters) = provider_answering_after(Duration::from_millis(50)).await;
        let config = NotifyConfig {
            sms_providers: format!("primary={provider}"),
            provider_timeout_ms: 30_000,
            in_flight_per_channel: 2,
            ..NotifyConfig::default()
        };
        let chains = ProviderChains::new(&config, &Store::in_memory()).unwrap();
        let messages: Vec<Message> = (0..8).map(|_| text()).collect();
        let outcomes =
            futures::future::join_all(messages.iter().map(|message| chains.deliver(message))).await;
        assert!(
            outcomes
                .iter()
                .all(|outcome| matches!(outcome, ChainOutcome::Accepted { .. })),
            "{outcomes:?}"
        );
        assert_eq!(counters.calls.load(std::sync::atomic::Ordering::SeqCst), 8);
        let most = counters
            .most_running
            .load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            (1..=2).contains(&most),
            "{most} calls at once, the limit is 2"
        );
    }

    #[test]
    fn the_retry_schedule_doubles_up_to_its_cap_and_ends() {
        let config = NotifyConfig {
            retry_backoff_ms: 100,
            retry_backoff_max_ms: 350,
            max_attempts: 4,
            ..NotifyConfig::default()
        };
        let schedule = RetrySchedule::new(&config);
        let delays: Vec<u128> = (1..=4)
            .map(|n| schedule.delay_after(Attempt::new(n).unwrap()).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        assert!(!schedule.is_last(Attempt::new(3).unwrap()));
        assert!(schedule.is_last(Attempt::new(4).unwrap()));
    }
}
