//! Learns command outcomes from every domain's `D.outcomes` as they are
//! published, so a request with `Prefer: wait` answers as soon as the log
//! settled its command.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foldline_contracts::envelope::CommandOutcome;
use foldline_platform::codec::Codec;
use foldline_platform::config::KafkaConfig;
use foldline_platform::kafka::reader_config;
use foldline_platform::shutdown::Shutdown;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::oneshot;

use crate::admission::Admission;

const RECENT_CAPACITY: usize = 16_384;

#[derive(Default)]
struct Inner {
    admission: Admission,
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<CommandOutcome>>>>,
    recent: Mutex<(HashMap<String, CommandOutcome>, VecDeque<String>)>,
    ready: AtomicBool,
}

/// Cheap to clone.
#[derive(Clone, Default)]
pub struct Outcomes {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Outcomes {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Outcomes").finish_non_exhaustive()
    }
}

impl Outcomes {
    /// Starts following every `(topic, partitions)` from its end: one
    /// consumer for all domains' outcome topics. Every outcome seen gives
    /// its command's slot back to `admission`.
    ///
    /// "Its end" is the high watermark read once, at start, and the
    /// follower is ready only then: left to librdkafka, `Offset::End` is
    /// resolved when fetching starts, which on a real broker can be seconds
    /// later (a topic created a moment ago has no leader yet), and an
    /// outcome published in between would slip past its waiter.
    pub fn start(
        kafka: &KafkaConfig,
        topics: &[(String, i32)],
        codec: Codec,
        admission: Admission,
        shutdown: Shutdown,
    ) -> Result<Outcomes, rdkafka::error::KafkaError> {
        let consumer: StreamConsumer =
            reader_config(kafka, "foldline-gateway-outcomes").create()?;
        let partitions: Vec<(String, i32)> = topics
            .iter()
            .flat_map(|(topic, partitions)| {
                (0..*partitions).map(move |partition| (topic.clone(), partition))
            })
            .collect();
        let outcomes = Outcomes::with_admission(admission);
        let follower = outcomes.clone();
        tokio::spawn(async move {
            let consumer = tokio::select! {
                () = shutdown.clone().wait() => return,
                positioned = assign_at_ends(consumer, partitions) => match positioned {
                    Some(consumer) => consumer,
                    None => return,
                },
            };
            follower.inner.ready.store(true, Ordering::SeqCst);
            loop {
                let received = tokio::select! {
                    () = shutdown.clone().wait() => break,
                    received = consumer.recv() => received,
                };
                let message = match received {
                    Ok(message) => message.detach(),
                    Err(error) => {
                        tracing::warn!(%error, "outcome consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Some(payload) = message.payload() else {
                    continue;
                };
                match codec
                    .decode(payload)
                    .await
                    .and_then(|decoded| decoded.into_record::<CommandOutcome>())
                {
                    Ok(outcome) => follower.publish(outcome),
                    Err(error) => {
                        tracing::warn!(%error, offset = message.offset(), "skipping unreadable outcome")
                    }
                }
            }
        });
        Ok(outcomes)
    }

    /// Outcomes that give slots back to `admission` as they are published.
    pub fn with_admission(admission: Admission) -> Outcomes {
        Outcomes {
            inner: Arc::new(Inner {
                admission,
                ..Inner::default()
            }),
        }
    }

    /// Whether the follower reads from fixed positions, so that an outcome
    /// of a command subscribed to from now on cannot slip past.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }

    /// Hands an outcome to its waiters and remembers it briefly.
    pub fn publish(&self, outcome: CommandOutcome) {
        self.inner.admission.release(&outcome.command_id);
        if let Ok(mut recent) = self.inner.recent.lock() {
            let (by_id, order) = &mut *recent;
            if by_id
                .insert(outcome.command_id.clone(), outcome.clone())
                .is_none()
            {
                order.push_back(outcome.command_id.clone());
                while order.len() > RECENT_CAPACITY {
                    if let Some(oldest) = order.pop_front() {
                        by_id.remove(&oldest);
                    }
                }
            }
        }
        let waiters = self
            .inner
            .waiters
            .lock()
            .ok()
            .and_then(|mut waiters| waiters.remove(&outcome.command_id));
        for waiter in waiters.into_iter().flatten() {
            let _ = waiter.send(outcome.clone());
        }
    }

    /// Registers interest in a command's outcome. Call before producing the
    /// command so its outcome cannot slip past.
    pub fn subscribe(&self, command_id: &str) -> oneshot::Receiver<CommandOutcome> {
        let (sender, receiver) = oneshot::channel();
        let known = self
            .inner
            .recent
            .lock()
            .ok()
            .and_then(|recent| recent.0.get(command_id).cloned());
        match known {
            Some(outcome) => {
                let _ = sender.send(outcome);
            }
            None => {
                if let Ok(mut waiters) = self.inner.waiters.lock() {
                    waiters
                        .entry(command_id.to_owned())
                        .or_default()
                        .push(sender);
                }
            }
        }
        receiver
    }

    /// Drops waiters whose requests gave up.
    pub fn forget(&self, command_id: &str) {
        if let Ok(mut waiters) = self.inner.waiters.lock() {
            if let Some(senders) = waiters.get_mut(command_id) {
                senders.retain(|sender| !sender.is_closed());
                if senders.is_empty() {
                    waiters.remove(command_id);
                }
            }
        }
    }
}

/// Reads each partition's high watermark (retrying until the broker
/// answers for all of them) and assigns the consumer there. `None` if the
/// blocking task was lost.
async fn assign_at_ends(
    consumer: StreamConsumer,
    partitions: Vec<(String, i32)>,
) -> Option<StreamConsumer> {
    let mut consumer = consumer;
    let mut delay = Duration::from_millis(50);
    loop {
        let partitions = partitions.clone();
        let (returned, positioned) = tokio::task::spawn_blocking(move || {
            let positioned = ends_assignment(&consumer, &partitions);
            (consumer, positioned)
        })
        .await
        .ok()?;
        consumer = returned;
        match positioned.and_then(|assignment| consumer.assign(&assignment)) {
            Ok(()) => return Some(consumer),
            Err(error) => {
                tracing::warn!(%error, "cannot read the outcome topics' ends yet, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn ends_assignment(
    consumer: &StreamConsumer,
    partitions: &[(String, i32)],
) -> Result<TopicPartitionList, rdkafka::error::KafkaError> {
    let mut assignment = TopicPartitionList::new();
    for (topic, partition) in partitions {
        let (_, high) = consumer.fetch_watermarks(topic, *partition, Duration::from_secs(5))?;
        assignment.add_partition_offset(topic, *partition, Offset::Offset(high))?;
    }
    Ok(assignment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(command_id: &str) -> CommandOutcome {
        CommandOutcome {
            command_id: command_id.to_owned(),
            correlation_id: command_id.to_owned(),
            aggregate_id: "order".to_owned(),
            status: CommandOutcome::ACCEPTED.to_owned(),
            aggregate_version: 1,
            event_id: "event".to_owned(),
            event_type: "foldline.orders.OrderPlaced".to_owned(),
            event_partition: 0,
            event_offset: 0,
            rejection_code: None,
            rejection_kind: None,
            rejection_message: None,
            decided_at: 0,
        }
    }

    #[tokio::test]
    async fn a_waiter_gets_the_outcome_whether_it_came_before_or_after() {
        let outcomes = Outcomes::default();
        let early = outcomes.subscribe("a");
        outcomes.publish(outcome("a"));
        assert_eq!(early.await.unwrap().command_id, "a");
        let late = outcomes.subscribe("a");
        assert_eq!(late.await.unwrap().command_id, "a");
    }

    #[test]
    fn a_published_outcome_gives_its_slot_back() {
        let admission = Admission::new(["orders"], 1, Duration::from_secs(30));
        let outcomes = Outcomes::with_admission(admission.clone());
        admission.admit("orders", "a").unwrap();
        assert!(admission.admit("orders", "b").is_err());
        outcomes.publish(outcome("a"));
        admission.admit("orders", "b").unwrap();
    }

    #[test]
    fn forgotten_waiters_do_not_pile_up() {
        let outcomes = Outcomes::default();
        drop(outcomes.subscribe("b"));
        outcomes.forget("b");
        assert!(outcomes.inner.waiters.lock().unwrap().is_empty());
    }
}
