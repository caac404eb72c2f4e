//! The wiring: which roles run, on what, until when. A library, so tests
//! start the whole platform in-process (port 0) and stop it; `main.rs`
//! only parses flags and calls [`main`].

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use foldline_contracts::topology::{TopicSpec, Topology};
use foldline_gateway::admission::Admission;
use foldline_gateway::idempotency::IdempotencyRecords;
use foldline_gateway::outcomes::Outcomes;
use foldline_gateway::rate_limit::RateLimit;
use foldline_gateway::{DomainEdge, GatewayState};
use foldline_payments::provider::simulator::{self, Simulator};
use foldline_platform::cache::RowCache;
use foldline_platform::codec::Codec;
use foldline_platform::config::{CacheKind, Config, StoreKind, Transactions};
use foldline_platform::kafka::{self, EmbeddedBroker};
use foldline_platform::kafka_security;
use foldline_platform::personal_data::{DataKeys, KeyEncryptionKey};
use foldline_platform::service::{DomainTopics, RoleContext};
use foldline_platform::shutdown::{self, ShutdownTrigger};
use foldline_platform::store::{migrations, Store};
use foldline_platform::{projector, telemetry};
use foldline_registry::{self as registry, Registry, RegistryConfig, ServerSecurity};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::cli::{Cli, Command, TopologyAction};
use crate::metrics_server;
use crate::roles::{cql_migrations, domains, DomainPart, Role};

/// How long roles get to finish after the stop signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(15);

/// The binary's entry: load configuration once, then run the command.
pub async fn main(cli: Cli) -> anyhow::Result<()> {
    let config =
        Config::load(cli.config.as_deref(), std::env::vars()).context("load configuration")?;
    telemetry::init(&config.telemetry).context("initialise telemetry")?;
    let topology = Topology::embedded().context("read the topology")?;
    match cli.command.unwrap_or(Command::Up) {
        Command::Up => {
            let mut stop = StopSignals::listen().context("listen for stop signals")?;
            let Some(running) = stop
                .unless_stopped(start_embedded(config, topology))
                .await?
            else {
                return Ok(());
            };
            println!("{}", running.banner());
            running.run_until(stop.received()).await
        }
        Command::Run { roles } => {
            let mut stop = StopSignals::listen().context("listen for stop signals")?;
            let Some(running) = stop.unless_stopped(start(config, topology, &roles)).await? else {
                return Ok(());
            };
            tracing::info!(roles = ?roles.iter().map(Role::to_string).collect::<Vec<_>>(), "foldline started");
            running.run_until(stop.received()).await
        }
        Command::Migrate => migrate_command(&config).await,
        Command::Topology { action } => {
            topology_command(&config, &topology, action.unwrap_or(TopologyAction::Print)).await
        }
    }
}

/// `foldline migrate`: the CQL keyspace and tables of every compiled domain.
async fn migrate_command(config: &Config) -> anyhow::Result<()> {
    if config.store.kind != StoreKind::Scylla {
        bail!(
            "foldline migrate applies to the cql store: set store.kind = \"scylla\" (FOLDLINE__STORE__KIND=scylla); the embedded store needs no migration"
        );
    }
    let scylla = &config.store.scylla;
    let report = migrations::migrate(scylla, &cql_migrations())
        .await
        .with_context(|| {
            format!(
                "migrate keyspace {} at {:?}",
                scylla.keyspace, scylla.contact_points
            )
        })?;
    println!(
        "keyspace {}: applied {:?}, already applied {:?}",
        scylla.keyspace, report.applied, report.already_applied
    );
    Ok(())
}

fn prefixed_specs(config: &Config, topology: &Topology) -> Vec<TopicSpec> {
    topology
        .topic_specs()
        .into_iter()
        .map(|spec| TopicSpec {
            name: config.prefixed(&spec.name),
            ..spec
        })
        .collect()
}

