//! The [`Endpoints`] of Kafka, ScyllaDB and Redis containers, started
//! through testcontainers-rs on whatever Docker engine `DOCKER_HOST` (else
//! the default socket) names. Only with the `docker` feature; a build
//! without it, or an engine that does not answer a ping, is an error that
//! says so, never a skip.
//!
//! - Kafka: `apache/kafka-native` (testcontainers-modules' KRaft single
//!   node), with the transaction log at one replica (the processor's
//!   transactional mode needs it) and no rebalance delay.
//! - ScyllaDB: `scylladb/scylla` on one shard (`--smp 1`, developer mode,
//!   overprovisioned): a shared CI runner's cores and memory.
//! - Redis: `redis:7.0`, the major version Debian gives the harness.

use crate::Endpoints;

/// How to run the Docker scenarios (testcontainers/README.md).
pub const HOW_TO_RUN: &str = "cargo test -p foldline-containers --features docker -- --ignored";

/// Asks the Docker engine for a ping: the one check of whether the
/// scenarios can run on containers (a `docker` CLI on `PATH` proves
/// nothing). Fails with the engine's address and the ping's error.
pub async fn ping() -> anyhow::Result<()> {
    #[cfg(feature = "docker")]
    {
        engine::ping().await
    }
    #[cfg(not(feature = "docker"))]
    {
        Err(no_docker_support())
    }
}

/// Running containers; dropping this removes them.
#[derive(Debug)]
pub struct Containers {
    pub endpoints: Endpoints,
    #[cfg(feature = "docker")]
    _running: engine::Running,
}

impl Containers {
    /// Pings the engine, then starts the three containers side by side
    /// and returns once each is ready.
    pub async fn start() -> anyhow::Result<Containers> {
        #[cfg(feature = "docker")]
        {
            engine::ping().await?;
            let (endpoints, running) = engine::start().await?;
            Ok(Containers {
                endpoints,
                _running: running,
            })
        }
        #[cfg(not(feature = "docker"))]
        {
            Err(no_docker_support())
        }
    }
}

#[cfg(not(feature = "docker"))]
fn no_docker_support() -> anyhow::Error {
    anyhow::anyhow!(
        "this build of foldline-containers has no Docker support (its `docker` feature is off): {HOW_TO_RUN}"
    )
}

#[cfg(feature = "docker")]
mod engine {
    use anyhow::Context;
    use testcontainers::core::client::docker_client_instance;
    use testcontainers::runners::AsyncRunner;
    use testcontainers::{ContainerAsync, ImageExt};
    use testcontainers_modules::kafka::apache::{Kafka, KAFKA_PORT};
    use testcontainers_modules::redis::{Redis, REDIS_PORT};
    use testcontainers_modules::scylladb::ScyllaDB;

    use crate::{CqlServer, Endpoints};

    const CQL_PORT: u16 = 9042;
    const REDIS_TAG: &str = "7.0";

    pub(crate) struct Running {
        _kafka: ContainerAsync<Kafka>,
        _scylla: ContainerAsync<ScyllaDB>,
        _redis: ContainerAsync<Redis>,
    }

    impl std::fmt::Debug for Running {
        fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("Running(kafka, scylla, redis)")
        }
    }

    fn engine_address() -> String {
        std::env::var("DOCKER_HOST").map_or_else(
            |_| "the default socket (DOCKER_HOST is unset)".to_owned(),
            |host| format!("DOCKER_HOST={host}"),
        )
    }

    pub(crate) async fn ping() -> anyhow::Result<()> {
        let address = engine_address();
        let docker = docker_client_instance()
            .await
            .with_context(|| format!("no docker engine can be addressed at {address}"))?;
        docker
            .ping()
            .await
            .with_context(|| format!("no docker engine answered a ping at {address}"))?;
        Ok(())
    }

    pub(crate) async fn start() -> anyhow::Result<(Endpoints, Running)> {
        let (kafka, scylla, redis) = tokio::try_join!(kafka(), scylla(), redis())?;
        let bootstrap_servers = format!(
            "127.0.0.1:{}",
            kafka
                .get_host_port_ipv4(KAFKA_PORT)
                .await
                .context("read kafka's host port")?
        );
        let cql_contact_point = format!(
            "{}:{}",
            scylla.get_host().await.context("read scylla's host")?,
            scylla
                .get_host_port_ipv4(CQL_PORT)
                .await
                .context("read scylla's cql host port")?
        );
        let redis_url = format!(
            "redis://{}:{}",
            redis.get_host().await.context("read redis's host")?,
            redis
                .get_host_port_ipv4(REDIS_PORT)
                .await
                .context("read redis's host port")?
        );
        Ok((
            Endpoints {
                bootstrap_servers,
                cql_contact_point,
                cql_server: CqlServer::Scylla,
                redis_url,
            },
            Running {
                _kafka: kafka,
                _scylla: scylla,
                _redis: redis,
            },
        ))
    }

    async fn kafka() -> anyhow::Result<ContainerAsync<Kafka>> {
        // The module advertises 127.0.0.1:<host port>, and sets the
        // offsets topic to one replica but not the transaction log.
        Kafka::default()
            .with_env_var("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
            .with_env_var("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
            .with_env_var("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
            .with_env_var("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
            .start()
            .await
            .context("start the kafka container (apache/kafka-native)")
    }

    async fn scylla() -> anyhow::Result<ContainerAsync<ScyllaDB>> {
        ScyllaDB::default()
            .with_cmd([
                "--smp",
                "1",
                "--memory",
                "1G",
                "--overprovisioned",
                "1",
                "--developer-mode",
                "1",
            ])
            .start()
            .await
            .context("start the scylladb container (scylladb/scylla)")
    }

    async fn redis() -> anyhow::Result<ContainerAsync<Redis>> {
        Redis::default()
            .with_tag(REDIS_TAG)
            .start()
            .await
            .context("start the redis container")
    }
}
