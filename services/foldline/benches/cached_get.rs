//! `GET /v1/orders/{id}` through a gateway reading the CQL store directly
//! vs through one with the Redis cache in front, same run, same orders:
//! both gateways are separate processes on the same keyspace (Apache
//! Cassandra 5, one node, started by the harness; redis-server started by
//! the harness). Closed loop, fixed concurrency, latency per request.
//! A third gateway has the cache too, its Redis killed before the
//! measurement: the price of a Redis outage per read.
//! Indicative only on a shared 2-core machine (the load generator, both
//! gateways, Cassandra, Redis and Kafka share it).
//!
//! `cargo bench -p foldline --bench cached_get [-- SECONDS]` (default 10).

use std::sync::Arc;
use std::time::{Duration, Instant};

use foldline_testcontainers::{
    cassandra, free_port, place_body, unique_keyspace, Api, CommandOptions, Deadline, Deployment,
    RedisServer,
};

const BINARY: &str = env!("CARGO_BIN_EXE_foldline");
const ORDERS: usize = 200;
const CONCURRENCY: usize = 16;

fn env(contact_point: &str, keyspace: &str) -> Vec<(String, String)> {
    [
        ("FOLDLINE__STORE__KIND", "scylla".to_owned()),
        (
            "FOLDLINE__STORE__SCYLLA__CONTACT_POINTS",
            format!("[\"{contact_point}\"]"),
        ),
        ("FOLDLINE__STORE__SCYLLA__KEYSPACE", keyspace.to_owned()),
        ("FOLDLINE__STORE__SCYLLA__CONSISTENCY", "one".to_owned()),
        (
            "FOLDLINE__STORE__SCYLLA__REPLICATION_FACTOR",
            "1".to_owned(),
        ),
        (
            "FOLDLINE__STORE__SCYLLA__MIGRATE_ON_START",
            "true".to_owned(),
        ),
        ("RUST_LOG", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

async fn gateway(
    deployment: &Deployment,
    name: &str,
    env: &[(String, String)],
) -> anyhow::Result<(foldline_testcontainers::FoldlineProcess, Api)> {
    let port = free_port()?;
    let mut env = env.to_vec();
    env.push((
        "FOLDLINE__GATEWAY__LISTEN".to_owned(),
        format!("127.0.0.1:{port}"),
    ));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut process = deployment.spawn_with(name, &["gateway"], "unused", &pairs)?;
    let url = format!("http://127.0.0.1:{port}");
    process
        .wait_ready(&format!("{url}/readyz"), Deadline::secs(60))
        .await?;
    Ok((process, Api::new(&url)?))
}

/// Closed loop over `ids` for `duration`: (requests/s, p50, p99).
async fn read_loop(
    api: &Api,
    ids: &Arc<Vec<String>>,
    duration: Duration,
) -> anyhow::Result<(f64, Duration, Duration)> {
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..CONCURRENCY {
        let (api, ids) = (api.clone(), Arc::clone(ids));
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut next = worker;
            while started.elapsed() < duration {
                let id = &ids[next % ids.len()];
                next += CONCURRENCY;
                let sent = Instant::now();
                let answer = api.order(id).await?;
                anyhow::ensure!(answer.status == 200, "GET answered {answer}");
                latencies.push(sent.elapsed());
            }
            Ok(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(latencies) = workers.join_next().await {
        all.extend(latencies??);
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    let at = |quantile: f64| all[((all.len() as f64 - 1.0) * quantile) as usize];
    Ok((all.len() as f64 / elapsed.as_secs_f64(), at(0.5), at(0.99)))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let seconds = std::env::args()
        .skip(1)
        .find_map(|argument| argument.parse::<u64>().ok())
        .unwrap_or(10);
    let server = cassandra()?;
    let redis = RedisServer::start()?;
    let deployment = Deployment::new(BINARY, "cached-get")?;
    let store_env = env(server.contact_point(), &unique_keyspace("cached_get"));
    let pairs: Vec<(&str, &str)> = store_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut domain = deployment.spawn_with("orders", &["registry", "orders"], "unused", &pairs)?;
    domain
        .wait_ready(
            &format!("{}/subjects", deployment.registry_url()),
            Deadline::secs(60),
        )
        .await?;
    let (_plain, plain) = gateway(&deployment, "gateway-store", &store_env).await?;
    let mut cached_env = store_env.clone();
    cached_env.push(("FOLDLINE__CACHE__KIND".to_owned(), "redis".to_owned()));
    cached_env.push(("FOLDLINE__CACHE__URL".to_owned(), redis.url()));
    let (_cached, cached) = gateway(&deployment, "gateway-cached", &cached_env).await?;
    // A third gateway whose Redis is killed before the measurement: what a
    // Redis outage costs a read (the circuit breaker skips Redis).
    let mut lost_redis = RedisServer::start()?;
    let mut down_env = store_env.clone();
    down_env.push(("FOLDLINE__CACHE__KIND".to_owned(), "redis".to_owned()));
    down_env.push(("FOLDLINE__CACHE__URL".to_owned(), lost_redis.url()));
    let (_down, down) = gateway(&deployment, "gateway-redis-down", &down_env).await?;

    let mut ids = Vec::with_capacity(ORDERS);
    for _ in 0..ORDERS {
        let customer = uuid::Uuid::new_v4().to_string();
        let body = place_body(&customer, "EUR", &[("SKU-1", 1, 100)]);
        let placed = plain
            .place_order(&body, &CommandOptions::waiting(20))
            .await?;
        anyhow::ensure!(placed.status == 201, "place answered {placed}");
        ids.push(placed.str("id").unwrap_or_default().to_owned());
    }
    let ids = Arc::new(ids);
    let duration = Duration::from_secs(seconds);
    // A short warm-up each: prepared statements, connections, cache fills.
    read_loop(&plain, &ids, Duration::from_secs(2)).await?;
    read_loop(&cached, &ids, Duration::from_secs(2)).await?;
    read_loop(&down, &ids, Duration::from_secs(2)).await?;
    lost_redis.stop()?;
    for (name, api) in [
        ("cql store", &plain),
        ("redis cache", &cached),
        ("redis cache, redis down", &down),
    ] {
        let (rate, p50, p99) = read_loop(api, &ids, duration).await?;
        println!(
            "GET /v1/orders/{{id}} via {name}: {rate:.0} req/s, p50 {p50:.2?}, p99 {p99:.2?} ({CONCURRENCY} connections, {seconds} s, {ORDERS} orders)"
        );
    }
    Ok(())
}