async fn topology_command(
    config: &Config,
    topology: &Topology,
    action: TopologyAction,
) -> anyhow::Result<()> {
    let specs = prefixed_specs(config, topology);
    match action {
        TopologyAction::Print => {
            for spec in &specs {
                let configs: Vec<String> = spec
                    .configs
                    .iter()
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect();
                println!(
                    "{:<28} partitions={:<3} {}",
                    spec.name,
                    spec.partitions,
                    configs.join(" ")
                );
            }
            Ok(())
        }
        TopologyAction::Apply => {
            verify_kafka_connection(config).await?;
            kafka::create_topics(&config.kafka, &specs)
                .await
                .context("create topics")?;
            println!(
                "{} topics present on {}",
                specs.len(),
                config.kafka.bootstrap_servers
            );
            Ok(())
        }
    }
}

/// A started platform: its addresses, and its roles running until stopped.
#[derive(Debug)]
pub struct Running {
    /// Where the gateway listens, when this process runs it.
    pub gateway: Option<SocketAddr>,
    /// Where the schema registry listens, when this process runs it.
    pub registry: Option<SocketAddr>,
    /// Where the payment provider simulator listens, when this process runs it.
    pub provider_simulator: Option<SocketAddr>,
    pub bootstrap_servers: String,
    trigger: ShutdownTrigger,
    tasks: JoinSet<anyhow::Result<()>>,
    /// Kept alive while the roles run (the embedded default only).
    broker: Option<EmbeddedBroker>,
    /// Whether personal data is sealed under a key generated at start
    /// (the embedded default without a configured key).
    development_key: bool,
}

impl Running {
    /// What `foldline up` prints once it is ready.
    pub fn banner(&self) -> String {
        let show = |address: Option<SocketAddr>| {
            address.map_or_else(
                || "not running".to_owned(),
                |address| format!("http://{address}"),
            )
        };
        format!(
            "Foldline is up (embedded default: every service in this process)\n\
             \x20 gateway   {gateway}\n\
             \x20 registry  {registry}  (Confluent-compatible schema registry)\n\
             \x20 payment provider simulator  {provider}  (counts: /v1/simulator/counts)\n\
             \x20 kafka     {kafka}  (librdkafka mock cluster)\n\
             \x20 broker:   {limits}\n\
             \x20 store:    in memory, lives exactly as long as the embedded log\n\
             \x20 personal data: {personal_data}\n\
             Stop with Ctrl-C.",
            gateway = show(self.gateway),
            registry = show(self.registry),
            provider = show(self.provider_simulator),
            kafka = self.bootstrap_servers,
            limits = EmbeddedBroker::LIMITS,
            personal_data = match self.development_key {
                true => "sealed under a DEVELOPMENT key generated at start (FOLDLINE__PERSONAL_DATA__KEY_ENCRYPTION_KEY is unset): fine here, where nothing outlives the process; never in a deployment",
                false => "sealed under the configured key-encryption key",
            },
        )
    }

    /// Runs until `stop` resolves or a role stops on its own (an error:
    /// roles run until told to stop), then drains every role for at most
    /// the drain deadline.
    pub async fn run_until(mut self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let mut outcome = Ok(());
        tokio::select! {
            () = stop => tracing::info!("stopping on request"),
            finished = self.tasks.join_next() => {
                if let Some(result) = finished {
                    outcome = flatten(result);
                    if outcome.is_ok() {
                        outcome = Err(anyhow::anyhow!("a role stopped unexpectedly"));
                    }
                }
            }
        }
        self.trigger.trigger();
        let tasks = &mut self.tasks;
        let drain = async {
            while let Some(result) = tasks.join_next().await {
                if let Err(error) = flatten(result) {
                    tracing::warn!(error = format!("{error:#}"), "role failed while stopping");
                }
            }
        };
        if tokio::time::timeout(DRAIN_DEADLINE, drain).await.is_err() {
            tracing::warn!(
                deadline_s = DRAIN_DEADLINE.as_secs(),
                "roles did not stop within the drain deadline"
            );
        }
        drop(self.broker.take());
        outcome
    }
}

