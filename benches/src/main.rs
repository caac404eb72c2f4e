//! `foldline-load`: drives a running gateway and reports **settled**
//! throughput and latency, with a raw Kafka baseline from the same run.
//!
//! A place counts when the gateway answers 201 under `Prefer: wait=N`: the
//! outcome is decided and the projection shows it, so its latency is the
//! full command → event → projection path. 202 (not settled in time), 4xx,
//! 5xx and transport errors are failures, counted by status.
//!
//! `--scenario saga` drives the order saga: customers registered first,
//! then each operation places an order for one of them and reads it back
//! until the saga confirmed or rejected it (ops `confirm` and `reject`).
//!
//! Closed loop (`--concurrency N`) or open loop (`--rate R`, latency from
//! each operation's intended start: coordinated omission corrected), for
//! `--duration` after an unrecorded `--warmup`.
//!
//! ```text
//! cargo run --release -p foldline-benches -- --duration 30s --concurrency 64 \
//!     --bootstrap-servers 127.0.0.1:PORT
//! ```
//!
//! The raw baseline's clients take the platform's `FOLDLINE__KAFKA__SECURITY__*`
//! variables (`[kafka.security]`), so it measures a secured cluster too.

mod args;
mod load;
mod raw;
mod report;
mod sample;
mod schedule;

use std::time::SystemTime;

use anyhow::{bail, Context};
use clap::Parser;

/// Errors are printed as one `error: …: cause` line, whatever
/// `RUST_BACKTRACE` says, so a bad flag reads as a message, not a crash.
fn main() -> std::process::ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("build the tokio runtime")
        .and_then(|runtime| runtime.block_on(run()));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let args = args::Args::parse();
    let settings = args::validate(&args)?;
    let client = load::client(&args)?;
    let base = settings.base_url.as_str().trim_end_matches('/').to_owned();
    load::check_ready(&client, &base).await?;
    let (started_at, stamp) = report::timestamps(SystemTime::now());
    eprintln!(
        "foldline-load: {} scenario, {}, {:?} warm-up + {:?} measured, against {base}",
        args.scenario.name(),
        settings.mode.describe(),
        args.warmup,
        args.duration,
    );

    let sampler = sample::Sampler::start(sample::Sources {
        pid: args.pid,
        bootstrap_servers: args.bootstrap_servers.clone(),
        commands_topic: args.commands_topic.clone(),
        events_topic: args.events_topic.clone(),
    })?;
    let load = load::run(&args, &settings, client.clone()).await?;
    let health = if args.compare_health {
        eprintln!("health: GET /healthz, {}", settings.mode.describe());
        let mut health_args = args.clone();
        health_args.scenario = args::Scenario::Health;
        Some(load::run(&health_args, &settings, client).await?)
    } else {
        None
    };
    let sampled = sampler.finish().await?;

    // After the HTTP run, not during it, so the two do not compete.
    let raw = match args.bootstrap_servers.clone() {
        Some(bootstrap) => {
            eprintln!(
                "raw kafka baseline against {bootstrap} for {:?}",
                args.raw_duration
            );
            let (duration, bytes) = (args.raw_duration, args.raw_record_bytes);
            // The platform's own `FOLDLINE__KAFKA__SECURITY__*` variables.
            let security = foldline_platform::config::Config::load(None, std::env::vars())
                .context("read the kafka security (FOLDLINE__KAFKA__SECURITY__*)")?
                .kafka
                .security;
            let measured = tokio::task::spawn_blocking(move || {
                raw::measure(&bootstrap, &security, duration, bytes)
            })
            .await
            .context("join the raw kafka baseline")?
            .context("measure the raw kafka baseline")?;
            Some(measured)
        }
        None => None,
    };
    let ratio = report::ratio(&load, raw.as_ref());
    let settled = load.settled_commands_per_s;
    let report = report::Report {
        started_at,
        machine: report::machine(),
        versions: report::versions(),
        settings: args.clone(),
        load,
        health,
        sampled,
        raw,
        ratio,
    };
    println!("{}", report::summary(&report));
    if !args.no_report {
        let (json, markdown) = report::write(&report, &args.results_dir, &stamp)?;
        println!("reports: {} and {}", json.display(), markdown.display());
    }
    let anything_settled = report.load.ops.iter().any(|op| op.settled > 0);
    if !anything_settled {
        bail!("nothing settled in the measured window ({settled:.1} commands/s)");
    }
    Ok(())
}
