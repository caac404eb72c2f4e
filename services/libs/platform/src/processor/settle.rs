//! A poll round, from command records to published outcomes and stored
//! (or transactionally sent) offsets: read (poison is parked), decide every
//! partition's batch, enqueue all of them, await and verify per partition,
//! publish, settle the offsets (the loop in `design.md`). In the
//! transactional mode the round is one transaction.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use foldline_contracts::envelope::CommandOutcome;
use foldline_eventsourcing::gate::Admission;
use futures::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::assignment::{Generation, RebalanceEvents};
use super::transaction::{Finished, WriteMode};
use super::{retry, CommandDomain, CommandEnvelope, Processor, ProcessorError};
use crate::codec::{Codec, CodecError};
use crate::dlq::{Cause, Parked, Screened};
use crate::headers::{outcome_headers, record_headers};
use crate::kafka::store_next_offset;
use crate::metrics::metrics;
use crate::shutdown::Shutdown;

/// A command ready to decide, with the record that carried it (to park it
/// with its origin if its decision cannot be written).
struct PendingCommand<C> {
    message: OwnedMessage,
    envelope: CommandEnvelope,
    command: C,
}

/// One partition's commands of a poll round, received under `generation`.
pub(super) struct Batch<C> {
    partition: i32,
    generation: Generation,
    /// The command offset after the batch: what is committed once it settled.
    next_command_offset: i64,
    pending: Vec<PendingCommand<C>>,
}

/// A batch's decisions, encoded and folded at the offsets they assume.
struct Decided<'b> {
    appended: Vec<Appended>,
    /// Commands whose decision can never be encoded, with the reason.
    undecidable: Vec<(&'b OwnedMessage, String)>,
}

/// A decided record, encoded, with the offset its fold assumed.
struct Appended {
    expected_offset: i64,
    key: String,
    bytes: Vec<u8>,
    headers: OwnedHeaders,
}

/// How long the producer may queue a record before giving up on it.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

impl<D: CommandDomain> Processor<D> {
    fn producer(&self) -> &FutureProducer {
        match &self.writes {
            WriteMode::Idempotent(producer) => producer,
            WriteMode::Transactional(transactional) => &transactional.producer,
        }
    }

    /// Settles one poll round: every partition's batch is decided, and all
    /// of them are enqueued before any delivery is awaited. A batch whose
    /// appends did not land where its fold assumed (or whose transaction
    /// did not commit) is carried to the next round, after a poll (which
    /// serves a revocation: a fenced zombie learns it there) and a backoff
    /// (`Processor::resync_attempts`); the new round restores its partition
    /// from the log and decides it again. Carrying the batch is reseeking
    /// the consumer to the committed offset without a seek: nothing past
    /// the batch's first command was committed, and the consumer's position
    /// is past its last. A batch whose partition moved on is dropped (its
    /// next owner reads it from the committed offset), as is a round
    /// interrupted by shutdown.
    pub(super) async fn process_round(
        &mut self,
        consumer: &StreamConsumer<RebalanceEvents>,
        records: Vec<(i32, Vec<OwnedMessage>)>,
        shutdown: &Shutdown,
    ) -> Result<(), ProcessorError> {
        // Carried batches wait out their backoff; records that arrive for
        // their partitions meanwhile join them (they come after them).
        let due = self
            .resync_at
            .is_none_or(|at| tokio::time::Instant::now() >= at);
        let owned: Vec<Batch<D::Command>> = std::mem::take(&mut self.carried)
            .into_iter()
            .filter(|batch| self.partitions.generation(batch.partition) == Some(batch.generation))
            .collect();
        let (mut batches, mut waiting) = if due {
            self.resync_at = None;
            (owned, Vec::new())
        } else {
            (Vec::new(), owned)
        };
        for (partition, messages) in records {
            let (Some(generation), Some(last)) = (
                self.partitions.generation(partition),
                messages.last().map(Message::offset),
            ) else {
                continue;
            };
            let mut pending = Vec::with_capacity(messages.len());
            for message in messages {
                match self.read_command(message, shutdown).await? {
                    Screened::Admitted(command) => pending.push(*command),
                    Screened::Parked => {}
                    Screened::Stopped => return Ok(()),
                }
            }
            let earlier = waiting
                .iter_mut()
                .chain(batches.iter_mut())
                .find(|batch| batch.partition == partition);
            match earlier {
                // Received after the carried batch, under the same generation.
                Some(carried) => {
                    carried.pending.extend(pending);
                    carried.next_command_offset = last + 1;
                }
                None => batches.push(Batch {
                    partition,
                    generation,
                    next_command_offset: last + 1,
                    pending,
                }),
            }
        }
        self.carried = waiting;
        let mut ready = Vec::with_capacity(batches.len());
        for batch in batches {
            if self
                .partitions
                .usable(batch.partition, batch.generation)
                .is_none()
            {
                let Some(state) = self
                    .restore(batch.partition, batch.generation, shutdown)
                    .await?
                else {
                    return Ok(());
                };
                if !self
                    .partitions
                    .install(batch.partition, batch.generation, state)
                {
                    continue;
                }
            }
            ready.push(batch);
        }
        if ready.is_empty() {
            return Ok(());
        }
        let span = tracing::info_span!(
            "round",
            partitions = ?ready.iter().map(|batch| batch.partition).collect::<Vec<_>>()
        );
        let settled =
            tracing::Instrument::instrument(self.settle_round(consumer, &ready, shutdown), span)
                .await?;
        let Some(unsettled) = settled else {
            return Ok(());
        };
        if unsettled.is_empty() {
            if self.carried.is_empty() {
                self.resync_attempts = 0;
            }
            return Ok(());
        }
        // Someone else wrote to a partition (a zombie or a new owner), a
        // delivery failed or a transaction did not commit: the partition
        // state is void. The next round re-reads the log and lets it decide.
        self.carried.extend(
            ready
                .into_iter()
                .filter(|batch| unsettled.contains(&batch.partition)),
        );
        let delay = retry::delays()
            .nth(self.resync_attempts)
            .unwrap_or(Duration::from_secs(1));
        self.resync_attempts = self.resync_attempts.saturating_add(1);
        metrics()
            .resyncs
            .with_label_values(&[self.topics.events.as_str()])
            .inc();
        tracing::warn!(
            partitions = ?unsettled,
            retry_in_ms = delay.as_millis() as u64,
            "events partition moved under us, resynchronising from the log"
        );
        self.resync_at = Some(tokio::time::Instant::now() + delay);
        Ok(())
    }