/// `foldline up`: every role in one process on the embedded default: the
/// mock cluster, the embedded registry and the in-memory store.
pub async fn start_embedded(mut config: Config, topology: Topology) -> anyhow::Result<Running> {
    // The mock cluster's transactions only pretend (read_committed still
    // sees aborted records), so `auto` means off here and `on` is refused.
    match config.kafka.transactions {
        Transactions::Auto | Transactions::Off => config.kafka.transactions = Transactions::Off,
        Transactions::On => anyhow::bail!(
            "kafka.transactions = \"on\" needs a broker with transactions; the embedded broker has none \
             (use `foldline run` against Apache Kafka, or set it to \"auto\" or \"off\")"
        ),
    }
    let specs = prefixed_specs(&config, &topology);
    let broker = EmbeddedBroker::start(&specs).context("start the embedded broker")?;
    config.kafka.bootstrap_servers = broker.bootstrap_servers().to_owned();
    config.kafka.create_topics = false;
    // The store must not outlive the log it folds: both live in memory.
    config.store.kind = StoreKind::Memory;
    // Sealed personal data lives as long as the log too, so a key made up
    // now is enough here; a deployment must configure its own.
    let development_key = config.personal_data.key_encryption_key.is_none();
    if development_key {
        let key = KeyEncryptionKey::generate_for_development()
            .context("generate a development key-encryption key")?;
        tracing::warn!("no key-encryption key is configured: personal data is sealed under a DEVELOPMENT key generated at start; set FOLDLINE__PERSONAL_DATA__KEY_ENCRYPTION_KEY in any deployment");
        config.personal_data.key_encryption_key = Some(key.to_hex());
    }
    let mut roles = vec![
        Role::Registry,
        Role::Gateway,
        Role::ProviderSimulator,
        Role::Analytics,
    ];
    roles.extend(domains().iter().map(|domain| Role::Domain {
        name: domain.service.name().to_owned(),
        part: DomainPart::All,
    }));
    let mut running = serve_roles(config, topology, &roles, RegistryUrl::FromListener).await?;
    running.broker = Some(broker);
    running.development_key = development_key;
    Ok(running)
}

/// `foldline run <roles>`: chosen roles against the configured broker,
/// registry and store, creating topics first when configured to.
pub async fn start(config: Config, topology: Topology, roles: &[Role]) -> anyhow::Result<Running> {
    verify_kafka_connection(&config).await?;
    if config.kafka.create_topics {
        create_topics_when_the_broker_is_up(&config, &topology).await?;
    }
    serve_roles(config, topology, roles, RegistryUrl::FromConfig).await
}

/// How long start-up waits for a first answer from the brokers.
const CONNECTION_PROBE_BUDGET: Duration = Duration::from_secs(10);

/// Fails start-up on refused credentials or an untrusted certificate, which
/// librdkafka would otherwise retry forever with the roles waiting; a broker
/// that does not answer yet is only a warning (the roles retry on their own).
async fn verify_kafka_connection(config: &Config) -> anyhow::Result<()> {
    let security = &config.kafka.security;
    tracing::info!(
        bootstrap_servers = %config.kafka.bootstrap_servers,
        protocol = security.protocol.as_librdkafka(),
        sasl_mechanism = security.sasl.mechanism.map(|mechanism| mechanism.as_librdkafka()),
        sasl_username = security.sasl.username.as_deref(),
        "connecting to kafka"
    );
    match kafka_security::verify_connection(&config.kafka, CONNECTION_PROBE_BUDGET).await {
        Ok(()) => Ok(()),
        Err(error) if error.is_transient() => {
            tracing::warn!(%error, "kafka does not answer yet; the roles keep retrying");
            Ok(())
        }
        Err(error) => Err(error).context("connect to kafka"),
    }
}

async fn create_topics_when_the_broker_is_up(
    config: &Config,
    topology: &Topology,
) -> anyhow::Result<()> {
    let specs = prefixed_specs(config, topology);
    let mut delay = Duration::from_millis(200);
    let mut attempts = 0;
    // A broker that is still starting is normal in a deployment: retry a while.
    loop {
        match kafka::create_topics(&config.kafka, &specs).await {
            Ok(()) => return Ok(()),
            Err(error) if attempts < 10 => {
                attempts += 1;
                tracing::warn!(%error, attempts, "cannot create topics yet, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(error) => return Err(error).context("create topics"),
        }
    }
}

/// Where this process's registry clients find the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RegistryUrl {
    /// The configured URL (a deployment's registry service).
    FromConfig,
    /// The registry role of this very process, wherever it bound.
    FromListener,
}

async fn bind(address: SocketAddr, what: &str, variable: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| {
        format!("listen for the {what} on {address} (set {variable} to use another address)")
    })
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = open_backend(config).await?;
    match config.cache.kind {
        CacheKind::None => Ok(store),
        CacheKind::Redis => Ok(
            store.with_cache(RowCache::new(&config.cache).context("configure the redis cache")?)
        ),
    }
}

