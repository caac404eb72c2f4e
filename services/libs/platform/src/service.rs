//! Running a domain: its topics and groups resolved from the topology, and
//! [`DomainService`], the one declaration a domain crate exports so the
//! binary can run its processor and projectors by name.

use std::sync::Arc;

use foldline_contracts::topology::{TopicKind, Topology, TopologyError};
use futures::future::BoxFuture;

use crate::codec::Codec;
use crate::config::Config;
use crate::domain::DomainWire;
use crate::gated::{DomainProjection, GatedProjection, GatedRecords, RecordProjection};
use crate::processor::{self, ProcessorError, ProcessorOptions, ProcessorTopics};
use crate::projector::Projection;
use crate::projector::{self, ProjectorError, ProjectorHandle, ProjectorOptions};
use crate::shutdown::Shutdown;
use crate::store::Store;

/// How long a settled command id is remembered when the topology declares
/// no retention for the commands topic.
const DEFAULT_DEDUPE_HORIZON_MS: i64 = 7 * 24 * 3_600_000;

/// A domain's topics and processor group in this environment (prefix applied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainTopics {
    pub domain: String,
    pub commands: String,
    pub events: String,
    pub outcomes: String,
    pub dlq: String,
    pub partitions: i32,
    /// The commands topic's retention: a settled command older than this
    /// cannot be redelivered, so the processor may forget it.
    pub dedupe_horizon_ms: i64,
    pub processor_group: String,
}

impl DomainTopics {
    pub fn resolve(
        config: &Config,
        topology: &Topology,
        domain: &str,
    ) -> Result<DomainTopics, TopologyError> {
        let declared = topology.domain(domain)?;
        let name = |kind| config.prefixed(&declared.topic(kind));
        Ok(DomainTopics {
            domain: declared.name.clone(),
            commands: name(TopicKind::Commands),
            events: name(TopicKind::Events),
            outcomes: name(TopicKind::Outcomes),
            dlq: name(TopicKind::Dlq),
            partitions: declared.partitions,
            dedupe_horizon_ms: declared
                .retention_ms(TopicKind::Commands)
                .filter(|retention| *retention > 0)
                .unwrap_or(DEFAULT_DEDUPE_HORIZON_MS),
            processor_group: config.prefixed(&declared.processor_group()?.name),
        })
    }

    pub fn processor_topics(&self) -> ProcessorTopics {
        ProcessorTopics {
            commands: self.commands.clone(),
            events: self.events.clone(),
            outcomes: self.outcomes.clone(),
            dlq: self.dlq.clone(),
        }
    }
}

