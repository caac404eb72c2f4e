//! Which partitions a member owns, and what it may do with them.
//!
//! librdkafka's rebalance callbacks become typed [`RebalanceEvent`]s on a
//! channel; the loop that polls the consumer applies them. Callbacks run
//! only inside that loop's own poll (rust-rdkafka serves them when the
//! consumer queue is polled, and a poll that serves one returns no
//! record), so the loop's view of the assignment is exact whenever it looks
//! at a record: there is nothing to lock and nothing can change between a
//! check and the use that follows it.

use std::collections::HashMap;
use std::future::Future;

use futures::FutureExt;
use rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::OwnedMessage;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};

use super::log::PartitionLog;
use super::ProcessorError;
use crate::kafka::{close_off_the_runtime, commit_stored_offsets};
use crate::shutdown::Shutdown;

/// A change of the partitions this member owns, as librdkafka reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RebalanceEvent {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// Where a newly assigned partition starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StartAt {
    /// The group's committed offset (else `auto.offset.reset`), assigned
    /// by the callback itself.
    Committed,
    /// Wherever the receiver of [`RebalanceEvent::Assigned`] says: the
    /// callback assigns nothing, the receiver calls [`assign_at`] (the
    /// group waits in "assign call pending" meanwhile, heartbeating).
    Chosen,
}

/// A consumer context sending rebalances to the loop that polls.
#[derive(Debug)]
pub(crate) struct RebalanceEvents {
    topic: String,
    start_at: StartAt,
    sender: mpsc::UnboundedSender<RebalanceEvent>,
}

impl RebalanceEvents {
    pub(crate) fn new(
        topic: String,
        start_at: StartAt,
    ) -> (RebalanceEvents, mpsc::UnboundedReceiver<RebalanceEvent>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (
            RebalanceEvents {
                topic,
                start_at,
                sender,
            },
            receiver,
        )
    }

    fn send(&self, event: RebalanceEvent) {
        // Operators and the fault tests follow ownership by these lines.
        match &event {
            RebalanceEvent::Assigned(assigned) => {
                tracing::info!(topic = %self.topic, ?assigned, "partitions assigned");
            }
            RebalanceEvent::Revoked(revoked) => {
                tracing::info!(topic = %self.topic, ?revoked, "partitions revoked");
            }
        }
        // The receiver is the polling loop: it outlives the consumer.
        let _ = self.sender.send(event);
    }
}

impl ClientContext for RebalanceEvents {}

impl ConsumerContext for RebalanceEvents {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let numbers = partition_numbers(partitions, &self.topic);
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let assigned = match self.start_at {
                    StartAt::Committed => assign(consumer, partitions),
                    StartAt::Chosen => Ok(()),
                };
                self.send(RebalanceEvent::Assigned(numbers));
                assigned
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Sent before unassigning, though the order cannot matter:
                // the loop reads the event only after this poll returns.
                self.send(RebalanceEvent::Revoked(numbers));
                match consumer.rebalance_protocol() {
                    RebalanceProtocol::Cooperative => consumer.incremental_unassign(partitions),
                    _ => consumer.unassign(),
                }
            }
            other => {
                // librdkafka's contract for a failed rebalance: drop the
                // whole assignment to resynchronise with the group.
                tracing::warn!(topic = %self.topic, error = ?other, "rebalance failed, dropping the assignment");
                let owned = consumer
                    .assignment()
                    .map(|owned| partition_numbers(&owned, &self.topic))
                    .unwrap_or_default();
                self.send(RebalanceEvent::Revoked(owned));
                consumer.unassign()
            }
        };
        if let Err(error) = result {
            tracing::warn!(%error, topic = %self.topic, "cannot apply the rebalance");
        }
    }
}

fn assign<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    partitions: &TopicPartitionList,
) -> KafkaResult<()> {
    match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => consumer.incremental_assign(partitions),
        _ => consumer.assign(partitions),
    }
}

