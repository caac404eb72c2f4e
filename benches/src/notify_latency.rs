//! `foldline-notify-latency`: notification latency per provider against
//! the seed's 150 ms SLA, with the primary SMS provider healthy and
//! degraded, and how long traffic takes to move to the backup when the
//! primary fails or stalls (and back when it recovers), on Apache Kafka.
//!
//! 1. Starts the broker (the test harness's, from its Maven jars), a front
//!    process (registry, gateway, notify-projector: the delivery worker)
//!    and a notify-processor, with the SMS chain `primary,backup`: two fake
//!    provider servers on loopback (`foldline_testcontainers::FakeProvider`).
//! 2. Runs phases one after the other, each an open loop of `--rate` SMS
//!    notifications per second through `POST /v1/notifications` for
//!    `--phase-seconds`, after a warm-up: the primary healthy; degraded
//!    (every answer `--degraded-delay-ms` late, within the provider
//!    timeout); failing (503); recovered; stalled (no answer within the
//!    provider timeout). A phase ends when each of its notifications is
//!    sent or failed, so its figures are its own.
//! 3. Latency is notify's own: request (the command's `issued_at`) →
//!    provider accepted, as `NotificationSent` records it and
//!    `GET /v1/notifications/latency` serves it; p50/p99/max per phase and
//!    provider. The move to the backup is timed at the fakes: the phase's
//!    switch → the backup's first acceptance (→ the primary's, on
//!    recovery). Includes the pipeline's own latency (gateway → processor →
//!    projector → relay), which the healthy p50 shows.
//!
//! ```text
//! bash benches/notify.sh            # release build, one command
//! ```
//!
//! Writes `<stamp>-notify-latency.json` and `.md` to `--results-dir`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use foldline_testcontainers::{
    Api, Behaviour, CommandOptions, Deadline, Deployment, FakeProvider, FoldlineProcess,
};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::task::JoinSet;

/// The seed's SLA on notification latency (p99).
const SLA_P99_MS: u64 = 150;
const RECIPIENT: &str = "+447700900150";

