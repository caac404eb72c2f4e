//! A Redis outage under two stateless gateways on the CQL store (a real
//! Cassandra and a real redis-server, both started by the harness): the
//! gateways cache `GET /v1/orders/{id}` and `GET /v1/users/{id}` in Redis
//! and keep their idempotency records there. With Redis killed every read
//! keeps answering, correctly, from the store; keyed commands are refused
//! with 503 as ARCHITECTURE.md says (*Shared gateway state*), commands
//! without a key are accepted; with Redis back the cache refills and hits
//! return (Redis's own `keyspace_hits`), and keyed commands work again.
//! Read latencies during the outage are printed, not asserted.

use std::time::{Duration, Instant};

use foldline_testcontainers::{
    cassandra, place_body, poll_until, unique_keyspace, Api, CommandOptions, Deadline, Deployment,
    RedisServer,
};
use serde_json::{json, Value};

use crate::scylla::{as_pairs, cql_env, migrate};
use crate::shared_gateway::{place_keyed_once_redis_answers, spawn_replica};
use crate::support::binary;

/// `keyspace_hits` of Redis's `INFO stats`.
pub(crate) async fn keyspace_hits(redis: &RedisServer) -> anyhow::Result<u64> {
    let client = redis::Client::open(redis.url())?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut connection)
        .await?;
    info.lines()
        .find_map(|line| line.strip_prefix("keyspace_hits:"))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no keyspace_hits in INFO stats: {info}"))
}

/// Every expected resource through every gateway, once; the latency of
/// each read is added to `latencies`.
async fn read_all(apis: &[Api], expected: &[(String, Value)], latencies: &mut Vec<Duration>) {
    for api in apis {
        for (path, body) in expected {
            let started = Instant::now();
            let answer = api.get(path).await.expect("the gateway answers");
            latencies.push(started.elapsed());
            assert_eq!(
                answer.status,
                200,
                "GET {path} via {}: {answer}",
                api.base()
            );
            assert_eq!(&answer.body, body, "GET {path} via {}", api.base());
        }
    }
}