    /// One attempt at settling `batches` (each restored, usable). Returns
    /// the partitions left unsettled (voided, to retry), `None` on shutdown.
    async fn settle_round(
        &mut self,
        consumer: &StreamConsumer<RebalanceEvents>,
        batches: &[Batch<D::Command>],
        shutdown: &Shutdown,
    ) -> Result<Option<Vec<i32>>, ProcessorError> {
        if let WriteMode::Transactional(transactional) = &self.writes {
            if let Err(error) = transactional.begin() {
                let finished = Finished::Fatal(format!("cannot begin a transaction: {error}"));
                return self
                    .transaction_failed(batches, finished, &[], shutdown)
                    .await;
            }
        }
        let settled = self.settle_in_round(consumer, batches, shutdown).await;
        if !matches!(settled, Ok(Some(_))) {
            // Shutdown or a permanent error with a transaction open: abort
            // it rather than leave it holding the readers back.
            self.abort_transaction("the round was interrupted".to_owned())
                .await;
        }
        settled
    }

    /// Aborts the round's transaction (nothing to do in the idempotent mode).
    async fn abort_transaction(&self, reason: String) -> Finished {
        match &self.writes {
            WriteMode::Transactional(producer) => producer.abort(reason).await,
            WriteMode::Idempotent(_) => Finished::Aborted(reason),
        }
    }

    /// Sends the offsets to the round's transaction and commits it.
    async fn commit_transaction(
        &self,
        offsets: TopicPartitionList,
        group: Option<rdkafka::consumer::ConsumerGroupMetadata>,
    ) -> Finished {
        match &self.writes {
            WriteMode::Transactional(producer) => producer.commit(offsets, group).await,
            WriteMode::Idempotent(_) => Finished::Committed,
        }
    }

