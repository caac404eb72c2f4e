//! Foldline's scenarios written once against [`Endpoints`] (a Kafka
//! bootstrap list, a CQL contact point, a Redis URL), and two ways to get
//! those endpoints:
//!
//! - [`local`]: the servers the harness starts as processes
//!   (`foldline-testcontainers`: Apache Kafka and Apache Cassandra from
//!   their Maven jars, Debian's `redis-server`). `cargo test --workspace`,
//!   and so `.ci/run`, runs every scenario on these.
//! - [`containers`]: Kafka, ScyllaDB and Redis containers through
//!   testcontainers-rs, where a Docker engine answers a ping. Compiled with
//!   the `docker` feature only; its tests are `#[ignore]`d and run by
//!   `.github/workflows/containers.yml` with `--ignored`.
//!
//! The scenarios ([`scenarios`]): the core flow (an order placed through
//! the gateway and read back, on the CQL store with the Redis cache), and
//! the store contract (`foldline_testcontainers::store_contract`) on the
//! CQL server.

pub mod containers;
pub mod local;
pub mod scenarios;

/// Where the servers a scenario runs against listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// `host:port[,host:port]` for `kafka.bootstrap_servers`.
    pub bootstrap_servers: String,
    /// `host:port` of a CQL node.
    pub cql_contact_point: String,
    /// What the CQL server is: it decides how a keyspace is created.
    pub cql_server: CqlServer,
    /// `redis://host:port`.
    pub redis_url: String,
}

/// The CQL server behind [`Endpoints::cql_contact_point`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CqlServer {
    /// Apache Cassandra (the harness's, standing in for ScyllaDB).
    Cassandra,
    /// ScyllaDB, whose new keyspaces use tablets by default, where its
    /// 2025.x releases refuse lightweight transactions (the store's
    /// migration lock and `insert_if_absent`): scenarios create their
    /// keyspace with tablets off before `foldline migrate` runs.
    Scylla,
}

impl CqlServer {
    /// The `CREATE KEYSPACE` a scenario runs before migrating (`migrate`
    /// keeps an existing keyspace as it is): one replica, and on ScyllaDB
    /// vnodes instead of tablets.
    pub fn create_keyspace(self, keyspace: &str) -> String {
        let replication = "{'class': 'NetworkTopologyStrategy', 'replication_factor': 1}";
        match self {
            CqlServer::Cassandra => {
                format!("CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}")
            }
            CqlServer::Scylla => format!(
                "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication} AND tablets = {{'enabled': false}}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scylla_keyspace_turns_tablets_off_and_a_cassandra_one_has_no_such_option() {
        let scylla = CqlServer::Scylla.create_keyspace("flow_1");
        assert!(
            scylla.starts_with("CREATE KEYSPACE IF NOT EXISTS flow_1 WITH replication = {'class': 'NetworkTopologyStrategy', 'replication_factor': 1}"),
            "{scylla}"
        );
        assert!(
            scylla.ends_with("AND tablets = {'enabled': false}"),
            "{scylla}"
        );
        let cassandra = CqlServer::Cassandra.create_keyspace("flow_1");
        assert!(!cassandra.contains("tablets"), "{cassandra}");
        assert!(
            cassandra.ends_with("'replication_factor': 1}"),
            "{cassandra}"
        );
    }
}