/// Assigns `starts` (partition → where to start) of `topic`, answering an
/// [`RebalanceEvent::Assigned`] of a [`StartAt::Chosen`] context.
pub(crate) fn assign_at<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    starts: &[(i32, Offset)],
) -> KafkaResult<()> {
    let mut partitions = TopicPartitionList::new();
    for (partition, offset) in starts {
        partitions.add_partition_offset(topic, *partition, *offset)?;
    }
    assign(consumer, &partitions)
}

/// What one poll round brought: the rebalances librdkafka reported during
/// it, in order, and the records received, by partition in arrival order.
#[derive(Debug, Default)]
pub(crate) struct Polled {
    pub(crate) rebalances: Vec<RebalanceEvent>,
    pub(crate) records: Vec<(i32, Vec<OwnedMessage>)>,
    /// The broker refused the consumer (a topic, group or cluster
    /// authorization failure): permanent, ends the loop.
    pub(crate) refused: Option<KafkaError>,
    len: usize,
}

impl Polled {
    fn push(&mut self, message: OwnedMessage) {
        self.len += 1;
        let partition = message.partition();
        match self
            .records
            .iter_mut()
            .find(|(number, _)| *number == partition)
        {
            Some((_, messages)) => messages.push(message),
            None => self.records.push((partition, vec![message])),
        }
    }

    /// Takes the rebalances reported so far. The records already gathered
    /// for a partition they move were received under an assignment that no
    /// longer holds: dropped, never processed or committed by us (the
    /// partition's next owner reads them again).
    fn drain(&mut self, rebalances: &mut mpsc::UnboundedReceiver<RebalanceEvent>) {
        while let Ok(event) = rebalances.try_recv() {
            let (RebalanceEvent::Assigned(moved) | RebalanceEvent::Revoked(moved)) = &event;
            self.records
                .retain(|(partition, _)| !moved.contains(partition));
            self.rebalances.push(event);
        }
        self.len = self
            .records
            .iter()
            .map(|(_, messages)| messages.len())
            .sum();
    }
}

/// One poll round: waits for a record or a rebalance (`None` on shutdown),
/// then takes the records already queued, up to `max`. A rebalance ends the
/// round, so its receiver acts on it before polling again (a
/// [`StartAt::Chosen`] assignment exists only once the receiver assigns).
pub(crate) async fn poll(
    consumer: &StreamConsumer<RebalanceEvents>,
    rebalances: &mut mpsc::UnboundedReceiver<RebalanceEvent>,
    max: usize,
    shutdown: &Shutdown,
) -> Option<Polled> {
    let mut polled = Polled::default();
    let first = tokio::select! {
        biased;
        () = shutdown.clone().wait() => return None,
        Some(event) = rebalances.recv() => {
            polled.rebalances.push(event);
            polled.drain(rebalances);
            return Some(polled);
        }
        received = consumer.recv() => received.map(|message| message.detach()),
    };
    // A poll that serves a rebalance callback returns no record: a record
    // comes from a later poll, so it belongs to the assignment the
    // rebalances drained before it made. Drain first, then keep it.
    polled.drain(rebalances);
    match first {
        Ok(message) => polled.push(message),
        Err(error) if is_refusal(&error) => {
            polled.refused = Some(error);
            return Some(polled);
        }
        Err(error) => {
            tracing::warn!(%error, "consumer error");
            return Some(polled);
        }
    }
    while polled.len < max && polled.rebalances.is_empty() {
        let next = consumer.recv().now_or_never();
        polled.drain(rebalances);
        match next {
            Some(Ok(message)) => polled.push(message.detach()),
            // Nothing queued, or the poll served a rebalance.
            None => break,
            Some(Err(error)) if is_refusal(&error) => {
                polled.refused = Some(error);
                break;
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "consumer error");
                break;
            }
        }
    }
    Some(polled)
}

/// Whether a consumer error is the broker's authorizer saying no.
pub(crate) fn is_refusal(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
        )
    )
}

/// Commits the stored offsets and leaves the group, off the async workers
/// (`kafka::close_off_the_runtime`), dropping `rest` there too (other
/// clients whose drop blocks). Logs in the caller's span: the group leave
/// can still serve a revocation.
pub(crate) async fn close(
    consumer: StreamConsumer<RebalanceEvents>,
    what: &'static str,
    rest: impl Send + 'static,
) {
    let span = tracing::Span::current();
    close_off_the_runtime(move || {
        let _entered = span.enter();
        commit_stored_offsets(&consumer, what);
        drop(consumer);
        drop(rest);
    })
    .await;
}

