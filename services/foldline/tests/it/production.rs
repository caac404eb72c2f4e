//! The production shape, all of it at once: every role its own `foldline
//! run` process, configured only by documented keys, against
//!
//! - the CQL store (Apache Cassandra 5, started by the harness), migrated by
//!   `foldline migrate`;
//! - Redis (a real `redis-server`): the gateways' read cache, their shared
//!   idempotency records and rate-limit counters, and the projectors'
//!   cache invalidation;
//! - an external schema registry: the registry role as its own process with
//!   basic auth and TLS (a PKI made with the `openssl` CLI);
//! - Apache Kafka, and the payment provider simulator.
//!
//! Two gateway replicas, neither beside a projector, carry the saga from
//! registration to confirmation, a decline and a refund. Every answer the
//! test checks comes from a replica other than the one that took the
//! command, so it came through the shared store, cache and idempotency
//! records; the cached reads follow the projection as the saga moves the
//! order on, and Redis counts their hits.

use foldline_platform::store::RowKey;
use foldline_testcontainers::{
    cassandra, free_port, poll_until, server_pki, unique_keyspace, Api, ApiResponse,
    CommandOptions, Deadline, Deployment, RedisServer,
};
use serde_json::{json, Value};

use crate::redis_outage::keyspace_hits;
use crate::registry::{https_client, subjects, wait_answers, SecuredRegistry};
use crate::scylla::{as_pairs, cql_env, cql_store, migrate};
use crate::shared_gateway::spawn_replica;
use crate::support::{binary, spawn_simulator};

/// The simulator's card that it declines (README, *The order saga*).
const DECLINED_CARD: &str = "tok_chargeDeclined";

/// Reads `path` through `api` until `done` accepts the body.
async fn read_until(api: &Api, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    poll_until(what, Deadline::secs(90), || async {
        let answer = api.get(path).await.map_err(|error| error.to_string())?;
        if answer.status != 200 {
            return Err(format!("GET {path}: {answer}"));
        }
        Ok(done(&answer.body).then_some(answer.body))
    })
    .await
    .unwrap()
}