    async fn settle_in_round(
        &mut self,
        consumer: &StreamConsumer<RebalanceEvents>,
        batches: &[Batch<D::Command>],
        shutdown: &Shutdown,
    ) -> Result<Option<Vec<i32>>, ProcessorError> {
        let started = Instant::now();
        let mut decided = Vec::with_capacity(batches.len());
        for batch in batches {
            match self.decide(batch, shutdown).await {
                Some(batch_decisions) => decided.push(batch_decisions),
                None => return Ok(None),
            }
        }
        // Every partition's records are queued before any delivery is
        // awaited: the round's produce requests go out together.
        let deliveries: Vec<Option<Vec<(i64, DeliveryFuture)>>> = batches
            .iter()
            .zip(&decided)
            .map(|(batch, decisions)| self.enqueue(batch.partition, &decisions.appended))
            .collect();
        let enqueued = Instant::now();
        let mut verified = Vec::with_capacity(batches.len());
        let mut written = Vec::new();
        for (batch, delivery) in batches.iter().zip(deliveries) {
            let landed = match delivery {
                Some(delivery) => verify(batch.partition, delivery, &mut written).await,
                None => false,
            };
            verified.push(landed);
        }
        let delivered = Instant::now();
        let transactional = matches!(self.writes, WriteMode::Transactional(_));
        if transactional && verified.contains(&false) {
            // The transaction holds every partition's records: none of
            // them may become visible, so every state of the round is void.
            let finished = self
                .abort_transaction("an event landed where its fold did not assume".to_owned())
                .await;
            return self
                .transaction_failed(batches, finished, &written, shutdown)
                .await;
        }

        let mut unsettled = Vec::new();
        let mut outcomes = Vec::new();
        let mut settled: Vec<(&Batch<D::Command>, u64)> = Vec::new();
        for ((batch, decisions), landed) in batches.iter().zip(decided).zip(verified) {
            if !landed {
                // Only this partition's fold is wrong: the others settle.
                self.partitions.void(batch.partition);
                unsettled.push(batch.partition);
                continue;
            }
            // Parked only once the batch is verified: a resynchronised batch
            // decides these again, and would park them twice.
            for (message, reason) in decisions.undecidable {
                let parked = self
                    .dead_letters
                    .park(message, Cause::Undecidable, &reason, shutdown)
                    .await?;
                if parked == Parked::Stopped {
                    return Ok(None);
                }
            }
            let Some(state) = self.partitions.usable(batch.partition, batch.generation) else {
                unsettled.push(batch.partition);
                continue;
            };
            outcomes.extend(
                batch
                    .pending
                    .iter()
                    .filter_map(|command| state.log.settled(&command.envelope.command_id).cloned()),
            );
            settled.push((batch, decisions.appended.len() as u64));
        }

        if !transactional {
            if self.publish_outcomes(&outcomes, shutdown).await.is_none() {
                return Ok(None);
            }
            for (batch, appended) in settled {
                self.settled(batch, appended, false).await;
                // The offset says "settled by the log we verified".
                if self
                    .partitions
                    .usable(batch.partition, batch.generation)
                    .is_some()
                {
                    if let Err(error) = store_next_offset(
                        consumer,
                        &self.topics.commands,
                        batch.partition,
                        batch.next_command_offset,
                    ) {
                        tracing::warn!(%error, partition = batch.partition, "cannot store command offset");
                    }
                }
            }
            Ok(Some(unsettled))
        } else {
            let delivered_outcomes = match self.enqueue_outcomes(&outcomes, shutdown).await {
                None => return Ok(None),
                Some(Ok(deliveries)) => outcomes_delivered(deliveries).await,
                Some(Err(reason)) => Err(reason),
            };
            if let Err(reason) = delivered_outcomes {
                let finished = self.abort_transaction(reason).await;
                return self
                    .transaction_failed(batches, finished, &written, shutdown)
                    .await;
            }
            let outcomes_delivered_at = Instant::now();
            let mut offsets = TopicPartitionList::new();
            for (batch, _) in &settled {
                offsets
                    .add_partition_offset(
                        &self.topics.commands,
                        batch.partition,
                        Offset::Offset(batch.next_command_offset),
                    )
                    .map_err(ProcessorError::Kafka)?;
            }
            match self
                .commit_transaction(offsets, consumer.group_metadata())
                .await
            {
                Finished::Committed => {
                    let committed = Instant::now();
                    // Where a round's time goes (benches/results/*transactions*).
                    tracing::debug!(
                        commands = batches
                            .iter()
                            .map(|batch| batch.pending.len())
                            .sum::<usize>(),
                        outcomes = outcomes.len(),
                        decide_us = micros(enqueued - started),
                        deliver_us = micros(delivered - enqueued),
                        outcomes_us = micros(outcomes_delivered_at - delivered),
                        commit_us = micros(committed - outcomes_delivered_at),
                        "transaction committed"
                    );
                    for (batch, appended) in settled {
                        self.settled(batch, appended, true).await;
                    }
                    Ok(Some(unsettled))
                }
                failed => {
                    self.transaction_failed(batches, failed, &written, shutdown)
                        .await
                }
            }
        }
    }

