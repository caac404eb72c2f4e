//! The projector's write rate into each store: a backlog of placed orders
//! in `orders.events`, then a fresh `foldline run orders-projector` folding
//! it into the embedded store or into the CQL store (Apache Cassandra 5,
//! one node, started by the harness), timed from its first committed batch
//! to its last. Real processes, real Kafka; indicative only on a shared
//! 2-core machine (Cassandra, Kafka, the projector and the load share it).
//!
//! `cargo bench -p foldline --bench projector_rate [-- ORDERS]` (default
//! 3000 orders). Prints one line per store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use foldline_testcontainers::{
    cassandra, committed_offsets, place_body, read_topic, unique_keyspace, CommandOptions,
    Deadline, Deployment,
};
use tokio::sync::Semaphore;

const BINARY: &str = env!("CARGO_BIN_EXE_foldline");
const CONCURRENCY: usize = 32;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Embedded,
    Cql,
}

fn cql_env(contact_point: &str, keyspace: &str) -> Vec<(String, String)> {
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
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

/// Places `orders` orders through the gateway (no waiting) and waits until
/// the processor has appended all of them; returns each partition's end.
async fn backlog(deployment: &Deployment, orders: usize) -> anyhow::Result<BTreeMap<i32, i64>> {
    let api = Arc::new(deployment.api()?);
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut placing = tokio::task::JoinSet::new();
    for _ in 0..orders {
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let api = Arc::clone(&api);
        placing.spawn(async move {
            let _permit = permit;
            let customer = uuid::Uuid::new_v4().to_string();
            let body = place_body(&customer, "EUR", &[("SKU-1", 1, 100), ("SKU-2", 2, 250)]);
            // Admission refuses what the processor cannot settle yet (503
            // with Retry-After): wait as asked and send the same order again.
            loop {
                let answer = api.place_order(&body, &CommandOptions::default()).await?;
                if answer.status != 503 {
                    return Ok::<_, anyhow::Error>(answer);
                }
                let seconds = answer
                    .header("retry-after")
                    .and_then(|value| value.parse::<f64>().ok())
                    .unwrap_or(0.1);
                tokio::time::sleep(Duration::from_secs_f64(seconds.min(0.2))).await;
            }
        });
    }
    while let Some(placed) = placing.join_next().await {
        let placed = placed??;
        anyhow::ensure!(placed.status == 202, "place answered {placed}");
    }
    let events = deployment.topic("orders.events");
    let deadline = Deadline::secs(300);
    loop {
        let records = read_topic(deployment.bootstrap_servers(), &events).await?;
        if records.len() >= orders {
            let mut ends = BTreeMap::new();
            for record in &records {
                let end = ends.entry(record.partition).or_insert(0);
                *end = (*end).max(record.offset + 1);
            }
            return Ok(ends);
        }
        anyhow::ensure!(
            !deadline.passed(),
            "the processor appended {} of {orders} events",
            records.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Records/s of a fresh projector on `backend` over the backlog.
async fn measure(backend: Backend, orders: usize) -> anyhow::Result<(f64, Duration)> {
    let deployment = Deployment::new(BINARY, "projector-rate")?;
    let _front = deployment
        .spawn_ready(
            "front",
            &["registry", "gateway", "orders-processor"],
            "front-store",
            Deadline::secs(60),
        )
        .await?;
    let ends = backlog(&deployment, orders).await?;
    let total: i64 = ends.values().sum();
    let env = match backend {
        Backend::Embedded => Vec::new(),
        Backend::Cql => cql_env(
            cassandra()?.contact_point(),
            &unique_keyspace("projector_rate"),
        ),
    };
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let _projector = deployment.spawn_with(
        "projector",
        &["orders-projector"],
        "projector-store",
        &pairs,
    )?;
    let group = deployment.topic("orders-projector-orders");
    let topic = deployment.topic("orders.events");
    let deadline = Deadline::secs(600);
    let mut first: Option<(Instant, i64)> = None;
    loop {
        let committed: i64 = committed_offsets(deployment.bootstrap_servers(), &group, &topic)
            .context("read the projector's offsets")?
            .values()
            .filter(|offset| **offset > 0)
            .sum();
        let now = Instant::now();
        if committed > 0 && first.is_none() {
            first = Some((now, committed));
        }
        if committed >= total {
            let (started, at_start) = first.context("no first observation")?;
            let elapsed = now.duration_since(started);
            let records = (total - at_start) as f64;
            return Ok((records / elapsed.as_secs_f64().max(1e-3), elapsed));
        }
        anyhow::ensure!(
            !deadline.passed(),
            "the projector committed {committed} of {total}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; the only argument of ours is a count.
    let orders = std::env::args()
        .skip(1)
        .find_map(|argument| argument.parse::<usize>().ok())
        .unwrap_or(3_000);
    for backend in [Backend::Embedded, Backend::Cql] {
        let (rate, elapsed) = measure(backend, orders).await?;
        println!(
            "projector into the {backend:?} store: {rate:.0} events/s ({orders} events, {elapsed:.2?} from first to last commit)"
        );
    }
    Ok(())
}
