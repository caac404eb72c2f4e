//! The [`Endpoints`] of the servers the harness starts as processes:
//! the test process's Kafka broker and CQL server (shared by its tests,
//! started on first use) and a `redis-server` of the caller's own. A
//! server that cannot start is an error, never a skip.

use anyhow::Context;
use foldline_testcontainers::{broker, cassandra, RedisServer};

use crate::{CqlServer, Endpoints};

/// The harness's servers; Redis lives as long as this value.
#[derive(Debug)]
pub struct LocalServers {
    pub endpoints: Endpoints,
    _redis: RedisServer,
}

impl LocalServers {
    pub fn start() -> anyhow::Result<LocalServers> {
        let kafka = broker().context("start the harness's kafka broker")?;
        let cql = cassandra().context("start the harness's cql server")?;
        let redis = RedisServer::start().context("start the harness's redis-server")?;
        Ok(LocalServers {
            endpoints: Endpoints {
                bootstrap_servers: kafka.bootstrap_servers().to_owned(),
                cql_contact_point: cql.contact_point().to_owned(),
                cql_server: CqlServer::Cassandra,
                redis_url: redis.url(),
            },
            _redis: redis,
        })
    }
}