    /// After a batch settled: count its decisions and snapshot when due
    /// (in the transactional mode only once committed: a snapshot must
    /// never hold an aborted record). `committed_marker`: a transaction
    /// that wrote to the partition ended with a marker record there.
    async fn settled(&mut self, batch: &Batch<D::Command>, appended: u64, committed_marker: bool) {
        if let Some(state) = self.partitions.usable(batch.partition, batch.generation) {
            state.settled_since_snapshot += appended;
            state.marker_pending = committed_marker && appended > 0;
        }
        self.maybe_snapshot(batch.partition, batch.generation).await;
    }

    /// A transaction that did not commit: every partition of the round is
    /// void (its fold holds records that are not in the log); a fatal error
    /// means a new producer (`init_transactions` again, which also fences
    /// whatever is left of the old one). `written`: where the round's events
    /// landed, now aborted (logged: operators and the fault tests check that
    /// no reader ever sees them). Returns every partition as unsettled,
    /// `None` on shutdown.
    async fn transaction_failed(
        &mut self,
        batches: &[Batch<D::Command>],
        finished: Finished,
        written: &[(i32, i64)],
        shutdown: &Shutdown,
    ) -> Result<Option<Vec<i32>>, ProcessorError> {
        for batch in batches {
            self.partitions.void(batch.partition);
        }
        let written = written
            .iter()
            .map(|(partition, offset)| format!("{partition}:{offset}"))
            .collect::<Vec<_>>()
            .join(",");
        match finished {
            Finished::Committed => {}
            Finished::Aborted(reason) => {
                metrics()
                    .transactions_failed
                    .with_label_values(&[self.topics.events.as_str(), "aborted"])
                    .inc();
                tracing::warn!(%reason, %written, "transaction aborted");
            }
            Finished::Fatal(reason) => {
                metrics()
                    .transactions_failed
                    .with_label_values(&[self.topics.events.as_str(), "renewed"])
                    .inc();
                tracing::warn!(%reason, %written, "transactional producer unusable, making a new one (which aborts its open transaction)");
                if let WriteMode::Transactional(producer) = &mut self.writes {
                    match producer.renew(shutdown).await {
                        Ok(Some(())) => {}
                        Ok(None) => return Ok(None),
                        Err(error) => return Err(ProcessorError::Transactions(error.to_string())),
                    }
                }
            }
        }
        Ok(Some(batches.iter().map(|batch| batch.partition).collect()))
    }

    /// Reads one command record; poison goes to the dead-letter topic.
    async fn read_command(
        &self,
        message: OwnedMessage,
        shutdown: &Shutdown,
    ) -> Result<Screened<Box<PendingCommand<D::Command>>>, ProcessorError> {
        let screened = self
            .dead_letters
            .screen(
                &self.codec,
                &message,
                "command",
                |decoded| self.domain.parse_command(decoded),
                shutdown,
            )
            .await?;
        let command = match screened {
            Screened::Admitted(command) => command,
            Screened::Parked => return Ok(Screened::Parked),
            Screened::Stopped => return Ok(Screened::Stopped),
        };
        let envelope = self.domain.command_envelope(&command);
        // Co-partitioning is what makes a partition's log a complete history
        // of its aggregates; a command keyed elsewhere would break it.
        if message.key() != Some(envelope.aggregate_id.as_bytes()) {
            let reason = "command key is not its aggregate id";
            return Ok(self.dead_letters.reject(&message, reason, shutdown).await?);
        }
        Ok(Screened::Admitted(Box::new(PendingCommand {
            message,
            envelope,
            command,
        })))
    }

