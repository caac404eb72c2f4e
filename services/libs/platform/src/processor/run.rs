//! The loop: make the clients (resolving `kafka.transactions`), poll the
//! commands topic, apply rebalances, and settle each poll round
//! (`settle.rs`).

use std::sync::Arc;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::assignment::{
    close, poll, Partitions, Polled, RebalanceEvent, RebalanceEvents, StartAt,
};
use super::restore::Restorer;
use super::transaction::{resolve, transactional_id, WriteMode};
use super::{CommandDomain, Processor, ProcessorError, ProcessorOptions, ProcessorTopics};
use crate::codec::Codec;
use crate::config::KafkaConfig;
use crate::dlq::DeadLetters;
use crate::kafka::{group_consumer_config, producer_config, with_overrides};
use crate::shutdown::Shutdown;
use crate::store::Store;

/// Runs the command processor until `shutdown`. Returns an error only for
/// conditions an operator must look at (a truncated log); everything
/// transient is retried.
pub async fn run<D: CommandDomain>(
    domain: Arc<D>,
    topics: ProcessorTopics,
    options: ProcessorOptions,
    kafka: &KafkaConfig,
    codec: Codec,
    store: Store,
    shutdown: Shutdown,
) -> Result<(), ProcessorError> {
    let span =
        tracing::info_span!("processor", group = %options.group, commands = %topics.commands);
    async move {
        let instance = options
            .instance_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let Some(writes) = resolve(
            kafka,
            &options.client_id,
            transactional_id(&options.group, &instance),
            &shutdown,
        )
        .await?
        else {
            return Ok(());
        };
        let consumer_config = group_consumer_config(kafka, &options.client_id, &options.group);
        let (consumer_config, dead_letter_producer) = match &writes {
            WriteMode::Idempotent(producer) => (consumer_config, producer.clone()),
            // Offsets go through the transaction only; dead letters (written
            // outside any round's transaction, and at least once anyway)
            // through a producer of their own.
            WriteMode::Transactional(_) => (
                with_overrides(consumer_config, kafka, &[("enable.auto.commit", "false")]),
                producer_config(kafka, &format!("{}-dlq", options.client_id))
                    .create::<FutureProducer>()?,
            ),
        };
        let (context, mut rebalances) =
            RebalanceEvents::new(topics.commands.clone(), StartAt::Committed);
        let consumer: StreamConsumer<RebalanceEvents> =
            consumer_config.create_with_context(context)?;
        consumer.subscribe(&[&topics.commands])?;
        let dead_letters = DeadLetters::new(
            dead_letter_producer,
            topics.dlq.clone(),
            options.group.clone(),
        );
        let restorer = Arc::new(Restorer::new(
            Arc::clone(&domain),
            &topics,
            &options,
            kafka,
            codec.clone(),
            store.clone(),
        ));
        let mut processor = Processor {
            domain,
            topics,
            options,
            codec,
            store,
            restorer,
            writes,
            dead_letters,
            partitions: Partitions::default(),
            carried: Vec::new(),
            resync_attempts: 0,
            resync_at: None,
        };
        tracing::info!("command processor started");
        let stopped = processor
            .poll_and_process(&consumer, &mut rebalances, &shutdown)
            .await;
        close(consumer, "command offsets", processor).await;
        // A failure is the caller's to report: it is returned, not logged.
        if stopped.is_ok() {
            tracing::info!("command processor stopped");
        }
        stopped
    }
    .instrument(span)
    .await
}

impl<D: CommandDomain> Processor<D> {
    async fn poll_and_process(
        &mut self,
        consumer: &StreamConsumer<RebalanceEvents>,
        rebalances: &mut mpsc::UnboundedReceiver<RebalanceEvent>,
        shutdown: &Shutdown,
    ) -> Result<(), ProcessorError> {
        loop {
            let polling = poll(consumer, rebalances, self.options.max_batch, shutdown);
            let polled = match self.resync_at {
                None => polling.await,
                // Batches are carried: poll (a revocation is served there),
                // and settle them when they are due even if nothing comes.
                // Cancelling the poll loses nothing: it is cancelled only
                // while it awaits its first record or rebalance.
                Some(due) => tokio::select! {
                    polled = polling => polled,
                    () = tokio::time::sleep_until(due) => Some(Polled::default()),
                },
            };
            let Some(polled) = polled else {
                return Ok(());
            };
            if let Some(error) = polled.refused {
                return Err(self.refusal(&error));
            }
            // Before any record of the round is looked at: ownership is
            // what the group says now, and a revoked partition's state is gone.
            for event in &polled.rebalances {
                self.apply_rebalance(event, shutdown);
            }
            if !polled.records.is_empty() || !self.carried.is_empty() {
                self.process_round(consumer, polled.records, shutdown)
                    .await?;
            }
        }
    }

    /// What the consumer was refused, by name: the commands topic, the
    /// group, or the cluster.
    fn refusal(&self, error: &rdkafka::error::KafkaError) -> ProcessorError {
        use rdkafka::error::RDKafkaErrorCode;
        let resource = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::GroupAuthorizationFailed) => {
                format!("consumer group {}", self.options.group)
            }
            Some(RDKafkaErrorCode::ClusterAuthorizationFailed) => "the cluster".to_owned(),
            _ => format!("topic {}", self.topics.commands),
        };
        ProcessorError::NotAuthorized {
            resource,
            reason: error.to_string(),
        }
    }
}
