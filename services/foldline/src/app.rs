//! Wiring: which roles run, on what, until when.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use foldline_contracts::topology::{TopicSpec, Topology};
use foldline_gateway::outcomes::Outcomes;
use foldline_gateway::GatewayState;
use foldline_orders::service::{self as orders, OrdersTopics};
use foldline_platform::codec::Codec;
use foldline_platform::config::{Config, StoreKind};
use foldline_platform::kafka::{self, EmbeddedBroker};
use foldline_platform::shutdown;
use foldline_platform::store::Store;
use foldline_platform::{projector, telemetry};
use foldline_registry::{self as registry, Registry, RegistryConfig};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::cli::{Cli, Command, Role, TopologyAction};

pub(crate) async fn main(cli: Cli) -> anyhow::Result<()> {
    let config =
        Config::load(cli.config.as_deref(), std::env::vars()).context("load configuration")?;
    telemetry::init(&config.telemetry).context("initialise telemetry")?;
    let topology = Topology::embedded().context("read the topology")?;
    match cli.command.unwrap_or(Command::Up) {
        Command::Up => up(config, topology).await,
        Command::Run { roles } => run(config, topology, roles).await,
        Command::Topology { action } => {
            topology_command(&config, &topology, action.unwrap_or(TopologyAction::Print)).await
        }
    }
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

/// `foldline up`: everything, in one process, on the embedded default.
async fn up(mut config: Config, topology: Topology) -> anyhow::Result<()> {
    let specs = prefixed_specs(&config, &topology);
    let broker = EmbeddedBroker::start(&specs).context("start the embedded broker")?;
    config.kafka.bootstrap_servers = broker.bootstrap_servers().to_owned();
    config.kafka.create_topics = false;
    // The store must not outlive the log it folds: both live in memory.
    config.store.kind = StoreKind::Memory;
    config.registry.url = format!("http://{}", config.registry_server.listen);
    let banner = format!(
        "Foldline is up (embedded default: every service in this process)\n\
         \x20 gateway   http://{gateway}\n\
         \x20 registry  http://{registry}  (Confluent-compatible schema registry)\n\
         \x20 kafka     {kafka}  (librdkafka mock cluster)\n\
         \x20 broker:   {limits}\n\
         \x20 store:    in memory, lives exactly as long as the embedded log\n\
         Stop with Ctrl-C.",
        gateway = config.gateway.listen,
        registry = config.registry_server.listen,
        kafka = broker.bootstrap_servers(),
        limits = EmbeddedBroker::LIMITS,
    );
    let roles = [Role::Registry, Role::Orders, Role::Gateway];
    let result = serve_roles(config, topology, &roles, Some(banner)).await;
    drop(broker);
    result
}

async fn run(config: Config, topology: Topology, roles: Vec<Role>) -> anyhow::Result<()> {
    if config.kafka.create_topics {
        let specs = prefixed_specs(&config, &topology);
        let mut delay = Duration::from_millis(200);
        let mut attempts = 0;
        // A broker that is still starting is normal in a deployment: retry a while.
        loop {
            match kafka::create_topics(&config.kafka, &specs).await {
                Ok(()) => break,
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
    serve_roles(config, topology, &roles, None).await
}

async fn bind(address: SocketAddr, what: &str, variable: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| {
        format!("listen for the {what} on {address} (set {variable} to use another address)")
    })
}

fn open_store(config: &Config) -> anyhow::Result<Store> {
    match config.store.kind {
        StoreKind::Memory => Store::in_memory().context("open the in-memory store"),
        StoreKind::Embedded => Store::open_embedded(&config.store.path)
            .with_context(|| format!("open the embedded store at {}", config.store.path.display())),
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
                        if error.is_transient() && tokio::time::Instant::now() < deadline =>
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
    config: Config,
    topology: Topology,
    roles: &[Role],
    banner: Option<String>,
) -> anyhow::Result<()> {
    let (trigger, shutdown) = shutdown::channel();
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let has = |role: Role| roles.contains(&role);
    let run_processor = has(Role::Orders) || has(Role::OrdersProcessor);
    let run_projector = has(Role::Orders) || has(Role::OrdersProjector);
    let orders_topics =
        OrdersTopics::resolve(&config, &topology).context("resolve the orders topics")?;

    // Bind every listener first, so a taken port fails start-up immediately.
    let registry_listener = if has(Role::Registry) {
        Some(
            bind(
                config.registry_server.listen,
                "schema registry",
                "FOLDLINE__REGISTRY_SERVER__LISTEN",
            )
            .await?,
        )
    } else {
        None
    };
    let gateway_listener = if has(Role::Gateway) {
        Some(
            bind(
                config.gateway.listen,
                "gateway",
                "FOLDLINE__GATEWAY__LISTEN",
            )
            .await?,
        )
    } else {
        None
    };
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
            registry::serve(registry, listener, stop.wait())
                .await
                .context("serve the schema registry")
        });
    }

    let codec = Codec::new(&config.registry.url).context("configure the schema registry client")?;
    register_schemas(&config, &topology, &codec).await?;
    let needs_store = has(Role::Gateway) || run_processor || run_projector;
    let store = if needs_store {
        Some(open_store(&config)?)
    } else {
        None
    };

    if let (true, Some(store)) = (run_processor, &store) {
        let (config, topics, codec, store, stop) = (
            config.clone(),
            orders_topics.clone(),
            codec.clone(),
            store.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            orders::run_processor(&config, &topics, codec, store, stop)
                .await
                .context("run the orders command processor")
        });
    }
    let mut watermarks = None;
    if let (true, Some(store)) = (run_projector, &store) {
        let (handle, marks) = projector::watermarks();
        watermarks = Some(marks);
        let (config, topics, codec, store, stop) = (
            config.clone(),
            orders_topics.clone(),
            codec.clone(),
            store.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            orders::run_projector(&config, &topics, codec, store, handle, stop)
                .await
                .context("run the orders projector")
        });
    }
    if let (Some(listener), Some(store)) = (gateway_listener, &store) {
        let outcomes = Outcomes::start(
            &config.kafka,
            orders_topics.topics.outcomes.clone(),
            orders_topics.partitions,
            codec.clone(),
            shutdown.clone(),
        )
        .context("follow the orders outcomes")?;
        let producer = kafka::producer_config(&config.kafka, "foldline-gateway")
            .create()
            .context("create the gateway producer")?;
        let state = GatewayState {
            in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(
                config.gateway.concurrency_limit,
            )),
            config: config.gateway.clone(),
            producer,
            codec: codec.clone(),
            store: store.clone(),
            outcomes,
            watermarks,
            orders_commands_topic: orders_topics.topics.commands.clone(),
        };
        let router = foldline_gateway::router(state);
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
    match banner {
        Some(banner) => println!("{banner}"),
        None => tracing::info!(?roles, "foldline started"),
    }

    let mut outcome = Ok(());
    tokio::select! {
        () = wait_for_signal() => tracing::info!("stopping on signal"),
        finished = tasks.join_next() => {
            if let Some(result) = finished {
                outcome = flatten(result);
                if outcome.is_ok() {
                    outcome = Err(anyhow::anyhow!("a role stopped unexpectedly"));
                }
            }
        }
    }
    trigger.trigger();
    let drain = async {
        while let Some(result) = tasks.join_next().await {
            if let Err(error) = flatten(result) {
                tracing::warn!(error = format!("{error:#}"), "role failed while stopping");
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(15), drain)
        .await
        .is_err()
    {
        tracing::warn!("roles did not stop within 15s");
    }
    outcome
}

fn flatten(result: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    result.context("join a role task")?
}

async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = interrupt => {}
            () = terminate => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