    /// Decides a batch's commands not settled yet against its partition
    /// state, folding each encoded decision at the offset it assumes (the
    /// end of the log as last read, plus one per record; past the marker
    /// of our last committed transaction there). `None` on shutdown, or
    /// when the state is gone (it never is: the caller checked).
    async fn decide<'b>(
        &mut self,
        batch: &'b Batch<D::Command>,
        shutdown: &Shutdown,
    ) -> Option<Decided<'b>> {
        let state = self.partitions.usable(batch.partition, batch.generation)?;
        let mut decided = Decided {
            appended: Vec::new(),
            undecidable: Vec::new(),
        };
        let mut decided_here: HashSet<&str> = HashSet::new();
        for PendingCommand {
            message,
            envelope,
            command,
        } in &batch.pending
        {
            if state.log.settled(&envelope.command_id).is_some()
                || decided_here.contains(envelope.command_id.as_str())
            {
                metrics()
                    .commands_already_settled
                    .with_label_values(&[self.topics.commands.as_str()])
                    .inc();
                continue;
            }
            let slot = state.log.aggregate(&envelope.aggregate_id);
            let record = self.domain.decide(&slot.state, slot.version, command);
            let encoded = encode_decision(
                self.domain.as_ref(),
                &self.codec,
                &self.topics.events,
                &record,
                shutdown,
            )
            .await?;
            let bytes = match encoded {
                Ok(bytes) => bytes,
                Err(reason) => {
                    // Folded only once encoded: a decision that cannot be
                    // written must never enter the state.
                    decided.undecidable.push((message, reason));
                    continue;
                }
            };
            // Our previous transaction's commit marker takes one offset.
            let expected_offset =
                state.log.next_offset + i64::from(std::mem::take(&mut state.marker_pending));
            let admission = state
                .log
                .fold(self.domain.as_ref(), &record, expected_offset);
            debug_assert_eq!(
                admission,
                Admission::Apply,
                "a fresh decision always passes the gate"
            );
            let record_name = self.domain.record_name(&record);
            let metadata = self.domain.record_metadata(&record);
            decided_here.insert(envelope.command_id.as_str());
            metrics()
                .decisions_appended
                .with_label_values(&[self.topics.events.as_str()])
                .inc();
            decided.appended.push(Appended {
                expected_offset,
                key: envelope.aggregate_id.clone(),
                bytes,
                headers: record_headers(metadata, record_name, envelope.traceparent.as_deref()),
            });
        }
        Some(decided)
    }

    /// Enqueues a batch's records to `D.events[partition]`, in order
    /// (librdkafka keeps per-partition order with the idempotent producer);
    /// `None` when one cannot be enqueued (the batch cannot be verified).
    fn enqueue(&self, partition: i32, appended: &[Appended]) -> Option<Vec<(i64, DeliveryFuture)>> {
        let mut deliveries = Vec::with_capacity(appended.len());
        for record in appended {
            let message = FutureRecord::to(&self.topics.events)
                .partition(partition)
                .key(record.key.as_str())
                .payload(record.bytes.as_slice())
                .headers(record.headers.clone());
            match self.producer().send_result(message) {
                Ok(delivery) => deliveries.push((record.expected_offset, delivery)),
                Err((error, _)) => {
                    tracing::warn!(%error, partition, "cannot enqueue event");
                    return None;
                }
            }
        }
        Some(deliveries)
    }

    /// Encodes and enqueues every outcome into the open transaction,
    /// returning their deliveries (a failed one means the transaction must
    /// abort). `None` on shutdown; `Some(Err)` when one cannot be enqueued
    /// (the transaction must abort). An outcome that can never be encoded
    /// is logged and left out, as in the idempotent mode.
    async fn enqueue_outcomes(
        &self,
        outcomes: &[CommandOutcome],
        shutdown: &Shutdown,
    ) -> Option<Result<Vec<DeliveryFuture>, String>> {
        let mut deliveries = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            let Some(bytes) = self.encode_outcome(outcome, shutdown).await? else {
                continue;
            };
            let record = FutureRecord::to(&self.topics.outcomes)
                .key(outcome.command_id.as_str())
                .payload(bytes.as_slice())
                .headers(outcome_headers(outcome));
            match self.producer().send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((error, _)) => {
                    return Some(Err(format!("cannot enqueue command outcome: {error}")))
                }
            }
        }
        Some(Ok(deliveries))
    }

    /// `Some(None)`: the outcome can never be encoded (logged); `None`: shutdown.
    async fn encode_outcome(
        &self,
        outcome: &CommandOutcome,
        shutdown: &Shutdown,
    ) -> Option<Option<Vec<u8>>> {
        let encoded = retry::until_settled(
            "encode outcome",
            shutdown,
            || {
                self.codec
                    .encode(&self.topics.outcomes, CommandOutcome::RECORD_NAME, outcome)
            },
            CodecError::is_transient,
        )
        .await?;
        match encoded {
            Ok(bytes) => Some(Some(bytes)),
            Err(error) => {
                tracing::error!(%error, command_id = %outcome.command_id, "cannot encode command outcome");
                Some(None)
            }
        }
    }

    /// Publishes every outcome; `None` when shutdown came first. An outcome
    /// that can never be encoded or is refused by the broker is logged and
    /// left out: the command is settled in the log regardless, and the
    /// client learns its outcome from the projection instead.
    async fn publish_outcomes(
        &self,
        outcomes: &[CommandOutcome],
        shutdown: &Shutdown,
    ) -> Option<()> {
        let published =
            futures::future::join_all(outcomes.iter().map(|outcome| async move {
                let Some(bytes) = self.encode_outcome(outcome, shutdown).await? else {
                    return Some(());
                };
                let headers = outcome_headers(outcome);
                let sent = retry::until_settled(
                    "publish outcome",
                    shutdown,
                    || {
                        let record = FutureRecord::to(&self.topics.outcomes)
                            .key(outcome.command_id.as_str())
                            .payload(bytes.as_slice())
                            .headers(headers.clone());
                        self.producer()
                            .send(record, SEND_TIMEOUT)
                            .map(|sent| sent.map_err(|(error, _)| error))
                    },
                    retry::produce_is_transient,
                )
                .await?;
                if let Err(error) = sent {
                    tracing::error!(%error, command_id = %outcome.command_id, "the broker refuses the command outcome");
                }
                Some(())
            }))
            .await;
        published.into_iter().collect()
    }
}

