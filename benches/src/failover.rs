//! `foldline-failover`: how long a partition stops settling after kill -9
//! of the processor that owns it (target 7 of the throughput issue), on
//! Apache Kafka with separate `foldline run` processes.
//!
//! 1. Starts the broker (the test harness's, from its Maven jars), a front
//!    process (registry, gateway, projector) and one processor that never
//!    snapshots, so everything it settles is behind its last snapshot.
//! 2. Fills one partition: places one order, then cancels it `--events`
//!    times (every cancel after the first is a recorded rejection: one
//!    record each, all on the order's partition).
//! 3. Starts a second processor, waits for the group to settle, kills -9
//!    whichever owns the full partition while a driver keeps cancelling.
//! 4. Reports: kill → the survivor's assignment (the group's session
//!    timeout), assignment → the first command settled again (restore and
//!    resume: the target), the survivor's restore line (records folded per
//!    second), and the raw consume rate of the same broker.
//!
//! ```text
//! cargo build --release -p foldline -p foldline-benches
//! target/release/foldline-failover --events 100000
//! ```

#[path = "raw.rs"]
#[allow(dead_code)]
mod raw;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use foldline_testcontainers::{
    place_body, Api, CommandOptions, Deadline, Deployment, FoldlineProcess,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

const PARTITIONS: i32 = 6;
const NEVER_SNAPSHOT: &[(&str, &str)] =
    &[("FOLDLINE__PROCESSOR__SNAPSHOT_EVERY_COMMANDS", "1000000000")];

#[derive(Debug, Parser)]
#[command(
    name = "foldline-failover",
    about = "Failover time after kill -9 of a processor owning a partition with many events behind its last snapshot"
)]
struct Args {
    /// The `foldline` binary to run.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/foldline"))]
    foldline: std::path::PathBuf,
    /// Records to put on the partition before the kill.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Cancels in flight while filling.
    #[arg(long, default_value_t = 64)]
    concurrency: u64,
    /// How long the raw consume baseline runs.
    #[arg(long, default_value = "5")]
    raw_seconds: u64,
}