#[derive(Clone, Debug, Parser, Serialize)]
#[command(
    name = "foldline-notify-latency",
    about = "Notification latency per provider (primary healthy, degraded) and time to fail over to the backup"
)]
struct Args {
    /// The `foldline` binary to run.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/foldline"))]
    foldline: PathBuf,
    /// Which build `--foldline` is (for the report).
    #[arg(long, default_value = "release")]
    build: String,
    /// Notifications per second in every phase (open loop).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// How long each measured phase sends.
    #[arg(long, default_value_t = 20)]
    phase_seconds: u64,
    /// The unmeasured healthy warm-up.
    #[arg(long, default_value_t = 5)]
    warmup_seconds: u64,
    /// How late the degraded primary answers (below the provider timeout).
    #[arg(long, default_value_t = 200)]
    degraded_delay_ms: u64,
    /// `notify.provider_timeout_ms`.
    #[arg(long, default_value_t = 2_000)]
    provider_timeout_ms: u64,
    /// `notify.breaker_consecutive_failures`.
    #[arg(long, default_value_t = 5)]
    breaker_consecutive_failures: u32,
    /// `notify.breaker_open_wait_ms`.
    #[arg(long, default_value_t = 5_000)]
    breaker_open_wait_ms: u64,
    /// `notify.breaker_slow_call_ms`: a success slower than this counts
    /// against the breaker (the seed's 150 ms SLA by default).
    #[arg(long, default_value_t = 150)]
    breaker_slow_call_ms: u64,
    /// `notify.in_flight_per_channel`.
    #[arg(long, default_value_t = 16)]
    in_flight_per_channel: usize,
    /// The reports' file-name stamp (`benches/notify.sh` passes the UTC
    /// time); seconds since the epoch when absent.
    #[arg(long)]
    stamp: Option<String>,
    /// Where the JSON and Markdown reports go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    results_dir: PathBuf,
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

/// A provider's latency figures over one phase.
#[derive(Debug, Serialize)]
struct Figures {
    count: u64,
    p50_ms: u64,
    p99_ms: u64,
    max_ms: u64,
    p99_breaches_sla: bool,
}

#[derive(Debug, Serialize)]
struct Phase {
    name: &'static str,
    primary: String,
    sent: usize,
    /// Requests the gateway did not take (status or transport error).
    refused: usize,
    /// Notifications that ended failed (every provider failed every attempt).
    failed: usize,
    wall_s: f64,
    providers: BTreeMap<String, Figures>,
    /// The switch → the backup's first acceptance (failing, stalled).
    to_backup_ms: Option<u64>,
    /// The switch → the primary's first acceptance (recovered).
    back_to_primary_ms: Option<u64>,
    primary_calls: usize,
    /// Moves away from the primary without a call (its breaker was open).
    skipped_open_breaker: usize,
    /// Moves away from the primary after a call (503, timeout).
    failed_over_after_a_call: usize,
}

async fn spawn(
    args: &Args,
    deployment: &Deployment,
    primary: &FakeProvider,
    backup: &FakeProvider,
) -> anyhow::Result<(FoldlineProcess, FoldlineProcess)> {
    let chain = format!("primary={},backup={}", primary.url(), backup.url());
    let settings = [
        ("FOLDLINE__NOTIFY__SMS_PROVIDERS", chain),
        (
            "FOLDLINE__NOTIFY__PROVIDER_TIMEOUT_MS",
            args.provider_timeout_ms.to_string(),
        ),
        (
            "FOLDLINE__NOTIFY__BREAKER_CONSECUTIVE_FAILURES",
            args.breaker_consecutive_failures.to_string(),
        ),
        (
            "FOLDLINE__NOTIFY__BREAKER_OPEN_WAIT_MS",
            args.breaker_open_wait_ms.to_string(),
        ),
        (
            "FOLDLINE__NOTIFY__BREAKER_SLOW_CALL_MS",
            args.breaker_slow_call_ms.to_string(),
        ),
        (
            "FOLDLINE__NOTIFY__IN_FLIGHT_PER_CHANNEL",
            args.in_flight_per_channel.to_string(),
        ),
    ];
    let env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let front = deployment
        .spawn_ready_with(
            "front",
            &["registry", "gateway", "notify-projector"],
            "store-front",
            &env,
            Deadline::secs(120),
        )
        .await
        .context("start the front process")?;
    let processor = deployment
        .spawn_with("processor", &["notify-processor"], "store-processor", &env)
        .context("start the notify processor")?;
    Ok((front, processor))
}

/// Sends `--rate` notifications per second for `seconds`; returns the ids
/// the gateway queued and how many it refused.
async fn send(api: &Api, rate: f64, seconds: u64, phase: &str) -> (Vec<String>, usize) {
    let total = (rate * seconds as f64).round() as u64;
    let started = tokio::time::Instant::now();
    let mut requests = JoinSet::new();
    for index in 0..total {
        tokio::time::sleep_until(started + Duration::from_secs_f64(index as f64 / rate)).await;
        let api = api.clone();
        let body = json!({
            "channel": "sms",
            "recipient": RECIPIENT,
            "template": "order.confirmed",
            "parameters": {"phase": phase, "index": index.to_string()},
        })
        .to_string();
        let key = format!("{phase}-{index}-{}", uuid::Uuid::new_v4());
        requests.spawn(async move {
            match api
                .command("/v1/notifications", body, &CommandOptions::keyed(&key))
                .await
            {
                Ok(answer) if answer.status == 202 => {
                    answer.str("notification_id").map(str::to_owned)
                }
                _ => None,
            }
        });
    }
    let (mut ids, mut refused) = (Vec::new(), 0);
    while let Some(done) = requests.join_next().await {
        match done.ok().flatten() {
            Some(id) => ids.push(id),
            None => refused += 1,
        }
    }
    (ids, refused)
}

/// Waits until every notification is sent or failed; returns the views.
async fn settled(api: &Api, ids: &[String]) -> anyhow::Result<Vec<Value>> {
    let deadline = Deadline::secs(300);
    let mut views = Vec::with_capacity(ids.len());
    for id in ids {
        let view = foldline_testcontainers::poll_until(
            &format!("notification {id} settled"),
            deadline,
            || async {
                let answer = api
                    .get(&format!("/v1/notifications/{id}"))
                    .await
                    .map_err(|error| error.to_string())?;
                match answer.str("status") {
                    Some("sent" | "failed") => Ok(Some(answer.body)),
                    _ => Err(answer.to_string()),
                }
            },
        )
        .await?;
        views.push(view);
    }
    Ok(views)
}

fn figures(views: &[Value]) -> anyhow::Result<BTreeMap<String, Figures>> {
    let mut histograms: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    for view in views {
        let delivery = &view["delivery"];
        let (Some(provider), Some(latency)) = (
            delivery["provider"].as_str(),
            delivery["latency_ms"].as_u64(),
        ) else {
            continue;
        };
        let histogram = match histograms.entry(provider.to_owned()) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(Histogram::new(3).context("create a histogram")?)
            }
        };
        histogram.record(latency).context("record a latency")?;
    }
    Ok(histograms
        .into_iter()
        .map(|(provider, histogram)| {
            let p99 = histogram.value_at_quantile(0.99);
            (
                provider,
                Figures {
                    count: histogram.len(),
                    p50_ms: histogram.value_at_quantile(0.50),
                    p99_ms: p99,
                    max_ms: histogram.max(),
                    p99_breaches_sla: p99 > SLA_P99_MS,
                },
            )
        })
        .collect())
}