/// What every role of a domain runs on.
#[derive(Clone, Debug)]
pub struct RoleContext {
    pub config: Arc<Config>,
    pub topology: Arc<Topology>,
    pub codec: Codec,
    pub store: Store,
    pub shutdown: Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    Processor(#[from] ProcessorError),
    #[error(transparent)]
    Projector(#[from] ProjectorError),
    #[error(transparent)]
    Relay(#[from] crate::outbox::RelayError),
    #[error("worker {worker} cannot start: {reason}")]
    WorkerStart {
        worker: &'static str,
        reason: String,
    },
}

pub type RoleFuture = BoxFuture<'static, Result<(), ServiceError>>;

/// One projection of a domain and how to run its projector.
#[derive(Clone, Copy)]
struct ProjectionRunner {
    name: &'static str,
    run: fn(&'static str, RoleContext, ProjectorHandle) -> RoleFuture,
}

/// A domain, runnable: its name (as in the topology), its processor and its
/// projections. Built once by the domain crate from its `DomainWire` and
/// `DomainProjection`s; the binary holds a list of these and derives its
/// roles from it, so a new domain adds no code to the binary but one entry.
#[derive(Clone)]
pub struct DomainService {
    name: &'static str,
    processor: fn(&'static str, RoleContext) -> RoleFuture,
    projections: Vec<ProjectionRunner>,
    workers: Vec<WorkerRunner>,
}

/// A long-running task of a domain beside its projectors (an outbox
/// relay, which must share the outbox projector's store).
#[derive(Clone, Copy)]
struct WorkerRunner {
    name: &'static str,
    run: fn(&'static str, RoleContext) -> RoleFuture,
}

impl std::fmt::Debug for DomainService {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DomainService")
            .field("name", &self.name)
            .field("projections", &self.projection_names().collect::<Vec<_>>())
            .field(
                "workers",
                &self
                    .workers
                    .iter()
                    .map(|worker| worker.name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl DomainService {
    /// The domain `name` (as declared in the topology), decided by `W`.
    pub fn new<W: DomainWire + Default>(name: &'static str) -> Self {
        Self {
            name,
            processor: |domain, context| Box::pin(run_processor::<W>(domain, context)),
            projections: Vec::new(),
            workers: Vec::new(),
        }
    }

    /// Adds a projection of the domain's events. The first one added is
    /// the domain's primary projection: it serves `command_outcomes`, and
    /// the gateway's routes read and wait on it.
    pub fn with_projection<P: DomainProjection + Default>(mut self) -> Self {
        let run: fn(&'static str, RoleContext, ProjectorHandle) -> RoleFuture =
            match self.projections.is_empty() {
                true => |domain, context, handle| {
                    let gated = GatedProjection::new(domain, P::default());
                    Box::pin(run_projection(gated, P::NAME, domain, context, handle))
                },
                false => |domain, context, handle| {
                    let gated = GatedProjection::secondary(domain, P::default());
                    Box::pin(run_projection(gated, P::NAME, domain, context, handle))
                },
            };
        self.projections
            .push(ProjectionRunner { name: P::NAME, run });
        self
    }

    /// Adds a projection of another domain's events topic, read through
    /// its `contracts` records (the topology declares its projector group
    /// under this domain, reading `<source>.events`).
    pub fn with_record_projection<P: RecordProjection + Default>(mut self) -> Self {
        self.projections.push(ProjectionRunner {
            name: P::NAME,
            run: |domain, context, handle| {
                let gated = GatedRecords::new(domain, P::default());
                Box::pin(run_projection(gated, P::NAME, domain, context, handle))
            },
        });
        self
    }

    /// Adds a worker that runs wherever the domain's projectors run.
    pub fn with_worker(
        mut self,
        name: &'static str,
        run: fn(&'static str, RoleContext) -> RoleFuture,
    ) -> Self {
        self.workers.push(WorkerRunner { name, run });
        self
    }

    /// The domain's workers, each with its name, ready to spawn.
    pub fn run_workers(&self, context: RoleContext) -> Vec<(&'static str, RoleFuture)> {
        self.workers
            .iter()
            .map(|worker| (worker.name, (worker.run)(self.name, context.clone())))
            .collect()
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn projection_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.projections.iter().map(|projection| projection.name)
    }

    /// Runs the domain's command processor until shutdown.
    pub fn run_processor(&self, context: RoleContext) -> RoleFuture {
        (self.processor)(self.name, context)
    }

    /// Runs the projector of `projection` until shutdown; `handle` reports
    /// its progress (for read-your-writes waits).
    pub fn run_projection(
        &self,
        projection: &str,
        context: RoleContext,
        handle: ProjectorHandle,
    ) -> Option<RoleFuture> {
        self.projections
            .iter()
            .find(|runner| runner.name == projection)
            .map(|runner| (runner.run)(self.name, context, handle))
    }

    /// Checks that the topology declares this domain with a group for each
    /// of its projections, so a mismatch fails at start-up, not at run time.
    pub fn check_against(&self, topology: &Topology) -> Result<(), TopologyError> {
        let declared = topology.domain(self.name)?;
        declared.processor_group()?;
        for projection in self.projection_names() {
            declared.projector_group(projection)?;
        }
        Ok(())
    }
}

async fn run_processor<W: DomainWire + Default>(
    domain: &'static str,
    context: RoleContext,
) -> Result<(), ServiceError> {
    let topics = DomainTopics::resolve(&context.config, &context.topology, domain)?;
    let options = ProcessorOptions {
        client_id: format!("foldline-{domain}-processor"),
        group: topics.processor_group.clone(),
        snapshot_every_commands: context.config.processor.snapshot_every_commands,
        snapshot_scales_with_state: context.config.processor.snapshot_scales_with_state,
        max_batch: context.config.processor.max_batch,
        dedupe_horizon_ms: topics.dedupe_horizon_ms,
        instance_id: context.config.processor.instance_id.clone(),
    };
    processor::run(
        Arc::new(W::default()),
        topics.processor_topics(),
        options,
        &context.config.kafka,
        context.codec,
        context.store,
        context.shutdown,
    )
    .await?;
    Ok(())
}

async fn run_projection<P: Projection>(
    gated: P,
    projection: &'static str,
    domain: &'static str,
    context: RoleContext,
    handle: ProjectorHandle,
) -> Result<(), ServiceError> {
    let topics = DomainTopics::resolve(&context.config, &context.topology, domain)?;
    let declared = context.topology.domain(domain)?;
    let group = declared.projector_group(projection)?;
    let source = declared
        .projector_source(group)
        .map(|topic| context.config.prefixed(&topic))
        .unwrap_or_else(|| topics.events.clone());
    let options = ProjectorOptions {
        name: context.config.prefixed(&group.name),
        client_id: format!("foldline-{domain}-projector-{projection}"),
        topic: source,
        dlq: topics.dlq.clone(),
        max_batch: 500,
    };
    projector::run(
        Arc::new(gated),
        options,
        &context.config.kafka,
        context.codec,
        context.store,
        handle,
        context.shutdown,
    )
    .await?;
    Ok(())
}