fn created(answer: &ApiResponse) -> String {
    assert_eq!(answer.status, 201, "{answer}");
    answer
        .str("id")
        .expect("a created resource's id")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_runs_on_cql_redis_and_a_secured_registry_with_stateless_gateways() {
    let server = cassandra().expect("the cql server starts");
    let redis = RedisServer::start().expect("redis-server starts");
    let deployment = Deployment::new(binary(), "production").unwrap();
    let pki = server_pki(&deployment.dir().join("pki")).unwrap();
    let registry = SecuredRegistry::new(&deployment, &pki);
    let keyspace = unique_keyspace("production");
    let simulator_port = free_port().unwrap();
    let simulator_url = format!("http://127.0.0.1:{simulator_port}");

    let mut env = cql_env(server.contact_point(), &keyspace);
    env.extend(registry.client.iter().cloned());
    env.extend(
        [
            ("FOLDLINE__CACHE__KIND", "redis".to_owned()),
            ("FOLDLINE__CACHE__URL", redis.url()),
            (
                "FOLDLINE__CACHE__TABLES",
                r#"["order_by_id", "user_by_id"]"#.to_owned(),
            ),
            (
                "FOLDLINE__GATEWAY__IDEMPOTENCY__BACKEND",
                "redis".to_owned(),
            ),
            ("FOLDLINE__GATEWAY__RATE_LIMIT__KIND", "redis".to_owned()),
            (
                "FOLDLINE__GATEWAY__RATE_LIMIT__REQUESTS",
                "100000".to_owned(),
            ),
            ("FOLDLINE__SAGA__ENABLED", "true".to_owned()),
            ("FOLDLINE__PAYMENTS__PROVIDER__URL", simulator_url.clone()),
        ]
        .map(|(key, value)| (key.to_owned(), value)),
    );
    let migrated = migrate(&deployment, &env);
    assert!(migrated.contains("0001_platform"), "{migrated}");

    // The registry first: every other process registers its schemas there
    // at start-up, over TLS, with the credentials.
    let _registry = deployment
        .spawn_with(
            "registry",
            &["registry"],
            "store-registry",
            &as_pairs(&registry.server),
        )
        .unwrap();
    let http = https_client(&pki.ca);
    let subjects_url = format!(
        "{}/subjects",
        deployment.registry_url().replacen("http://", "https://", 1)
    );
    wait_answers(&http, &subjects_url).await;

    let _simulator = spawn_simulator(&deployment, &env, simulator_port).await;

    // One process per service, as a deployment would run them.
    let mut services = Vec::new();
    for (name, roles) in [
        ("users", ["users-processor", "users-projector"]),
        ("orders", ["orders-processor", "orders-projector"]),
        ("payments", ["payments-processor", "payments-projector"]),
    ] {
        let mut service_env = env.clone();
        service_env.push((
            "FOLDLINE__PROCESSOR__INSTANCE_ID".to_owned(),
            name.to_owned(),
        ));
        services.push(
            deployment
                .spawn_with(name, &roles, "unused", &as_pairs(&service_env))
                .unwrap(),
        );
    }
    let (_gateway_a, a) = spawn_replica(&deployment, "gateway-a", &env).await;
    let (_gateway_b, b) = spawn_replica(&deployment, "gateway-b", &env).await;
    let report = || {
        services
            .iter()
            .map(|process| process.report(30))
            .collect::<Vec<_>>()
            .join("\n")
    };

    // Register through A; B serves the user from the store, then the cache.
    let prefix = deployment.prefix();
    let email = format!("{prefix}grace@example.org");
    let registered = a
        .command(
            "/v1/users",
            json!({"email": email, "name": "Grace Hopper"}).to_string(),
            &CommandOptions::keyed_waiting(&format!("{prefix}register"), 30),
        )
        .await
        .unwrap();
    let user = created(&registered);
    let user_path = format!("/v1/users/{user}");
    let read_user = read_until(&b, &user_path, "the user through b", |body| {
        body["id"] == user.as_str()
    })
    .await;
    assert_eq!(read_user["email"], email.as_str(), "{read_user}");

    // A paid order placed through B; A follows it to confirmed, through
    // its cache, which the orders projector invalidates as the saga moves.
    let order_body = |card: Option<&str>| {
        let mut body = json!({
            "customer_id": user,
            "currency": "EUR",
            "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": 1250}],
        });
        if let Some(card) = card {
            body["card_token"] = json!(card);
        }
        body
    };
    let paid_key = format!("{prefix}paid");
    let placed = b
        .place_order(
            &order_body(None),
            &CommandOptions::keyed_waiting(&paid_key, 30),
        )
        .await
        .unwrap();
    let paid = created(&placed);
    assert_eq!(placed.body["status"], "placed", "{placed}");
    let paid_path = format!("/v1/orders/{paid}");
    let confirmed = read_until(&a, &paid_path, "the paid order confirmed", |body| {
        body["status"] == "confirmed"
    })
    .await;
    assert_eq!(confirmed["total"], 2500, "{confirmed}\n{}", report());
    // The same key through the other replica is the same command.
    let retried = a
        .place_order(&order_body(None), &CommandOptions::keyed(&paid_key))
        .await
        .unwrap();
    assert_eq!(retried.str("order_id"), Some(paid.as_str()), "{retried}");

    // A declined card, placed through A, rejected as B reads it.
    let declined = created(
        &a.place_order(
            &order_body(Some(DECLINED_CARD)),
            &CommandOptions::keyed_waiting(&format!("{prefix}declined"), 30),
        )
        .await
        .unwrap(),
    );
    let rejected = read_until(
        &b,
        &format!("/v1/orders/{declined}"),
        "the declined order rejected",
        |body| body["status"] == "payment_rejected",
    )
    .await;
    assert_eq!(rejected["id"], declined.as_str(), "{rejected}");

    // Cancel through A; B sees the refund of everything captured.
    let cancelled = a
        .cancel_order(
            &paid,
            "changed my mind",
            &CommandOptions::keyed_waiting(&format!("{prefix}cancel"), 30),
        )
        .await
        .unwrap();
    assert!(
        matches!(cancelled.status, 200 | 201),
        "{cancelled}\n{}",
        report()
    );
    let payments = read_until(
        &b,
        &format!("/v1/orders/{paid}/payments"),
        "the paid order refunded",
        |body| body["payments"][0]["refunded"] == 2500,
    )
    .await;
    assert_eq!(payments["payments"][0]["status"], "captured", "{payments}");
    let after_cancel = read_until(&b, &paid_path, "the cancelled order through b", |body| {
        body["status"] == "cancelled"
    })
    .await;
    assert_eq!(after_cancel["id"], paid.as_str());

    // What the simulator really did: one authorization, one decline, one
    // capture, one refund, nothing twice.
    let counts: Value = reqwest::get(format!("{simulator_url}/v1/simulator/counts"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (field, expected) in [
        ("authorizations", 1),
        ("declines", 1),
        ("captures", 1),
        ("refunds", 1),
    ] {
        assert_eq!(counts[field], expected, "{field}: {counts}");
    }

    // Reads of settled rows are cache hits, counted by Redis itself.
    let hits_before = keyspace_hits(&redis).await.unwrap();
    for api in [&a, &b] {
        for path in [&paid_path, &user_path] {
            let answer = api.get(path).await.unwrap();
            assert_eq!(answer.status, 200, "{answer}");
        }
    }
    let hits_after = keyspace_hits(&redis).await.unwrap();
    assert!(
        hits_after >= hits_before + 2,
        "keyspace_hits {hits_before} -> {hits_after}"
    );

    // The rows are in the CQL store; the subjects in the secured registry.
    let store = cql_store(server.contact_point(), &keyspace).await;
    for (table, id) in [("order_by_id", &paid), ("user_by_id", &user)] {
        let row = store
            .get(RowKey::new(table, id.clone().into_bytes(), Vec::new()))
            .await
            .unwrap();
        assert!(row.is_some(), "{table} {id} is in the cql store");
    }
    let subjects = subjects(&http, &subjects_url).await;
    for topic in ["users.events", "orders.events", "payments.events"] {
        let topic = deployment.topic(topic);
        assert!(
            subjects.iter().any(|subject| subject.starts_with(&topic)),
            "no subject of {topic}: {subjects:?}"
        );
    }
}