fn main() -> std::process::ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("build the tokio runtime")
        .and_then(|runtime| runtime.block_on(run(Args::parse())));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.events == 0 || args.concurrency == 0 {
        bail!("--events and --concurrency must be at least 1");
    }
    if !args.foldline.exists() {
        bail!(
            "{} does not exist: build it with cargo build --release -p foldline",
            args.foldline.display()
        );
    }
    let deployment = Deployment::new(&args.foldline, "failover")?;
    let _front = deployment
        .spawn_ready(
            "front",
            &["registry", "gateway", "orders-projector"],
            "store-front",
            Deadline::secs(120),
        )
        .await?;
    let mut first = deployment.spawn_with(
        "processor-1",
        &["orders-processor"],
        "store-1",
        NEVER_SNAPSHOT,
    )?;
    first
        .wait_for_log("partitions assigned", 1, Deadline::secs(60))
        .await?;
    let api = deployment.api()?;
    let customer = uuid::Uuid::now_v7().to_string();
    let placed = api
        .place_order(
            &place_body(&customer, "EUR", &[("SKU-1", 1, 100)]),
            &CommandOptions::waiting(30),
        )
        .await?;
    if placed.status != 201 {
        bail!("placing the order answered {placed}");
    }
    let order_id = placed
        .str("id")
        .context("the placed order has an id")?
        .to_owned();

    eprintln!("filling: {} cancels of order {order_id}", args.events);
    let fill_started = Instant::now();
    fill(&api, &order_id, args.events, args.concurrency).await?;
    let fill_s = fill_started.elapsed().as_secs_f64();
    let (hot, hot_end) = fullest_partition(
        deployment.bootstrap_servers(),
        &deployment.topic("orders.events"),
    )?;
    eprintln!(
        "filled in {fill_s:.1} s ({:.0} commands/s); partition {hot} holds {hot_end} records",
        args.events as f64 / fill_s
    );

    let mut second = deployment.spawn_with(
        "processor-2",
        &["orders-processor"],
        "store-2",
        NEVER_SNAPSHOT,
    )?;
    second
        .wait_for_log("partitions assigned", 1, Deadline::secs(60))
        .await?;
    // The first member gives its partitions up and takes its share back.
    first
        .wait_for_log("partitions assigned", 2, Deadline::secs(60))
        .await?;
    // The group settled once both hold a share and a command settles.
    settle_one(&api, &order_id, Deadline::secs(120)).await?;
    let owner_is_first = owns(&first, hot);
    let (mut victim, survivor) = if owner_is_first {
        (first, second)
    } else {
        (second, first)
    };
    if !owns(&victim, hot) {
        bail!("neither processor's last assignment holds partition {hot}");
    }
    eprintln!("killing {} (owns partition {hot})", victim.name());

    let answers = Arc::new(Mutex::new(Vec::<(Instant, u16)>::new()));
    let driver = tokio::spawn(drive(api.clone(), order_id.clone(), answers.clone()));
    let assignments_before = survivor.log_count("partitions assigned");
    let killed_at = Instant::now();
    victim.kill9()?;
    let assigned_at = loop {
        if survivor.log_count("partitions assigned") > assignments_before && owns(&survivor, hot) {
            break Instant::now();
        }
        if killed_at.elapsed() > Duration::from_secs(120) {
            bail!(
                "{} was not assigned partition {hot} within 120 s",
                survivor.name()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let resumed_at = loop {
        let first_settled = answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(at, status)| *at >= assigned_at && *status == 409)
            .map(|(at, _)| *at);
        if let Some(at) = first_settled {
            break at;
        }
        if assigned_at.elapsed() > Duration::from_secs(120) {
            bail!("no command settled within 120 s of the assignment");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    driver.abort();
    let restore_line = restore_line(&survivor, hot);
    let raw = {
        let bootstrap = deployment.bootstrap_servers().to_owned();
        let seconds = args.raw_seconds;
        tokio::task::spawn_blocking(move || {
            raw::measure(
                &bootstrap,
                &foldline_platform::kafka_security::KafkaSecurityConfig::default(),
                Duration::from_secs(seconds),
                250,
            )
        })
        .await
        .context("join the raw baseline")??
    };
    println!("# foldline-failover: kill -9 of the processor owning a partition with {hot_end} records behind its last snapshot");
    println!();
    println!("- broker: Apache Kafka {} (KRaft, one node), separate `foldline run` processes (front, two processors)", foldline_testcontainers::broker::KAFKA_VERSION);
    println!("- fill: {} cancels of one order in {fill_s:.1} s ({:.0} settled commands/s at concurrency {}), partition {hot} ends at offset {hot_end}", args.events, args.events as f64 / fill_s, args.concurrency);
    println!(
        "- kill -9 → survivor assigned partition {hot}: {:.0} ms (the group's session timeout)",
        (assigned_at - killed_at).as_secs_f64() * 1e3
    );
    println!(
        "- **survivor assigned → first command settled again: {:.0} ms** (target ≤ 1,000 ms)",
        (resumed_at - assigned_at).as_secs_f64() * 1e3
    );
    println!(
        "- survivor's restore of partition {hot}: {}",
        restore_line.as_deref().unwrap_or("not found in its log")
    );
    println!("- raw consume of the same broker ({} B records): {:.0} records/s; raw produce {:.0} records/s", raw.record_bytes, raw.consume_per_s, raw.produce_per_s);
    println!(
        "- machine: {} cores; survivor log: {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        survivor.log_path().display()
    );
    let _ = survivor.send_terminate();
    Ok(())
}

/// Cancels `order_id` `count` times, `concurrency` at a time, each waited for.
async fn fill(api: &Api, order_id: &str, count: u64, concurrency: u64) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (api, order_id, next, failed) = (
            api.clone(),
            order_id.to_owned(),
            next.clone(),
            failed.clone(),
        );
        workers.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let settled = api
                    .cancel_order(&order_id, "bench", &CommandOptions::waiting(30))
                    .await
                    .map(|answer| matches!(answer.status, 200 | 409));
                if !matches!(settled, Ok(true)) {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    loop {
        tokio::select! {
            joined = workers.join_next() => match joined {
                Some(joined) => joined.context("join a fill worker")?,
                None => break,
            },
            _ = tick.tick() => {
                let done = next.load(Ordering::Relaxed).min(count);
                eprintln!("  {done} sent in {:.0} s", started.elapsed().as_secs_f64());
            }
        }
    }
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} cancels did not settle while filling");
    }
    Ok(())
}

/// Keeps cancelling, one at a time, recording when each answer came.
async fn drive(api: Api, order_id: String, answers: Arc<Mutex<Vec<(Instant, u16)>>>) {
    loop {
        let status = api
            .cancel_order(&order_id, "bench", &CommandOptions::waiting(2))
            .await
            .map_or(0, |answer| answer.status);
        answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((Instant::now(), status));
    }
}

async fn settle_one(api: &Api, order_id: &str, deadline: Deadline) -> anyhow::Result<()> {
    loop {
        let answer = api
            .cancel_order(order_id, "bench", &CommandOptions::waiting(5))
            .await?;
        if answer.status == 409 {
            return Ok(());
        }
        if deadline.passed() {
            bail!("no command settled after the second processor joined: {answer}");
        }
    }
}

/// The events partition holding the most records, and its end offset.
fn fullest_partition(bootstrap: &str, topic: &str) -> anyhow::Result<(i32, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "foldline-failover-watermarks")
        .create()
        .context("create a watermark reader")?;
    let mut fullest = (0, 0);
    for partition in 0..PARTITIONS {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .with_context(|| format!("read the watermarks of {topic}/{partition}"))?;
        if high > fullest.1 {
            fullest = (partition, high);
        }
    }
    Ok(fullest)
}

/// Whether the last assignment `process` logged holds `partition`.
fn owns(process: &FoldlineProcess, partition: i32) -> bool {
    let log = process.log_text();
    let Some(line) = log
        .lines()
        .rev()
        .find(|line| line.contains("partitions assigned"))
    else {
        return false;
    };
    assigned_partitions(line).contains(&partition)
}

/// The partitions of a `partitions assigned ... assigned=[0, 1]` line.
fn assigned_partitions(line: &str) -> Vec<i32> {
    line.split_once("assigned=[")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| {
            list.split(',')
                .filter_map(|number| number.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The survivor's last restore line for `partition`, from `from=` on.
fn restore_line(process: &FoldlineProcess, partition: i32) -> Option<String> {
    let needle = format!("restore{{partition={partition}}}");
    process
        .log_text()
        .lines()
        .rev()
        .find(|line| {
            line.contains(&needle) && line.contains("restored partition from the event log")
        })
        .map(|line| {
            line.split_once("restored partition from the event log")
                .map_or(line, |(_, fields)| fields)
                .trim()
                .to_owned()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_lines_name_their_partitions() {
        let line = "2026-12-02T04:00:00Z  INFO processor{group=g}: partitions assigned topic=t assigned=[0, 3, 5]";
        assert_eq!(assigned_partitions(line), vec![0, 3, 5]);
        assert!(assigned_partitions("partitions assigned topic=t").is_empty());
    }
}
