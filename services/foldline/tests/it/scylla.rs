//! The CQL store end to end: `foldline migrate`, then the orders roles and
//! two gateway replicas as separate processes against Kafka and a real CQL
//! server (Apache Cassandra 5, started by the harness). The gateways run no
//! projector: they read the projections straight from the CQL store, so
//! any replica serves any order, also with the projector gone.

use foldline_platform::config::{CqlConsistency, ScyllaConfig};
use foldline_platform::store::{RowKey, Store};
use foldline_testcontainers::{
    cassandra, free_port, place_body, unique_keyspace, Api, CommandOptions, Deadline, Deployment,
};

use crate::support::binary;

/// The environment that points a process at the CQL store.
pub(crate) fn cql_env(contact_point: &str, keyspace: &str) -> Vec<(String, String)> {
    [
        ("FOLDLINE__STORE__KIND", "scylla".to_owned()),
        (
            "FOLDLINE__STORE__SCYLLA__CONTACT_POINTS",
            format!("[\"{contact_point}\"]"),
        ),
        ("FOLDLINE__STORE__SCYLLA__KEYSPACE", keyspace.to_owned()),
        // One node: ONE is every quorum there is.
        ("FOLDLINE__STORE__SCYLLA__CONSISTENCY", "one".to_owned()),
        (
            "FOLDLINE__STORE__SCYLLA__REPLICATION_FACTOR",
            "1".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

pub(crate) fn as_pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect()
}

/// The test's own connection to the CQL store at `contact_point`.
pub(crate) async fn cql_store(contact_point: &str, keyspace: &str) -> Store {
    Store::connect_scylla(
        &ScyllaConfig {
            contact_points: vec![contact_point.to_owned()],
            keyspace: keyspace.to_owned(),
            consistency: CqlConsistency::One,
            ..ScyllaConfig::default()
        },
        &[],
    )
    .await
    .expect("the test reads the cql store")
}

/// Runs `foldline migrate` to its end; returns its output.
pub(crate) fn migrate(deployment: &Deployment, env: &[(String, String)]) -> String {
    let mut command = std::process::Command::new(binary());
    command.arg("migrate");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FOLDLINE") {
            command.env_remove(key);
        }
    }
    let output = command
        .envs(deployment.env("unused"))
        .envs(env.iter().cloned())
        .current_dir(deployment.dir())
        .output()
        .expect("run foldline migrate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "foldline migrate failed: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_gateways_serve_orders_from_the_cql_store_without_a_projector() {
    let server = cassandra().expect("the cql server starts");
    let deployment = Deployment::new(binary(), "scylla").unwrap();
    let keyspace = unique_keyspace("e2e");
    let env = cql_env(server.contact_point(), &keyspace);

    let first = migrate(&deployment, &env);
    assert!(
        first.contains("0001_platform") && first.contains("0002_orders"),
        "{first}"
    );
    let again = migrate(&deployment, &env);
    assert!(again.contains("applied [], already applied"), "{again}");

    // The domain: processor and projector, with the registry.
    let mut domain = deployment
        .spawn_with("orders", &["registry", "orders"], "unused", &as_pairs(&env))
        .unwrap();
    domain
        .wait_ready(
            &format!("{}/subjects", deployment.registry_url()),
            Deadline::secs(60),
        )
        .await
        .unwrap();

    // Two gateway replicas, nothing else in their processes.
    let mut gateways = Vec::new();
    let mut apis = Vec::new();
    for replica in ["gateway-a", "gateway-b"] {
        let port = free_port().unwrap();
        let mut replica_env = env.clone();
        replica_env.push((
            "FOLDLINE__GATEWAY__LISTEN".to_owned(),
            format!("127.0.0.1:{port}"),
        ));
        let mut gateway = deployment
            .spawn_with(replica, &["gateway"], "unused", &as_pairs(&replica_env))
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        gateway
            .wait_ready(&format!("{url}/readyz"), Deadline::secs(60))
            .await
            .unwrap();
        gateways.push(gateway);
        apis.push(Api::new(&url).unwrap());
    }

    let customer = uuid::Uuid::new_v4().to_string();
    let body = place_body(&customer, "EUR", &[("SKU-1", 3, 700)]);
    let key = format!("{}scylla", deployment.prefix());
    // The waited-for answer comes once the CQL store holds the order.
    let placed = apis[0]
        .place_order(&body, &CommandOptions::keyed_waiting(&key, 20))
        .await
        .unwrap();
    assert_eq!(placed.status, 201, "{placed}");
    let order_id = placed.str("id").expect("the order has an id").to_owned();
    assert_eq!(placed.body["total"], 2100, "{placed}");

    // The other replica, which never saw the command, serves the order.
    let fetched = apis[1].order(&order_id).await.unwrap();
    assert_eq!(fetched.status, 200, "{fetched}");
    assert_eq!(fetched.body, placed.body);
    let listed = apis[1]
        .customer_orders(&customer, None, None)
        .await
        .unwrap();
    assert_eq!(listed.status, 200, "{listed}");
    assert_eq!(listed.body["items"][0]["id"], order_id.as_str(), "{listed}");
    // A retry through the other replica is the same command: the
    // idempotency record is in the shared store.
    let retried = apis[1]
        .place_order(&body, &CommandOptions::keyed(&key))
        .await
        .unwrap();
    assert_eq!(
        retried.str("order_id"),
        Some(order_id.as_str()),
        "{retried}"
    );

    // What the gateways serve is what the CQL store holds.
    let store = cql_store(server.contact_point(), &keyspace).await;
    let row = store
        .get(RowKey::new(
            "order_by_id",
            order_id.clone().into_bytes(),
            Vec::new(),
        ))
        .await
        .unwrap()
        .expect("the order's row is in the cql store");
    assert!(row.position >= 0);

    // Without the projector (or any domain role), reads still answer.
    domain.kill9().unwrap();
    for api in &apis {
        let fetched = api.order(&order_id).await.unwrap();
        assert_eq!(fetched.status, 200, "{fetched}");
        assert_eq!(fetched.body, placed.body);
    }
    let unknown = apis[0]
        .order(&uuid::Uuid::new_v4().to_string())
        .await
        .unwrap();
    assert_eq!(unknown.status, 404, "{unknown}");
}