fn partition_numbers(partitions: &TopicPartitionList, topic: &str) -> Vec<i32> {
    partitions
        .elements_for_topic(topic)
        .iter()
        .map(|element| element.partition())
        .collect()
}

/// One assignment of one partition to this member. A record received
/// under one generation is never processed or committed under another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Generation(u64);

/// A partition's fold and what the loop keeps beside it.
#[derive(Debug)]
pub(super) struct PartitionState<S> {
    pub(super) log: PartitionLog<S>,
    pub(super) settled_since_snapshot: u64,
    /// Our last committed transaction wrote to the partition, so its
    /// commit marker takes the offset after the fold's end (the
    /// transactional mode; `settle.rs`).
    pub(super) marker_pending: bool,
}

/// A restore running on a task of its own, started for one generation of
/// one partition. Dropping it (the partition revoked or assigned anew)
/// aborts the task: its result is never seen.
#[derive(Debug)]
pub(super) struct Restoring<S>(JoinHandle<Result<Option<PartitionState<S>>, ProcessorError>>);

impl<S: Send + 'static> Restoring<S> {
    pub(super) fn spawn(
        restore: impl Future<Output = Result<Option<PartitionState<S>>, ProcessorError>>
            + Send
            + 'static,
    ) -> Restoring<S> {
        Restoring(tokio::spawn(restore))
    }

    /// Waits for the restore's result; `Err` if its task panicked.
    pub(super) async fn join(
        mut self,
    ) -> Result<Result<Option<PartitionState<S>>, ProcessorError>, JoinError> {
        (&mut self.0).await
    }
}

impl<S> Drop for Restoring<S> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug)]
struct Owned<S> {
    generation: Generation,
    /// `None` until restored, and again once voided.
    state: Option<PartitionState<S>>,
    /// The restore started for this generation, until the loop takes it.
    restoring: Option<Restoring<S>>,
}

/// The partitions this member owns and, for each, its state if it has one
/// it may use.
#[derive(Debug)]
pub(super) struct Partitions<S> {
    owned: HashMap<i32, Owned<S>>,
    next_generation: u64,
}

impl<S> Default for Partitions<S> {
    fn default() -> Self {
        Self {
            owned: HashMap::new(),
            next_generation: 1,
        }
    }
}

impl<S> Partitions<S> {
    /// Applies a rebalance: a new assignment starts a new generation with no
    /// state; a revoked partition's state is dropped at once (the next owner
    /// restores its own from the log, and so would we if it came back), and
    /// so is a restore still running for it, aborted unseen.
    pub(super) fn apply(&mut self, event: &RebalanceEvent) {
        match event {
            RebalanceEvent::Assigned(partitions) => {
                for partition in partitions {
                    let generation = Generation(self.next_generation);
                    self.next_generation += 1;
                    self.owned.insert(
                        *partition,
                        Owned {
                            generation,
                            state: None,
                            restoring: None,
                        },
                    );
                }
            }
            RebalanceEvent::Revoked(partitions) => {
                for partition in partitions {
                    self.owned.remove(partition);
                }
            }
        }
    }

    /// The generation `partition` is owned under, if it is owned.
    pub(super) fn generation(&self, partition: i32) -> Option<Generation> {
        self.owned.get(&partition).map(|owned| owned.generation)
    }

    /// **The** rule for using a partition's state: only while the partition
    /// is still owned under the generation the batch was received in, and
    /// only if every append since the state was restored landed where its
    /// fold assumed (a failed verification voids the state, see
    /// [`Partitions::void`]). Everything the loop does with a partition's
    /// state — deciding, settling, storing the command offset — goes
    /// through here.
    pub(super) fn usable(
        &mut self,
        partition: i32,
        generation: Generation,
    ) -> Option<&mut PartitionState<S>> {
        self.owned
            .get_mut(&partition)
            .filter(|owned| owned.generation == generation)
            .and_then(|owned| owned.state.as_mut())
    }

