//! Wiring: the orders processor and projector, from configuration.

use std::sync::Arc;

use foldline_contracts::topology::{DomainTopology, TopicKind, Topology, TopologyError};
use foldline_platform::codec::Codec;
use foldline_platform::config::Config;
use foldline_platform::processor::{self, ProcessorError, ProcessorOptions, ProcessorTopics};
use foldline_platform::projector::{self, ProjectorError, ProjectorHandle, ProjectorOptions};
use foldline_platform::shutdown::Shutdown;
use foldline_platform::store::Store;

use crate::processing::OrdersDomain;
use crate::projection::OrdersProjection;

pub const DOMAIN: &str = "orders";

/// The orders topics of this environment (prefix applied).
#[derive(Clone, Debug)]
pub struct OrdersTopics {
    pub topics: ProcessorTopics,
    pub partitions: i32,
    pub commands_retention_ms: i64,
}

impl OrdersTopics {
    pub fn resolve(config: &Config, topology: &Topology) -> Result<OrdersTopics, TopologyError> {
        let domain: &DomainTopology = topology.domain(DOMAIN)?;
        let name = |kind| config.prefixed(&domain.topic(kind));
        Ok(OrdersTopics {
            topics: ProcessorTopics {
                commands: name(TopicKind::Commands),
                events: name(TopicKind::Events),
                outcomes: name(TopicKind::Outcomes),
                dlq: name(TopicKind::Dlq),
            },
            partitions: domain.partitions,
            commands_retention_ms: domain
                .topics
                .get(&TopicKind::Commands)
                .map(|settings| settings.retention_ms)
                .unwrap_or(7 * 24 * 3_600_000),
        })
    }
}

pub async fn run_processor(
    config: &Config,
    topics: &OrdersTopics,
    codec: Codec,
    store: Store,
    shutdown: Shutdown,
) -> Result<(), ProcessorError> {
    let options = ProcessorOptions {
        group: config.prefixed("orders-processor"),
        client_id: "foldline-orders-processor".to_owned(),
        snapshot_every_commands: config.processor.snapshot_every_commands,
        max_batch: config.processor.max_batch,
        dedupe_horizon_ms: topics.commands_retention_ms,
    };
    processor::run(
        Arc::new(OrdersDomain),
        topics.topics.clone(),
        options,
        &config.kafka,
        codec,
        store,
        shutdown,
    )
    .await
}

pub async fn run_projector(
    config: &Config,
    topics: &OrdersTopics,
    codec: Codec,
    store: Store,
    handle: ProjectorHandle,
    shutdown: Shutdown,
) -> Result<(), ProjectorError> {
    let options = ProjectorOptions {
        name: config.prefixed("orders-projector-orders"),
        client_id: "foldline-orders-projector".to_owned(),
        topic: topics.topics.events.clone(),
        dlq: topics.topics.dlq.clone(),
        max_batch: 500,
    };
    projector::run(
        Arc::new(OrdersProjection),
        options,
        &config.kafka,
        codec,
        store,
        handle,
        shutdown,
    )
    .await
}