async fn open_backend(config: &Config) -> anyhow::Result<Store> {
    match config.store.kind {
        StoreKind::Memory => Ok(Store::in_memory()),
        StoreKind::Embedded => Store::open_embedded(&config.store.path)
            .with_context(|| format!("open the embedded store at {}", config.store.path.display())),
        StoreKind::Scylla => {
            let scylla = &config.store.scylla;
            Store::connect_scylla(scylla, &cql_migrations())
                .await
                .with_context(|| {
                    format!(
                        "open the cql store (keyspace {} at {:?})",
                        scylla.keyspace, scylla.contact_points
                    )
                })
        }
    }
}

/// The registry client, once the registry answered: refused credentials and
/// an untrusted certificate stop start-up at once, an unreachable registry
/// after `registry.startup_timeout_ms`.
async fn connect_registry(config: &Config) -> anyhow::Result<Codec> {
    let registry = &config.registry;
    tracing::info!(
        url = %registry.url,
        username = registry.username.as_deref(),
        ca_file = registry.ca_file.as_ref().map(|path| path.display().to_string()),
        client_certificate = registry.certificate_file.is_some(),
        "connecting to the schema registry"
    );
    let codec = Codec::connect(registry).context("configure the schema registry client")?;
    let budget = Duration::from_millis(registry.startup_timeout_ms);
    let deadline = tokio::time::Instant::now() + budget;
    loop {
        match codec.check().await {
            Ok(()) => return Ok(codec),
            Err(error) if error.is_misconfiguration() => {
                return Err(error).context("connect to the schema registry")
            }
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::info!(%error, "waiting for the schema registry");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!(
                        "the schema registry at {} did not answer within {budget:?} (registry.startup_timeout_ms)",
                        registry.url
                    )
                })
            }
        }
    }
}