    /// Installs a freshly restored state; refused (and dropped) when the
    /// partition moved on while it was being restored.
    pub(super) fn install(
        &mut self,
        partition: i32,
        generation: Generation,
        state: PartitionState<S>,
    ) -> bool {
        match self.owned.get_mut(&partition) {
            Some(owned) if owned.generation == generation => {
                owned.state = Some(state);
                true
            }
            _ => false,
        }
    }

    /// Keeps the restore started for `generation` of `partition` until the
    /// loop needs the state; dropped (aborted) if the partition moved on.
    pub(super) fn restoring(
        &mut self,
        partition: i32,
        generation: Generation,
        restoring: Restoring<S>,
    ) {
        if let Some(owned) = self.owned.get_mut(&partition) {
            if owned.generation == generation {
                owned.restoring = Some(restoring);
            }
        }
    }

    /// The restore started for `generation` of `partition`, if one is
    /// pending: only the generation it was started for can take it.
    pub(super) fn take_restoring(
        &mut self,
        partition: i32,
        generation: Generation,
    ) -> Option<Restoring<S>> {
        self.owned
            .get_mut(&partition)
            .filter(|owned| owned.generation == generation)
            .and_then(|owned| owned.restoring.take())
    }

    /// Forgets the state of `partition`: it no longer is the log's fold.
    pub(super) fn void(&mut self, partition: i32) {
        if let Some(owned) = self.owned.get_mut(&partition) {
            owned.state = None;
        }
    }

    #[cfg(test)]
    fn holds_state(&self, partition: i32) -> bool {
        self.owned
            .get(&partition)
            .is_some_and(|owned| owned.state.is_some())
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Timestamp;

    use super::*;

    fn record(partition: i32, offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            None,
            None,
            "commands".to_owned(),
            Timestamp::NotAvailable,
            partition,
            offset,
            None,
        )
    }

    fn offsets(polled: &Polled) -> Vec<(i32, Vec<i64>)> {
        polled
            .records
            .iter()
            .map(|(partition, messages)| {
                (*partition, messages.iter().map(Message::offset).collect())
            })
            .collect()
    }

    #[test]
    fn records_gathered_before_a_revocation_are_dropped() {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let mut polled = Polled::default();
        polled.push(record(0, 10));
        polled.push(record(1, 20));
        polled.push(record(0, 11));
        polled.drain(&mut receiver);
        assert_eq!(offsets(&polled), vec![(0, vec![10, 11]), (1, vec![20])]);

        // Partition 0 moves (eager: revoked, then assigned again) while the
        // batch is gathered; what came after is from the new assignment.
        sender.send(RebalanceEvent::Revoked(vec![0, 1])).unwrap();
        sender.send(RebalanceEvent::Assigned(vec![1])).unwrap();
        polled.drain(&mut receiver);
        polled.push(record(1, 15));
        assert_eq!(offsets(&polled), vec![(1, vec![15])]);
        assert_eq!(polled.len, 1);
        assert_eq!(
            polled.rebalances,
            vec![
                RebalanceEvent::Revoked(vec![0, 1]),
                RebalanceEvent::Assigned(vec![1])
            ]
        );
    }

    fn state() -> PartitionState<u64> {
        PartitionState {
            log: PartitionLog::empty(0),
            settled_since_snapshot: 0,
            marker_pending: false,
        }
    }

    #[test]
    fn state_is_usable_only_under_its_generation() {
        let mut partitions = Partitions::<u64>::default();
        partitions.apply(&RebalanceEvent::Assigned(vec![0, 1]));
        let first = partitions.generation(0).unwrap();
        assert!(partitions.usable(0, first).is_none(), "not restored yet");
        assert!(partitions.install(0, first, state()));
        assert!(partitions.usable(0, first).is_some());

        // Revoked and assigned again: a new generation, no state.
        partitions.apply(&RebalanceEvent::Revoked(vec![0, 1]));
        assert!(!partitions.holds_state(0), "revocation drops the state");
        assert!(partitions.usable(0, first).is_none());
        partitions.apply(&RebalanceEvent::Assigned(vec![0]));
        let second = partitions.generation(0).unwrap();
        assert_ne!(first, second);
        assert!(partitions.usable(0, first).is_none());
        assert!(
            !partitions.install(0, first, state()),
            "a stale restore is refused"
        );
        assert!(partitions.usable(0, second).is_none());
        assert!(partitions.generation(1).is_none());
    }