fn summary(latencies: &mut [Duration]) -> String {
    latencies.sort();
    let at = |quantile: f64| {
        let index = ((latencies.len() as f64 * quantile).ceil() as usize).saturating_sub(1);
        latencies[index.min(latencies.len() - 1)]
    };
    format!(
        "{} reads: p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        at(0.50),
        at(0.99),
        at(1.0)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_survive_a_redis_outage_keyed_commands_wait_for_it_and_hits_return() {
    let server = cassandra().expect("the cql server starts");
    let mut redis = RedisServer::start().expect("redis-server starts");
    let deployment = Deployment::new(binary(), "redis-outage").unwrap();
    let keyspace = unique_keyspace("redis_outage");
    let mut env = cql_env(server.contact_point(), &keyspace);
    migrate(&deployment, &env);
    env.extend(
        [
            ("FOLDLINE__CACHE__KIND", "redis".to_owned()),
            ("FOLDLINE__CACHE__URL", redis.url()),
            (
                "FOLDLINE__CACHE__TABLES",
                "[\"order_by_id\", \"user_by_id\"]".to_owned(),
            ),
            (
                "FOLDLINE__GATEWAY__IDEMPOTENCY__BACKEND",
                "redis".to_owned(),
            ),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value)),
    );
    // The domains' projectors invalidate what they write, so they are
    // configured with the same cache.
    let _domains = deployment
        .spawn_ready_with(
            "domains",
            &["registry", "orders", "users"],
            "unused",
            &as_pairs(&env),
            Deadline::secs(60),
        )
        .await
        .unwrap();
    let (_a, api_a) = spawn_replica(&deployment, "gateway-a", &env).await;
    let (_b, api_b) = spawn_replica(&deployment, "gateway-b", &env).await;
    let apis = [api_a.clone(), api_b.clone()];

    let mut expected = Vec::new();
    for index in 0..3 {
        let body = place_body(
            &uuid::Uuid::new_v4().to_string(),
            "EUR",
            &[("SKU-1", index + 1, 250)],
        );
        let key = format!("{}order-{index}", deployment.prefix());
        let placed = apis[index as usize % 2]
            .place_order(&body, &CommandOptions::keyed_waiting(&key, 30))
            .await
            .unwrap();
        assert_eq!(placed.status, 201, "{placed}");
        let id = placed.str("id").unwrap().to_owned();
        expected.push((format!("/v1/orders/{id}"), placed.body.clone()));
    }
    for index in 0..2 {
        let body = json!({
            "email": format!("outage{index}.{}@example.org", uuid::Uuid::new_v4().simple()),
            "name": format!("Outage {index}"),
            "phone": "+44 20 7946 0958",
        });
        let key = format!("{}user-{index}", deployment.prefix());
        let registered = apis[index % 2]
            .command(
                "/v1/users",
                body.to_string(),
                &CommandOptions::keyed_waiting(&key, 30),
            )
            .await
            .unwrap();
        assert_eq!(registered.status, 201, "{registered}");
        let id = registered.str("id").unwrap().to_owned();
        expected.push((format!("/v1/users/{id}"), registered.body.clone()));
    }

    // Warm: the first reads fill, the next ones hit.
    let mut warm = Vec::new();
    read_all(&apis, &expected, &mut warm).await;
    read_all(&apis, &expected, &mut warm).await;
    let hits_before = keyspace_hits(&redis).await.unwrap();
    assert!(hits_before > 0, "the warm reads hit the cache");

    redis.stop().unwrap();
    let mut outage = Vec::new();
    for _ in 0..10 {
        read_all(&apis, &expected, &mut outage).await;
    }
    // Keyed commands wait for Redis; commands without a key go on.
    let body = place_body(
        &uuid::Uuid::new_v4().to_string(),
        "EUR",
        &[("SKU-9", 1, 100)],
    );
    let keyed_key = format!("{}during", deployment.prefix());
    for api in &apis {
        let refused = api
            .place_order(&body, &CommandOptions::keyed_waiting(&keyed_key, 30))
            .await
            .unwrap();
        assert_eq!(refused.status, 503, "{refused}");
        assert!(refused.is_problem(), "{refused}");
        assert_eq!(refused.code(), Some("idempotency_unavailable"), "{refused}");
        assert_eq!(refused.header("retry-after"), Some("1"), "{refused}");
    }
    let unkeyed = api_b
        .place_order(&body, &CommandOptions::waiting(30))
        .await
        .unwrap();
    assert_eq!(unkeyed.status, 201, "{unkeyed}");
    let id = unkeyed.str("id").unwrap().to_owned();
    expected.push((format!("/v1/orders/{id}"), unkeyed.body.clone()));
    read_all(&apis, &expected, &mut outage).await;

    redis.start_again().unwrap();
    // A fresh server counts from zero: any hit now is a refilled entry.
    let hits_after = poll_until("cache hits return", Deadline::secs(60), || {
        let (apis, expected, redis) = (&apis, &expected, &redis);
        async move {
            let mut ignored = Vec::new();
            read_all(apis, expected, &mut ignored).await;
            let hits = keyspace_hits(redis)
                .await
                .map_err(|error| error.to_string())?;
            Ok((hits > 0).then_some(hits))
        }
    })
    .await
    .unwrap();
    let mut recovered = Vec::new();
    read_all(&apis, &expected, &mut recovered).await;

    // Keyed commands again, and a retry through the other replica is the
    // same command.
    let key = format!("{}after", deployment.prefix());
    let placed =
        place_keyed_once_redis_answers(&api_a, &body, &CommandOptions::keyed_waiting(&key, 30))
            .await;
    assert_eq!(placed.status, 201, "{placed}");
    let retried = place_keyed_once_redis_answers(&api_b, &body, &CommandOptions::keyed(&key)).await;
    assert_eq!(retried.status, 202, "{retried}");
    assert_eq!(retried.str("order_id"), placed.str("id"), "{retried}");

    println!(
        "redis outage, GET through 2 gateways on the cql store: warm {}; redis down {}; recovered {} (keyspace_hits before {hits_before}, after restart {hits_after})",
        summary(&mut warm),
        summary(&mut outage),
        summary(&mut recovered),
    );
}
