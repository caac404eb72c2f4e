//! One partition's batch, from command records to published outcomes:
//! read (poison is parked), decide, append and verify, publish (steps 1–4
//! of the loop in `design.md`).

use std::collections::HashSet;
use std::time::Duration;

use foldline_contracts::envelope::CommandOutcome;
use foldline_eventsourcing::gate::Admission;
use futures::FutureExt;
use rdkafka::message::{OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;

use super::assignment::Generation;
use super::{retry, CommandDomain, CommandEnvelope, Processor, ProcessorError};
use crate::codec::{Codec, CodecError};
use crate::dlq::{Cause, Parked, Screened};
use crate::headers::{outcome_headers, record_headers};
use crate::shutdown::Shutdown;

/// A command ready to decide, with the record that carried it (to park it
/// with its origin if its decision cannot be written).
struct PendingCommand<C> {
    message: OwnedMessage,
    envelope: CommandEnvelope,
    command: C,
}

/// Whether a batch is done with, so its offsets may be stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Processed {
    Done,
    /// Not done with: its commands must be read again by whoever owns the
    /// partition next.
    Interrupted,
}

enum Settlement {
    Done,
    Stopped,
    /// A foreign write interleaved or a delivery failed: the partition
    /// state is not the log's fold any more.
    LogMovedUnderUs,
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
    /// Decodes, decides, appends and settles one partition's commands,
    /// received under `generation`.
    pub(super) async fn process(
        &mut self,
        partition: i32,
        generation: Generation,
        messages: Vec<OwnedMessage>,
        shutdown: &Shutdown,
    ) -> Result<Processed, ProcessorError> {
        let mut pending = Vec::with_capacity(messages.len());
        for message in messages {
            match self.read_command(message, shutdown).await? {
                Screened::Admitted(command) => pending.push(*command),
                Screened::Parked => {}
                Screened::Stopped => return Ok(Processed::Interrupted),
            }
        }
        let mut delays = retry::delays();
        loop {
            if self.partitions.usable(partition, generation).is_none() {
                let Some(state) = self.restore(partition, generation, shutdown).await? else {
                    return Ok(Processed::Interrupted);
                };
                if !self.partitions.install(partition, generation, state) {
                    return Ok(Processed::Interrupted);
                }
            }
            match self
                .settle(partition, generation, &pending, shutdown)
                .await?
            {
                Settlement::Done => return Ok(Processed::Done),
                Settlement::Stopped => return Ok(Processed::Interrupted),
                Settlement::LogMovedUnderUs => {
                    // Someone else wrote to the partition (a zombie or a new
                    // owner), or a delivery failed: our speculative state is
                    // void. Re-read the log and let it decide.
                    self.partitions.void(partition);
                    let delay = delays.next().unwrap_or(Duration::from_secs(1));
                    tracing::warn!(
                        retry_in_ms = delay.as_millis() as u64,
                        "events partition moved under us, resynchronising from the log"
                    );
                    tokio::select! {
                        () = shutdown.clone().wait() => return Ok(Processed::Interrupted),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
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

    async fn settle(
        &mut self,
        partition: i32,
        generation: Generation,
        pending: &[PendingCommand<D::Command>],
        shutdown: &Shutdown,
    ) -> Result<Settlement, ProcessorError> {
        let Some(state) = self.partitions.usable(partition, generation) else {
            return Ok(Settlement::LogMovedUnderUs);
        };
        let mut appended: Vec<Appended> = Vec::new();
        let mut undecidable: Vec<(&OwnedMessage, String)> = Vec::new();
        let mut decided_here: HashSet<&str> = HashSet::new();
        for PendingCommand {
            message,
            envelope,
            command,
        } in pending
        {
            if state.log.settled(&envelope.command_id).is_some()
                || decided_here.contains(envelope.command_id.as_str())
            {
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
            .await;
            let bytes = match encoded {
                None => return Ok(Settlement::Stopped),
                Some(Ok(bytes)) => bytes,
                Some(Err(reason)) => {
                    // Folded only once encoded: a decision that cannot be
                    // written must never enter the state.
                    undecidable.push((message, reason));
                    continue;
                }
            };
            let expected_offset = state.log.next_offset;
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
            appended.push(Appended {
                expected_offset,
                key: envelope.aggregate_id.clone(),
                bytes,
                headers: record_headers(metadata, record_name, envelope.traceparent.as_deref()),
            });
        }

        if !self.append_verified(partition, &appended).await {
            return Ok(Settlement::LogMovedUnderUs);
        }
        // Parked only once the batch is verified: a resynchronised batch
        // decides these again, and would park them twice.
        for (message, reason) in undecidable {
            let parked = self
                .dead_letters
                .park(message, Cause::Undecidable, &reason, shutdown)
                .await?;
            if parked == Parked::Stopped {
                return Ok(Settlement::Stopped);
            }
        }

        let Some(state) = self.partitions.usable(partition, generation) else {
            return Ok(Settlement::LogMovedUnderUs);
        };
        state.settled_since_snapshot += appended.len() as u64;
        let outcomes: Vec<CommandOutcome> = pending
            .iter()
            .filter_map(|command| state.log.settled(&command.envelope.command_id).cloned())
            .collect();
        if self.publish_outcomes(&outcomes, shutdown).await.is_none() {
            return Ok(Settlement::Stopped);
        }
        self.maybe_snapshot(partition, generation).await;
        Ok(Settlement::Done)
    }

    /// Appends a batch's records to `D.events[partition]` and reports
    /// whether every one landed exactly where the fold assumed: then no
    /// foreign write interleaved and our decisions are the log's (rule 4).
    ///
    /// The transactional seam: on a broker with transactions, this step,
    /// `publish_outcomes` and the command offset the loop stores afterwards
    /// become one transaction (begin, send, `send_offsets_to_transaction`,
    /// commit), and a fenced producer answers `false` here. See design.md.
    async fn append_verified(&self, partition: i32, appended: &[Appended]) -> bool {
        // Enqueue in order: librdkafka keeps per-partition order with the
        // idempotent producer.
        let mut deliveries = Vec::with_capacity(appended.len());
        for record in appended {
            let message = FutureRecord::to(&self.topics.events)
                .partition(partition)
                .key(record.key.as_str())
                .payload(record.bytes.as_slice())
                .headers(record.headers.clone());
            match self.producer.send_result(message) {
                Ok(delivery) => deliveries.push((record.expected_offset, delivery)),
                Err((error, _)) => {
                    tracing::warn!(%error, "cannot enqueue event");
                    return false;
                }
            }
        }
        let mut verified = true;
        for (expected_offset, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(delivery))
                    if delivery.offset == expected_offset && delivery.partition == partition => {}
                Ok(Ok(delivery)) => {
                    tracing::warn!(
                        expected_offset,
                        landed = delivery.offset,
                        "event landed after a foreign write"
                    );
                    verified = false;
                }
                Ok(Err((error, _))) => {
                    tracing::warn!(%error, "event delivery failed");
                    verified = false;
                }
                Err(_) => verified = false,
            }
        }
        verified
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
                let bytes = match encoded {
                    Ok(bytes) => bytes,
                    Err(error) => {
                        tracing::error!(%error, command_id = %outcome.command_id, "cannot encode command outcome");
                        return Some(());
                    }
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
                        self.producer
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