    /// A restore that runs until aborted, and tells when it is dropped.
    fn endless_restore() -> (Restoring<u64>, tokio::sync::oneshot::Receiver<()>) {
        let (dropped, watch) = tokio::sync::oneshot::channel::<()>();
        let restoring = Restoring::spawn(async move {
            let _dropped = dropped;
            std::future::pending::<()>().await;
            Ok(Some(state()))
        });
        (restoring, watch)
    }

    #[tokio::test]
    async fn a_revocation_while_a_restore_is_in_flight_aborts_it_unseen() {
        let mut partitions = Partitions::<u64>::default();
        partitions.apply(&RebalanceEvent::Assigned(vec![0]));
        let first = partitions.generation(0).unwrap();
        let (restoring, aborted) = endless_restore();
        partitions.restoring(0, first, restoring);

        partitions.apply(&RebalanceEvent::Revoked(vec![0]));
        aborted.await.expect_err("the restore's task is aborted");
        partitions.apply(&RebalanceEvent::Assigned(vec![0]));
        let second = partitions.generation(0).unwrap();
        assert!(
            partitions.take_restoring(0, second).is_none(),
            "a new generation never sees the old generation's restore"
        );
        assert!(partitions.take_restoring(0, first).is_none());
    }

    #[tokio::test]
    async fn a_restore_for_a_stale_generation_is_never_kept() {
        let mut partitions = Partitions::<u64>::default();
        partitions.apply(&RebalanceEvent::Assigned(vec![0]));
        let first = partitions.generation(0).unwrap();
        // Assigned again in the same round (cooperative re-assignment).
        partitions.apply(&RebalanceEvent::Assigned(vec![0]));
        let second = partitions.generation(0).unwrap();
        let (restoring, aborted) = endless_restore();
        partitions.restoring(0, first, restoring);
        aborted
            .await
            .expect_err("a stale generation's restore is dropped");
        assert!(partitions.take_restoring(0, second).is_none());
    }

    #[tokio::test]
    async fn an_eager_restore_is_taken_once_by_its_generation() {
        let mut partitions = Partitions::<u64>::default();
        partitions.apply(&RebalanceEvent::Assigned(vec![2, 5]));
        let generation = partitions.generation(2).unwrap();
        partitions.restoring(2, generation, Restoring::spawn(async { Ok(Some(state())) }));
        let restoring = partitions.take_restoring(2, generation).expect("pending");
        let restored = restoring.join().await.unwrap().unwrap().unwrap();
        assert!(partitions.install(2, generation, restored));
        assert!(partitions.usable(2, generation).is_some());
        assert!(
            partitions.take_restoring(2, generation).is_none(),
            "taken once"
        );
        let other = partitions.generation(5).unwrap();
        assert!(
            partitions.take_restoring(5, other).is_none(),
            "none started"
        );
    }

    #[test]
    fn a_voided_state_is_unusable_until_restored() {
        let mut partitions = Partitions::<u64>::default();
        partitions.apply(&RebalanceEvent::Assigned(vec![3]));
        let generation = partitions.generation(3).unwrap();
        assert!(partitions.install(3, generation, state()));
        partitions.void(3);
        assert!(partitions.usable(3, generation).is_none());
        assert_eq!(partitions.generation(3), Some(generation), "still owned");
        assert!(partitions.install(3, generation, state()));
        assert!(partitions.usable(3, generation).is_some());
    }

    #[test]
    fn only_the_authorizers_refusals_end_the_loop() {
        for refused in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::GroupAuthorizationFailed,
            RDKafkaErrorCode::ClusterAuthorizationFailed,
        ] {
            assert!(is_refusal(&KafkaError::MessageConsumption(refused)));
        }
        for passing in [
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ] {
            assert!(!is_refusal(&KafkaError::MessageConsumption(passing)));
        }
    }
}