fn moves_from_primary(views: &[Value]) -> (usize, usize) {
    let reasons: Vec<&str> = views
        .iter()
        .flat_map(|view| view["failovers"].as_array().into_iter().flatten())
        .filter(|failover| failover["from"] == "primary")
        .filter_map(|failover| failover["reason"].as_str())
        .collect();
    let skipped = reasons
        .iter()
        .filter(|reason| **reason == "circuit breaker open")
        .count();
    (skipped, reasons.len() - skipped)
}

fn first_since(fake: &FakeProvider, since: Instant) -> Option<u64> {
    fake.accepted_since(since)
        .first()
        .map(|(at, _)| u64::try_from(at.duration_since(since).as_millis()).unwrap_or(u64::MAX))
}

struct Run<'a> {
    args: &'a Args,
    api: Api,
    primary: Arc<FakeProvider>,
    backup: Arc<FakeProvider>,
}

impl Run<'_> {
    async fn phase(
        &self,
        name: &'static str,
        behaviour: Behaviour,
        seconds: u64,
    ) -> anyhow::Result<Phase> {
        let calls_before = self.primary.calls();
        self.primary.set(behaviour);
        let switched = Instant::now();
        eprintln!(
            "phase {name}: primary {behaviour:?}, {} notifications/s for {seconds} s",
            self.args.rate
        );
        let (ids, refused) = send(&self.api, self.args.rate, seconds, name).await;
        let views = settled(&self.api, &ids).await?;
        let wall_s = switched.elapsed().as_secs_f64();
        let failed = views
            .iter()
            .filter(|view| view["status"] == "failed")
            .count();
        let (skipped_open_breaker, failed_over_after_a_call) = moves_from_primary(&views);
        let phase = Phase {
            name,
            primary: format!("{behaviour:?}"),
            sent: ids.len(),
            refused,
            failed,
            wall_s,
            providers: figures(&views)?,
            to_backup_ms: match behaviour {
                Behaviour::Fail | Behaviour::Stall => first_since(&self.backup, switched),
                _ => None,
            },
            back_to_primary_ms: match name {
                "recovered" => first_since(&self.primary, switched),
                _ => None,
            },
            primary_calls: self.primary.calls() - calls_before,
            skipped_open_breaker,
            failed_over_after_a_call,
        };
        eprintln!("{}", serde_json::to_string(&phase).unwrap_or_default());
        Ok(phase)
    }
}

fn markdown(args: &Args, phases: &[Phase], commit: &str, load: (&str, &str)) -> String {
    let mut out = String::new();
    out.push_str("# Notification latency per provider, and failover to the backup\n\n");
    out.push_str(&format!(
        "`foldline-notify-latency` ({} build), Apache Kafka (the test harness's, one node): \
         `foldline run registry gateway notify-projector` + `notify-processor`, SMS chain \
         `primary,backup` (fake providers on loopback). {} SMS/s per phase (open loop) for {} s \
         after a {} s warm-up; provider timeout {} ms; breaker opens after {} unavailable calls \
         in a row (a call slower than {} ms counts as one), open {} ms; {} deliveries in flight \
         per channel. Latency: request → provider accepted as notify records it \
         (`NotificationSent.latency_ms`), against the seed's {SLA_P99_MS} ms p99 SLA.\n\n",
        args.build,
        args.rate,
        args.phase_seconds,
        args.warmup_seconds,
        args.provider_timeout_ms,
        args.breaker_consecutive_failures,
        args.breaker_slow_call_ms,
        args.breaker_open_wait_ms,
        args.in_flight_per_channel,
    ));
    out.push_str("| phase | primary | provider | n | p50 ms | p99 ms | max ms | p99 > SLA |\n");
    out.push_str("|---|---|---|---:|---:|---:|---:|---|\n");
    for phase in phases {
        for (provider, figures) in &phase.providers {
            out.push_str(&format!(
                "| {} | {} | {provider} | {} | {} | {} | {} | {} |\n",
                phase.name,
                phase.primary,
                figures.count,
                figures.p50_ms,
                figures.p99_ms,
                figures.max_ms,
                figures.p99_breaches_sla
            ));
        }
    }
    out.push_str("\n| phase | sent | refused | failed | → backup ms | → primary ms | primary calls | skipped (breaker open) | moved after a call |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let ms = |value: Option<u64>| value.map_or("–".to_owned(), |ms| ms.to_string());
    for phase in phases {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            phase.name,
            phase.sent,
            phase.refused,
            phase.failed,
            ms(phase.to_backup_ms),
            ms(phase.back_to_primary_ms),
            phase.primary_calls,
            phase.skipped_open_breaker,
            phase.failed_over_after_a_call
        ));
    }
    out.push_str(&format!(
        "\n→ backup: the phase's switch → the backup's first acceptance (includes the pipeline's \
         own latency: see the healthy p50). → primary: the switch back → the primary's first \
         acceptance (the rest of the open wait, then a trial call).\n\ngit commit: {commit}; \
         machine: {} cores; load average (1, 5, 15 min) before: {}, after: {}\n",
        std::thread::available_parallelism().map_or(0, usize::from),
        load.0,
        load.1
    ));
    out
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