/// Registers every declared schema, waiting for the registry to come up.
async fn register_schemas(
    config: &Config,
    topology: &Topology,
    codec: &Codec,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for domain in &topology.domains {
        for subjects in &domain.subjects {
            let topic = config.prefixed(&subjects.topic);
            loop {
                match codec.register(&topic, &subjects.records).await {
                    Ok(()) => break,
                    Err(error)
                        if error.is_transient()
                            && !error.is_misconfiguration()
                            && tokio::time::Instant::now() < deadline =>
                    {
                        tracing::info!(%error, "waiting for the schema registry");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Err(error) => {
                        return Err(error).with_context(|| {
                            format!("register the schemas of {topic} at {}", config.registry.url)
                        })
                    }
                }
            }
        }
    }
    Ok(())
}

async fn serve_roles(
    mut config: Config,
    topology: Topology,
    roles: &[Role],
    registry_url: RegistryUrl,
) -> anyhow::Result<Running> {
    let domains = domains();
    for domain in &domains {
        domain.service.check_against(&topology).with_context(|| {
            format!(
                "check domain {} against the topology",
                domain.service.name()
            )
        })?;
    }
    let has = |role: Role| roles.contains(&role);
    // Checked before anything starts: a gateway serving personal data
    // without its key would fail every such request instead.
    let key_encryption_key =
        match has(Role::Gateway) && domains.iter().any(|domain| domain.edge.personal_data) {
            true => Some(
                KeyEncryptionKey::from_config(config.personal_data.key_encryption_key.as_ref())
                    .context("read the personal-data key-encryption key")?,
            ),
            false => None,
        };
    let runs = |domain: &str, part: DomainPart| roles.iter().any(|role| role.runs(domain, part));

    // Bind every listener first, so a taken port fails start-up immediately.
    let registry_listener = match has(Role::Registry) {
        true => Some(
            bind(
                config.registry_server.listen,
                "schema registry",
                "FOLDLINE__REGISTRY_SERVER__LISTEN",
            )
            .await?,
        ),
        false => None,
    };
    let gateway_listener = match has(Role::Gateway) {
        true => Some(
            bind(
                config.gateway.listen,
                "gateway",
                "FOLDLINE__GATEWAY__LISTEN",
            )
            .await?,
        ),
        false => None,
    };
    let metrics_listener = match config.metrics.listen {
        Some(address) => Some(bind(address, "metrics", "FOLDLINE__METRICS__LISTEN").await?),
        None => None,
    };
    let registry_address = registry_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()
        .context("read the schema registry's address")?;
    let gateway_address = gateway_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()
        .context("read the gateway's address")?;
    let registry_security = match has(Role::Registry) {
        true => ServerSecurity::from_config(&config.registry_server)
            .context("set up the schema registry's basic auth and tls")?,
        false => ServerSecurity::default(),
    };
    if let (RegistryUrl::FromListener, Some(address)) = (registry_url, registry_address) {
        let scheme = if registry_security.is_tls() {
            "https"
        } else {
            "http"
        };
        config.registry.url = format!("{scheme}://{address}");
    }
    let simulator_listener = match has(Role::ProviderSimulator) {
        true => Some(
            bind(
                config.payments.simulator.listen,
                "payment provider simulator",
                "FOLDLINE__PAYMENTS__SIMULATOR__LISTEN",
            )
            .await?,
        ),
        false => None,
    };
    let simulator_address = simulator_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()
        .context("read the payment provider simulator's address")?;
    // The embedded default's provider worker calls its own simulator.
    if let (RegistryUrl::FromListener, Some(address)) = (registry_url, simulator_address) {
        config.payments.provider.url = format!("http://{address}");
    }

    let (trigger, shutdown) = shutdown::channel();
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    if let Some(listener) = registry_listener {
        let registry = Registry::start(
            &config.kafka,
            RegistryConfig {
                topic: config.prefixed(&topology.registry.topic),
                client_id: "foldline-registry".to_owned(),
            },
        )
        .await
        .context("start the schema registry")?;
        let stop = shutdown.clone();
        tasks.spawn(async move {
            registry::serve_secured(registry, listener, registry_security, stop.wait())
                .await
                .context("serve the schema registry")
        });
    }

    if let Some(listener) = simulator_listener {
        let simulator = Simulator::new(config.payments.simulator.clone());
        let stop = shutdown.clone();
        tasks.spawn(async move {
            simulator::serve(simulator, listener, stop.wait())
                .await
                .context("serve the payment provider simulator")
        });
        if roles.iter().all(|role| *role == Role::ProviderSimulator) {
            return Ok(Running {
                gateway: gateway_address,
                registry: registry_address,
                provider_simulator: simulator_address,
                bootstrap_servers: config.kafka.bootstrap_servers.clone(),
                trigger,
                tasks,
                broker: None,
                development_key: false,
            });
        }
    }

    let codec = connect_registry(&config).await?;
    register_schemas(&config, &topology, &codec).await?;
    let runs_any_domain = domains.iter().any(|domain| {
        let name = domain.service.name();
        runs(name, DomainPart::Processor) || runs(name, DomainPart::Projectors)
    });
    let store = match has(Role::Gateway) || has(Role::Analytics) || runs_any_domain {
        true => Some(open_store(&config).await?),
        false => None,
    };

    let config = Arc::new(config);
    let topology = Arc::new(topology);
    let mut edges = BTreeMap::new();
    let mut outcome_topics = Vec::new();
    if let Some(store) = &store {
        let context = RoleContext {
            config: Arc::clone(&config),
            topology: Arc::clone(&topology),
            codec: codec.clone(),
            store: store.clone(),
            shutdown: shutdown.clone(),
        };
        for domain in &domains {
            let service = &domain.service;
            let name = service.name();
            if runs(name, DomainPart::Processor) {
                let processor = service.run_processor(context.clone());
                tasks.spawn(async move {
                    processor
                        .await
                        .with_context(|| format!("run the {name} command processor"))
                });
            }
            let mut watermarks = None;
            if runs(name, DomainPart::Projectors) {
                for projection in service.projection_names() {
                    let (handle, marks) = projector::watermarks();
                    // The gateway waits on the domain's first projection:
                    // the one its routes read.
                    watermarks.get_or_insert(marks);
                    let Some(projector) =
                        service.run_projection(projection, context.clone(), handle)
                    else {
                        continue;
                    };
                    tasks.spawn(async move {
                        projector
                            .await
                            .with_context(|| format!("run the {name} projector {projection}"))
                    });
                }
                for (worker, run) in service.run_workers(context.clone()) {
                    tasks.spawn(async move {
                        run.await
                            .with_context(|| format!("run the {name} {worker}"))
                    });
                }
            }
            let topics = DomainTopics::resolve(&config, &topology, name)
                .with_context(|| format!("resolve the topics of {name}"))?;
            outcome_topics.push((topics.outcomes, topics.partitions));
            edges.insert(
                name.to_owned(),
                DomainEdge {
                    noun: domain.edge.noun,
                    collection: domain.edge.collection,
                    commands_topic: topics.commands,
                    watermarks,
                },
            );
        }
        if has(Role::Analytics) {
            let folds =
                foldline_analytics::folds(&context).context("declare the analytics folds")?;
            for (group, fold) in folds {
                tasks.spawn(async move {
                    fold.await
                        .with_context(|| format!("run the analytics fold {group}"))
                });
            }
        }
    }
    if let (Some(listener), Some(store)) = (gateway_listener, &store) {
        let admission = Admission::new(
            edges.keys().map(String::as_str),
            config.gateway.max_unsettled_commands,
            Duration::from_secs(config.gateway.unsettled_expiry_seconds),
        );
        let outcomes = Outcomes::start(
            &config.kafka,
            &outcome_topics,
            codec.clone(),
            admission.clone(),
            shutdown.clone(),
        )
        .context("follow the command outcomes")?;
        let producer = kafka::producer_config(&config.kafka, "foldline-gateway")
            .create()
            .context("create the gateway producer")?;
        let state = GatewayState {
            in_flight: Arc::new(tokio::sync::Semaphore::new(
                config.gateway.concurrency_limit,
            )),
            config: config.gateway.clone(),
            producer,
            codec: codec.clone(),
            store: store.clone(),
            outcomes,
            admission,
            domains: Arc::new(edges),
            data_keys: key_encryption_key.map(|kek| DataKeys::new(store.clone(), kek)),
            idempotency: IdempotencyRecords::from_config(&config.gateway, &config.cache)
                .context("configure the idempotency records")?,
            rate_limit: RateLimit::from_config(&config.gateway, &config.cache)
                .context("configure the rate limit")?,
        };
        let declarations: Vec<_> = domains.iter().map(|domain| domain.edge).collect();
        let router = metrics_server::with_metrics(foldline_gateway::router_with_reads(
            state,
            &declarations,
            &[foldline_analytics::routes::router],
        ));
        let stop = shutdown.clone();
        tasks.spawn(async move {
            foldline_gateway::serve(listener, router, stop.wait())
                .await
                .context("serve the gateway")
        });
    }
    if tasks.is_empty() {
        bail!("no role to run");
    }
    if let Some(listener) = metrics_listener {
        let stop = shutdown.clone();
        tasks.spawn(async move {
            metrics_server::serve(listener, stop.wait())
                .await
                .context("serve the metrics")
        });
    }
    Ok(Running {
        gateway: gateway_address,
        registry: registry_address,
        provider_simulator: simulator_address,
        bootstrap_servers: config.kafka.bootstrap_servers.clone(),
        trigger,
        tasks,
        broker: None,
        development_key: false,
    })
}

fn flatten(result: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    result.context("join a role task")?
}

/// SIGINT (Ctrl-C) and SIGTERM, listened to from before start-up: a stop
/// signal that arrives while roles are still starting (a pod deleted during
/// a rollout, a supervisor's restart) ends the process cleanly with exit 0,
/// instead of meeting the default disposition and dying of the signal.
#[derive(Debug)]
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers; from here on a stop signal is queued, not fatal.
    pub fn listen() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Resolves on the first stop signal.
    pub async fn received(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Runs `starting` unless a stop signal comes first, in which case the
    /// half-started roles are dropped (nothing of theirs is committed) and
    /// the answer is `None`.
    pub async fn unless_stopped<T>(
        &mut self,
        starting: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<Option<T>> {
        tokio::select! {
            started = starting => started.map(Some),
            () = self.received() => {
                tracing::info!("stopped on request during start-up");
                Ok(None)
            }
        }
    }
}