/// Awaits the outcomes' deliveries before the commit is asked for, rather
/// than leaving them to the commit: rust-rdkafka's `commit_transaction`
/// flushes first, and its flush, finding records in flight, waits in a poll
/// of up to 100 ms of its own while the producer's thread serves their
/// delivery reports, so every round paid a fixed 100 ms (design.md,
/// *Transactional mode*). `Err` (the reason to abort) when one failed: the
/// commit would fail with it anyway.
async fn outcomes_delivered(deliveries: Vec<DeliveryFuture>) -> Result<(), String> {
    for delivery in futures::future::join_all(deliveries).await {
        match delivery {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => {
                return Err(format!("a command outcome was not delivered: {error}"))
            }
            Err(_) => return Err("a command outcome's delivery was cancelled".to_owned()),
        }
    }
    Ok(())
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

/// Awaits a batch's deliveries and reports whether every record landed
/// exactly where its fold assumed: then no foreign write interleaved and
/// our decisions are the log's (rule 4). Pushes where each landed to
/// `landed`.
async fn verify(
    partition: i32,
    deliveries: Vec<(i64, DeliveryFuture)>,
    landed: &mut Vec<(i32, i64)>,
) -> bool {
    let mut verified = true;
    for (expected_offset, delivery) in deliveries {
        match delivery.await {
            Ok(Ok(delivery))
                if delivery.offset == expected_offset && delivery.partition == partition =>
            {
                landed.push((partition, delivery.offset));
            }
            Ok(Ok(delivery)) => {
                landed.push((delivery.partition, delivery.offset));
                tracing::warn!(
                    partition,
                    expected_offset,
                    landed = delivery.offset,
                    "event landed after a foreign write"
                );
                verified = false;
            }
            Ok(Err((error, _))) => {
                tracing::warn!(%error, partition, "event delivery failed");
                verified = false;
            }
            Err(_) => verified = false,
        }
    }
    verified
}

/// Encodes a decided record; `Err` (a reason) when it can never be encoded:
/// the domain cannot map it, its record is not in the contracts, or it does
/// not fit its schema. A registry outage is retried; `None` on shutdown.
async fn encode_decision<D: CommandDomain>(
    domain: &D,
    codec: &Codec,
    topic: &str,
    record: &D::Record,
    shutdown: &Shutdown,
) -> Option<Result<Vec<u8>, String>> {
    let record_name = domain.record_name(record);
    let value = match domain.record_to_avro(record) {
        Ok(value) => value,
        Err(reason) => {
            return Some(Err(format!(
                "the decided {record_name} does not map to avro: {reason}"
            )))
        }
    };
    let encoded = retry::until_settled(
        "encode event",
        shutdown,
        || codec.encode_value(topic, record_name, value.clone()),
        CodecError::is_transient,
    )
    .await?;
    Some(encoded.map_err(|error| format!("the decided {record_name} cannot be encoded: {error}")))
}
