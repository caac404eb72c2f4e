//! The scenarios, each against [`Endpoints`] only: the same code runs on
//! the harness's servers and on containers.

use anyhow::Context;
use foldline::app;
use foldline::roles::{cql_migrations, Role};
use foldline_contracts::topology::Topology;
use foldline_platform::cache::RowCache;
use foldline_platform::config::{Config, CqlConsistency, ScyllaConfig};
use foldline_platform::store::{migrations, RowKey, Store, StoredRow};
use foldline_testcontainers::deployment::TEST_KEY_ENCRYPTION_KEY;
use foldline_testcontainers::{
    free_port, place_body, poll_until, store_contract, unique_keyspace, Api, CommandOptions,
    Deadline,
};
use scylla::client::session_builder::SessionBuilder;

use crate::Endpoints;

/// The table the gateway reads one order from (and the cache caches).
const ORDER_BY_ID: &str = "order_by_id";

/// The store contract (`foldline_testcontainers::store_contract`, every
/// case) on the CQL server, in a keyspace of its own.
pub async fn store_contract(endpoints: &Endpoints) -> anyhow::Result<()> {
    let keyspace = unique_keyspace("contract");
    create_keyspace(endpoints, &keyspace).await?;
    let config = ScyllaConfig {
        contact_points: vec![endpoints.cql_contact_point.clone()],
        keyspace,
        // One node: ONE is every quorum there is.
        consistency: CqlConsistency::One,
        replication_factor: 1,
        page_size: store_contract::CQL_PAGE_SIZE,
        ..ScyllaConfig::default()
    };
    let migrations = store_contract::migrations();
    migrations::migrate(&config, &migrations)
        .await
        .context("migrate the contract keyspace")?;
    let store = Store::connect_scylla(&config, &migrations)
        .await
        .context("connect to the contract keyspace")?;
    let backend = format!(
        "the cql store on {:?} at {}",
        endpoints.cql_server, endpoints.cql_contact_point
    );
    store_contract::run_every_case(&backend, || {
        let store = store.clone();
        async move { Ok(store) }
    })
    .await
}

/// The core flow: `foldline migrate` of a fresh keyspace, then the
/// registry, the gateway and the orders domain (in this process, through
/// the library, configured by the documented `FOLDLINE__*` variables)
/// against Kafka, the CQL store and the Redis cache; an order placed
/// through the gateway and read back, the read filling Redis; the order
/// cancelled and read again, which must never serve the cached placed
/// order; the customer's list. Stops the roles cleanly at the end.
pub async fn core_flow(endpoints: &Endpoints) -> anyhow::Result<()> {
    let keyspace = unique_keyspace("flow");
    create_keyspace(endpoints, &keyspace).await?;
    let config = Config::load(None, platform_env(endpoints, &keyspace)?)
        .context("load the platform's configuration")?;
    migrations::migrate(&config.store.scylla, &cql_migrations())
        .await
        .context("migrate the flow keyspace")?;
    let roles = ["registry", "gateway", "orders"]
        .into_iter()
        .map(str::parse::<Role>)
        .collect::<Result<Vec<_>, _>>()
        .context("name the roles")?;
    let topology = Topology::embedded().context("read the topology")?;
    let running = app::start(config.clone(), topology, &roles)
        .await
        .context("start the registry, gateway and orders roles")?;
    let gateway = running.gateway.context("the gateway role runs")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let platform = tokio::spawn(running.run_until(async {
        let _ = stopped.await;
    }));
    let flow = place_read_cancel_read(&config, &format!("http://{gateway}")).await;
    let _ = stop.send(());
    let stopped = platform.await.context("join the platform's task")?;
    flow?;
    stopped.context("the platform stops cleanly when asked")
}

/// The environment a deployment gives every role (deploy/README.md), here
/// with a topic prefix, keyspace and cache prefix of this run's own and
/// free loopback ports.
pub fn platform_env(
    endpoints: &Endpoints,
    keyspace: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let registry = format!("127.0.0.1:{}", free_port()?);
    let gateway = format!("127.0.0.1:{}", free_port()?);
    let pairs = [
        (
            "KAFKA__BOOTSTRAP_SERVERS",
            endpoints.bootstrap_servers.clone(),
        ),
        ("KAFKA__TOPIC_PREFIX", format!("flow{}-", &unique[..8])),
        ("REGISTRY_SERVER__LISTEN", registry.clone()),
        ("REGISTRY__URL", format!("http://{registry}")),
        ("GATEWAY__LISTEN", gateway),
        ("STORE__KIND", "scylla".to_owned()),
        (
            "STORE__SCYLLA__CONTACT_POINTS",
            format!("[\"{}\"]", endpoints.cql_contact_point),
        ),
        ("STORE__SCYLLA__KEYSPACE", keyspace.to_owned()),
        ("STORE__SCYLLA__CONSISTENCY", "one".to_owned()),
        ("STORE__SCYLLA__REPLICATION_FACTOR", "1".to_owned()),
        ("CACHE__KIND", "redis".to_owned()),
        ("CACHE__URL", endpoints.redis_url.clone()),
        ("CACHE__KEY_PREFIX", format!("flow{}:", &unique[..8])),
        (
            "PERSONAL_DATA__KEY_ENCRYPTION_KEY",
            TEST_KEY_ENCRYPTION_KEY.to_owned(),
        ),
    ];
    Ok(pairs
        .into_iter()
        .map(|(key, value)| (format!("FOLDLINE__{key}"), value))
        .collect())
}

