//! `foldline-load`: drives a running gateway and reports throughput and
//! command→projection latency.
//!
//! Each request places an order with `Prefer: wait=N`: the gateway answers
//! 201 only once the order is readable from the projection, so the response
//! time is the full command → event → projection latency.
//!
//! ```text
//! cargo run --release -p foldline-benches -- --url http://127.0.0.1:8080 --requests 2000 --concurrency 32
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use tokio::sync::Mutex;

#[derive(Debug, Parser)]
#[command(about = "Load harness for a running Foldline gateway")]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Total orders to place.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    requests: u64,
    /// Requests in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    concurrency: u64,
    /// Seconds a request may wait for its outcome.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=60))]
    wait: u64,
}

#[derive(Default)]
struct Tally {
    created: u64,
    other: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency as usize)
        .timeout(Duration::from_secs(args.wait + 10))
        .build()
        .context("build the http client")?;
    let ready = client
        .get(format!("{}/readyz", args.url))
        .send()
        .await
        .with_context(|| format!("reach the gateway at {}", args.url))?;
    if !ready.status().is_success() {
        bail!(
            "the gateway at {} is not ready ({})",
            args.url,
            ready.status()
        );
    }
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)
            .context("create the latency histogram")?,
    ));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (client, histogram, tally, next) = (
            client.clone(),
            histogram.clone(),
            tally.clone(),
            next.clone(),
        );
        let (url, total, wait) = (args.url.clone(), args.requests, args.wait);
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < total {
                let body = serde_json::json!({
                    "customer_id": uuid::Uuid::now_v7().to_string(),
                    "currency": "EUR",
                    "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": 1250}]
                });
                let sent = Instant::now();
                let response = client
                    .post(format!("{url}/v1/orders"))
                    .header("prefer", format!("wait={wait}"))
                    .json(&body)
                    .send()
                    .await;
                let elapsed = sent.elapsed().as_micros() as u64;
                let mut tally = tally.lock().await;
                match response {
                    Ok(response) if response.status().as_u16() == 201 => {
                        tally.created += 1;
                        let _ = histogram.lock().await.record(elapsed.max(1));
                    }
                    _ => tally.other += 1,
                }
            }
        }));
    }
    for worker in workers {
        worker.await.context("join a load worker")?;
    }
    let elapsed = started.elapsed();
    let histogram = histogram.lock().await;
    let tally = tally.lock().await;
    let millis = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1_000.0;
    println!(
        "placed {} orders in {:.2}s: {:.0} commands/s; {} not projected in time or failed",
        tally.created,
        elapsed.as_secs_f64(),
        tally.created as f64 / elapsed.as_secs_f64(),
        tally.other
    );
    println!(
        "command→projection latency: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        millis(0.50),
        millis(0.90),
        millis(0.99),
        histogram.max() as f64 / 1_000.0
    );
    if tally.other > 0 {
        bail!("{} requests did not complete", tally.other);
    }
    Ok(())
}