async fn run(args: Args) -> anyhow::Result<()> {
    if !(args.rate > 0.0 && args.rate.is_finite()) || args.phase_seconds == 0 {
        bail!("--rate must be above 0 and --phase-seconds at least 1");
    }
    if args.degraded_delay_ms >= args.provider_timeout_ms {
        bail!("--degraded-delay-ms must stay below --provider-timeout-ms (degraded, not down)");
    }
    // The processes run in their own directories: the path must not be relative.
    let foldline = args.foldline.canonicalize().with_context(|| {
        format!(
            "{} does not exist: build it (bash benches/notify.sh does)",
            args.foldline.display()
        )
    })?;
    let load_before = load_average();
    let primary = Arc::new(FakeProvider::start(true).await?);
    let backup = Arc::new(FakeProvider::start(true).await?);
    let deployment = Deployment::new(&foldline, "notify-latency")?;
    let (_front, _processor) = spawn(&args, &deployment, &primary, &backup).await?;
    let run = Run {
        args: &args,
        api: deployment.api()?,
        primary: Arc::clone(&primary),
        backup: Arc::clone(&backup),
    };
    run.phase("warm-up", Behaviour::Accept, args.warmup_seconds.max(1))
        .await?;
    let seconds = args.phase_seconds;
    let degraded = Behaviour::Slow(Duration::from_millis(args.degraded_delay_ms));
    let mut phases = Vec::new();
    phases.push(run.phase("healthy", Behaviour::Accept, seconds).await?);
    phases.push(run.phase("degraded", degraded, seconds).await?);
    phases.push(run.phase("failing", Behaviour::Fail, seconds).await?);
    phases.push(run.phase("recovered", Behaviour::Accept, seconds).await?);
    phases.push(run.phase("stalled", Behaviour::Stall, seconds).await?);
    let route = run
        .api
        .get("/v1/notifications/latency")
        .await
        .context("read notify's latency route")?
        .body;
    let load_after = load_average();
    let commit = commit();
    let stamp = args.stamp.clone().unwrap_or_else(|| {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        format!("unix{since}")
    });
    std::fs::create_dir_all(&args.results_dir)
        .with_context(|| format!("create {}", args.results_dir.display()))?;
    let base = args.results_dir.join(format!("{stamp}-notify-latency"));
    let report = json!({
        "started": stamp,
        "commit": commit,
        "sla_p99_ms": SLA_P99_MS,
        "settings": &args,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "phases": &phases,
        "notify_latency_route": route,
    });
    let json_path = base.with_extension("json");
    std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("write {}", json_path.display()))?;
    let text = markdown(&args, &phases, &commit, (&load_before, &load_after));
    let md_path = base.with_extension("md");
    std::fs::write(&md_path, &text).with_context(|| format!("write {}", md_path.display()))?;
    println!("{text}");
    println!("reports: {} and {}", json_path.display(), md_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_figures_are_per_provider_and_judged_against_the_sla() {
        let view = |provider: &str, latency: u64| json!({"delivery": {"provider": provider, "latency_ms": latency}});
        let mut views: Vec<Value> = (1..=100).map(|ms| view("primary", ms)).collect();
        views.push(view("backup", 400));
        views.push(json!({"status": "failed"}));
        let figures = figures(&views).unwrap();
        assert_eq!(figures["primary"].count, 100);
        assert_eq!(figures["primary"].p50_ms, 50);
        assert_eq!(figures["primary"].p99_ms, 99);
        assert!(!figures["primary"].p99_breaches_sla);
        assert!(figures["backup"].p99_breaches_sla);
    }

    #[test]
    fn moves_past_an_open_breaker_are_told_from_failed_calls() {
        let views = vec![
            json!({"failovers": [{"from": "primary", "reason": "circuit breaker open"}]}),
            json!({"failovers": [{"from": "primary", "reason": "timed out"}]}),
            json!({"failovers": [{"from": "backup", "reason": "timed out"}]}),
            json!({}),
        ];
        assert_eq!(moves_from_primary(&views), (1, 1));
    }
}
