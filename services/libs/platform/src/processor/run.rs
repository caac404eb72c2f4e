//! The loop: poll the commands topic, apply rebalances, batch by
//! partition, process, store the command offsets (step 5 of the loop in
//! `design.md`).

use std::sync::Arc;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::Message;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::assignment::{close, poll, Partitions, RebalanceEvent, RebalanceEvents, StartAt};
use super::restore::Restorer;
use super::settle::Processed;
use super::{CommandDomain, Processor, ProcessorError, ProcessorOptions, ProcessorTopics};
use crate::codec::Codec;
use crate::config::KafkaConfig;
use crate::dlq::DeadLetters;
use crate::kafka::{group_consumer_config, producer_config, store_next_offset};
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
        let (context, mut rebalances) =
            RebalanceEvents::new(topics.commands.clone(), StartAt::Committed);
        let consumer: StreamConsumer<RebalanceEvents> =
            group_consumer_config(kafka, &options.client_id, &options.group)
                .create_with_context(context)?;
        consumer.subscribe(&[&topics.commands])?;
        let producer: FutureProducer = producer_config(kafka, &options.client_id).create()?;
        let dead_letters =
            DeadLetters::new(producer.clone(), topics.dlq.clone(), options.group.clone());
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
            producer,
            dead_letters,
            partitions: Partitions::default(),
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
            let Some(polled) = poll(consumer, rebalances, self.options.max_batch, shutdown).await
            else {
                return Ok(());
            };
            // Before any record of the round is looked at: ownership is
            // what the group says now, and a revoked partition's state is gone.
            for event in &polled.rebalances {
                self.apply_rebalance(event, shutdown);
            }
            for (partition, messages) in polled.records {
                self.process_partition(consumer, partition, messages, shutdown)
                    .await?;
            }
        }
    }

    async fn process_partition(
        &mut self,
        consumer: &StreamConsumer<RebalanceEvents>,
        partition: i32,
        messages: Vec<OwnedMessage>,
        shutdown: &Shutdown,
    ) -> Result<(), ProcessorError> {
        let (Some(generation), Some(first), Some(last)) = (
            self.partitions.generation(partition),
            messages.first().map(Message::offset),
            messages.last().map(Message::offset),
        ) else {
            return Ok(());
        };
        let span = tracing::info_span!("batch", partition, first, last);
        let processed = self
            .process(partition, generation, messages, shutdown)
            .instrument(span.clone())
            .await?;
        // An interrupted batch is not done: its commands must be read again
        // by whoever owns the partition next. A done one still needs its
        // state usable: the offset says "settled by the log we verified".
        if processed == Processed::Done && self.partitions.usable(partition, generation).is_some() {
            if let Err(error) =
                store_next_offset(consumer, &self.topics.commands, partition, last + 1)
            {
                span.in_scope(|| tracing::warn!(%error, "cannot store command offset"));
            }
        }
        Ok(())
    }
}