async fn place_read_cancel_read(config: &Config, gateway: &str) -> anyhow::Result<()> {
    let api = Api::new(gateway)?;
    let cache = RowCache::new(&config.cache).context("configure the cache inspector")?;
    let customer = uuid::Uuid::new_v4().to_string();
    let unique = uuid::Uuid::new_v4().simple().to_string();

    let placed = api
        .place_order(
            &place_body(&customer, "EUR", &[("SKU-1", 2, 1250)]),
            &CommandOptions::keyed_waiting(&format!("{unique}-place"), 20),
        )
        .await
        .context("place an order")?;
    anyhow::ensure!(placed.status == 201, "placing an order answered {placed}");
    anyhow::ensure!(placed.body["total"] == 2500, "the placed order: {placed}");
    let order_id = placed
        .str("id")
        .context("the placed order has an id")?
        .to_owned();

    let fetched = api.order(&order_id).await.context("read the order")?;
    anyhow::ensure!(
        fetched.status == 200 && fetched.body == placed.body,
        "reading the placed order back answered {fetched}; it was placed as {placed}"
    );
    let key = RowKey::new(ORDER_BY_ID, order_id.clone().into_bytes(), Vec::new());
    let first = cached_row_after(&cache, &key, -1, "the read to fill redis").await?;

    let cancelled = api
        .cancel_order(
            &order_id,
            "no longer needed",
            &CommandOptions::keyed_waiting(&format!("{unique}-cancel"), 20),
        )
        .await
        .context("cancel the order")?;
    anyhow::ensure!(
        cancelled.status == 200 && cancelled.body["status"] == "cancelled",
        "cancelling the order answered {cancelled}"
    );
    let again = api.order(&order_id).await.context("read the order again")?;
    anyhow::ensure!(
        again.status == 200 && again.body == cancelled.body,
        "a read after the cancel answered {again}, not the cancelled order {cancelled}: \
         the cache must never serve the placed order after the store moved past it"
    );
    cached_row_after(
        &cache,
        &key,
        first.position,
        "the read after the cancel to refill redis at the newer position",
    )
    .await?;

    let listed = api
        .customer_orders(&customer, None, None)
        .await
        .context("list the customer's orders")?;
    anyhow::ensure!(
        listed.status == 200 && listed.body["items"][0]["id"] == order_id.as_str(),
        "the customer's orders: {listed}"
    );
    Ok(())
}

/// Waits until Redis holds `key` at a position after `position`.
async fn cached_row_after(
    cache: &RowCache,
    key: &RowKey,
    position: i64,
    what: &str,
) -> anyhow::Result<StoredRow> {
    poll_until(what, Deadline::secs(10), || async {
        match cache.get(key).await {
            Some(row) if row.position > position => Ok(Some(row)),
            Some(row) => Err(format!("redis holds the row at position {}", row.position)),
            None => Err("redis holds no entry".to_owned()),
        }
    })
    .await
}

/// Creates `keyspace` the way [`crate::CqlServer::create_keyspace`] says,
/// once the server accepts a session.
async fn create_keyspace(endpoints: &Endpoints, keyspace: &str) -> anyhow::Result<()> {
    let contact_point = &endpoints.cql_contact_point;
    let session = poll_until(
        &format!("a cql session with {contact_point}"),
        Deadline::secs(60),
        || async {
            SessionBuilder::new()
                .known_node(contact_point)
                .build()
                .await
                .map(Some)
                .map_err(|error| error.to_string())
        },
    )
    .await?;
    let statement = endpoints.cql_server.create_keyspace(keyspace);
    session
        .query_unpaged(statement.clone(), ())
        .await
        .with_context(|| format!("run {statement}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CqlServer;
    use foldline_platform::config::{CacheKind, StoreKind};

    #[test]
    fn the_platform_env_configures_every_role_for_scylla_redis_and_kafka() {
        let endpoints = Endpoints {
            bootstrap_servers: "127.0.0.1:9092".to_owned(),
            cql_contact_point: "127.0.0.1:9042".to_owned(),
            cql_server: CqlServer::Scylla,
            redis_url: "redis://127.0.0.1:6379".to_owned(),
        };
        let env = platform_env(&endpoints, "flow_1").expect("free ports");
        let config = Config::load(None, env).expect("the env is a valid configuration");
        assert_eq!(config.kafka.bootstrap_servers, "127.0.0.1:9092");
        assert!(config.kafka.topic_prefix.starts_with("flow"));
        assert_eq!(config.store.kind, StoreKind::Scylla);
        assert_eq!(config.store.scylla.contact_points, vec!["127.0.0.1:9042"]);
        assert_eq!(config.store.scylla.keyspace, "flow_1");
        assert_eq!(config.store.scylla.consistency, CqlConsistency::One);
        assert_eq!(config.cache.kind, CacheKind::Redis);
        assert_eq!(config.cache.url.expose(), "redis://127.0.0.1:6379");
        assert_eq!(
            config.registry.url,
            format!("http://{}", config.registry_server.listen)
        );
        assert!(config.personal_data.key_encryption_key.is_some());
        assert_ne!(
            config.gateway.listen.port(),
            config.registry_server.listen.port()
        );
    }
}
