//! The HTTP load: closed or open loop over a scenario, recording settled
//! operations into HdrHistograms and every other answer by status.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::args::{Args, Mode, Scenario, Settings};
use crate::schedule::{self, Phase};

/// Latencies are recorded in microseconds up to an hour: anything longer
/// is a harness bug, not a measurement.
const HISTOGRAM_MAX_MICROS: u64 = 3_600_000_000;
/// `mixed` reads back one of the most recent orders; the pool is bounded
/// so a long run does not grow without limit.
const POOL_LIMIT: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OpKind {
    Place,
    Read,
    Health,
    /// `saga`: an order the saga confirmed.
    Confirm,
    /// `saga`: an order the saga ended unpaid (payment rejected, rejected).
    Reject,
}

impl OpKind {
    fn name(self) -> &'static str {
        match self {
            Self::Place => "place",
            Self::Read => "read",
            Self::Health => "health",
            Self::Confirm => "confirm",
            Self::Reject => "reject",
        }
    }
}

/// How the saga ended an order, by the status the gateway serves.
fn saga_end(status: &str) -> Option<OpKind> {
    match status {
        "confirmed" => Some(OpKind::Confirm),
        "payment_rejected" | "rejected" => Some(OpKind::Reject),
        _ => None,
    }
}

/// What one operation came to.
#[derive(Debug)]
enum Outcome {
    /// 201 for a place (settled, projected), 200 for a read; a place
    /// carries the order id it created.
    Settled(Option<String>),
    /// Anything else, named by status (`202`, `409`, `503`) or by the
    /// transport failure (`timeout`, `connect`, `transport`).
    Failed(String),
}

/// Everything the operations share.
#[derive(Debug)]
struct Target {
    client: reqwest::Client,
    place_url: String,
    orders_url: String,
    health_url: String,
    wait: u64,
    lines: u64,
    pool: Mutex<Vec<String>>,
    /// Once the pool is full, new ids overwrite the oldest, round-robin.
    replaced: AtomicU64,
    /// `saga`: the registered users orders are placed for.
    customers: Vec<String>,
    poll_interval: Duration,
    saga_timeout: Duration,
}

impl Target {
    async fn place(&self) -> Outcome {
        self.place_for(&uuid::Uuid::now_v7().to_string()).await
    }

    async fn place_for(&self, customer_id: &str) -> Outcome {
        let body = serde_json::json!({
            "customer_id": customer_id,
            "currency": "EUR",
            "lines": (0..self.lines)
                .map(|line| serde_json::json!({"sku": format!("SKU-{line}"), "quantity": 2, "unit_price": 1250}))
                .collect::<Vec<_>>(),
        });
        let response = self
            .client
            .post(&self.place_url)
            .header("prefer", format!("wait={}", self.wait))
            .json(&body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => return Outcome::Failed(transport_failure(&error)),
        };
        let status = response.status().as_u16();
        // The body is read whatever the status so the connection is reused.
        let bytes = response.bytes().await;
        match (status, bytes) {
            (201, Ok(bytes)) => {
                let id = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|order| order.get("id")?.as_str().map(str::to_owned));
                match id {
                    Some(id) => Outcome::Settled(Some(id)),
                    None => Outcome::Failed("201 without an order id".to_owned()),
                }
            }
            (_, Err(error)) => Outcome::Failed(transport_failure(&error)),
            (status, Ok(_)) => Outcome::Failed(status.to_string()),
        }
    }

    async fn read(&self, id: &str) -> Outcome {
        self.get_ok(&format!("{}/{id}", self.orders_url)).await
    }

    async fn health(&self) -> Outcome {
        self.get_ok(&self.health_url).await
    }

    /// A GET that counts when answered 200.
    async fn get_ok(&self, url: &str) -> Outcome {
        let response = match self.client.get(url).send().await {
            Ok(response) => response,
            Err(error) => return Outcome::Failed(transport_failure(&error)),
        };
        let status = response.status().as_u16();
        match (status, response.bytes().await) {
            (200, Ok(_)) => Outcome::Settled(None),
            (_, Err(error)) => Outcome::Failed(transport_failure(&error)),
            (status, Ok(_)) => Outcome::Failed(status.to_string()),
        }
    }

    /// One order through the saga: placed (settled and projected), then
    /// read back until the saga ended it.
    async fn saga(&self, index: u64) -> (OpKind, Outcome) {
        let customer = match self.customers.is_empty() {
            true => return (OpKind::Place, Outcome::Failed("no customers".to_owned())),
            false => &self.customers[(index % self.customers.len() as u64) as usize],
        };
        let order_id = match self.place_for(customer).await {
            Outcome::Settled(Some(id)) => id,
            other => return (OpKind::Place, other),
        };
        let url = format!("{}/{order_id}", self.orders_url);
        let give_up = Instant::now() + self.saga_timeout;
        loop {
            let response = match self.client.get(&url).send().await {
                Ok(response) => response,
                Err(error) => return (OpKind::Confirm, Outcome::Failed(transport_failure(&error))),
            };
            let status = response.status().as_u16();
            let order = match response.json::<serde_json::Value>().await {
                Ok(order) => order,
                Err(error) => return (OpKind::Confirm, Outcome::Failed(transport_failure(&error))),
            };
            if status != 200 {
                return (OpKind::Confirm, Outcome::Failed(status.to_string()));
            }
            if let Some(kind) = order
                .get("status")
                .and_then(|s| s.as_str())
                .and_then(saga_end)
            {
                return (kind, Outcome::Settled(Some(order_id)));
            }
            if Instant::now() >= give_up {
                return (OpKind::Confirm, Outcome::Failed("not_ended".to_owned()));
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    fn remember(&self, id: String) {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOL_LIMIT {
            pool.push(id);
        } else {
            let slot = (self.replaced.fetch_add(1, Ordering::Relaxed) % POOL_LIMIT as u64) as usize;
            if let Some(entry) = pool.get_mut(slot) {
                *entry = id;
            }
        }
    }

    fn pick(&self, index: u64) -> Option<String> {
        let pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.is_empty() {
            return None;
        }
        let slot = (schedule::splitmix64(index) % pool.len() as u64) as usize;
        pool.get(slot).cloned()
    }

    /// Runs operation `index` of `scenario`.
    async fn operate(&self, scenario: Scenario, read_ratio: f64, index: u64) -> (OpKind, Outcome) {
        let read = match scenario {
            Scenario::Health => return (OpKind::Health, self.health().await),
            Scenario::Saga => return self.saga(index).await,
            Scenario::Place => None,
            Scenario::Read => self.pick(index),
            Scenario::Mixed if schedule::is_read(index, read_ratio) => self.pick(index),
            Scenario::Mixed => None,
        };
        match read {
            Some(id) => (OpKind::Read, self.read(&id).await),
            None => {
                let outcome = self.place().await;
                if let Outcome::Settled(Some(id)) = &outcome {
                    if scenario == Scenario::Mixed {
                        self.remember(id.clone());
                    }
                }
                (OpKind::Place, outcome)
            }
        }
    }
}

fn transport_failure(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timeout".to_owned()
    } else if error.is_connect() {
        "connect".to_owned()
    } else {
        "transport".to_owned()
    }
}

/// What the measured window recorded, and live counters for the progress line.
#[derive(Debug)]
struct Recorder {
    measured: Mutex<Measured>,
    live_failures: Mutex<BTreeMap<String, u64>>,
    answered: AtomicU64,
    settled: AtomicU64,
    in_flight: AtomicU64,
}

#[derive(Debug, Default)]
struct Measured {
    histograms: BTreeMap<OpKind, Histogram<u64>>,
    /// How fast 503s (admission, load shedding) were answered.
    refusals: BTreeMap<OpKind, Histogram<u64>>,
    failures: BTreeMap<OpKind, BTreeMap<String, u64>>,
    started: u64,
}

impl Recorder {
    fn new() -> Self {
        Self {
            measured: Mutex::new(Measured::default()),
            live_failures: Mutex::new(BTreeMap::new()),
            answered: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        }
    }

    fn record(
        &self,
        phase: Phase,
        kind: OpKind,
        latency: Duration,
        outcome: &Outcome,
    ) -> anyhow::Result<()> {
        self.answered.fetch_add(1, Ordering::Relaxed);
        if let Outcome::Failed(status) = outcome {
            *self
                .live_failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(status.clone())
                .or_default() += 1;
        } else {
            self.settled.fetch_add(1, Ordering::Relaxed);
        }
        if phase != Phase::Measured {
            return Ok(());
        }
        let mut measured = self.measured.lock().unwrap_or_else(PoisonError::into_inner);
        measured.started += 1;
        match outcome {
            Outcome::Settled(_) => {
                let histogram = histogram_of(&mut measured.histograms, kind)?;
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                histogram.saturating_record(micros.max(1));
            }
            Outcome::Failed(status) => {
                if status == "503" {
                    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                    histogram_of(&mut measured.refusals, kind)?.saturating_record(micros.max(1));
                }
                *measured
                    .failures
                    .entry(kind)
                    .or_default()
                    .entry(status.clone())
                    .or_default() += 1;
            }
        }
        Ok(())
    }
}

fn histogram_of(
    histograms: &mut BTreeMap<OpKind, Histogram<u64>>,
    kind: OpKind,
) -> anyhow::Result<&mut Histogram<u64>> {
    Ok(match histograms.entry(kind) {
        std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
        std::collections::btree_map::Entry::Vacant(entry) => entry.insert(
            Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, 3)
                .context("create a latency histogram")?,
        ),
    })
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct OpResult {
    pub(crate) kind: OpKind,
    pub(crate) settled: u64,
    pub(crate) settled_per_s: f64,
    /// Milliseconds; open loop: from each operation's intended start.
    pub(crate) latency_ms: Option<Percentiles>,
    pub(crate) failures: BTreeMap<String, u64>,
    pub(crate) failed: u64,
    /// Milliseconds to a 503 (refused by admission or shed); open loop:
    /// from each operation's intended start.
    pub(crate) refused_latency_ms: Option<Percentiles>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct LoadResult {
    pub(crate) mode: Mode,
    pub(crate) scenario: Scenario,
    pub(crate) window_s: f64,
    pub(crate) started_in_window: u64,
    pub(crate) ops: Vec<OpResult>,
    /// Settled places (201 under `Prefer: wait`) per second.
    pub(crate) settled_commands_per_s: f64,
    /// Open loop only: how late the harness sent operations against their
    /// intended time; large values mean the harness, not the gateway, lagged.
    pub(crate) send_lag_ms: Option<Percentiles>,
    /// Seconds spent after the window waiting for operations in flight.
    pub(crate) drain_s: f64,
    pub(crate) setup_orders_placed: u64,
}

fn percentiles(histogram: &Histogram<u64>) -> Percentiles {
    let millis = |micros: u64| micros as f64 / 1_000.0;
    Percentiles {
        p50: millis(histogram.value_at_quantile(0.50)),
        p90: millis(histogram.value_at_quantile(0.90)),
        p99: millis(histogram.value_at_quantile(0.99)),
        p999: millis(histogram.value_at_quantile(0.999)),
        max: millis(histogram.max()),
        mean: histogram.mean() / 1_000.0,
    }
}

/// Fails unless the gateway answers `/readyz` with a success, so a wrong
/// URL is reported before anything runs.
pub(crate) async fn check_ready(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let url = format!("{base}/readyz");
    let response = client
        .get(&url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .with_context(|| format!("reach the gateway at {url} (is it running?)"))?;
    if !response.status().is_success() {
        bail!(
            "the gateway at {base} is not ready: /readyz answered {}",
            response.status()
        );
    }
    Ok(())
}

pub(crate) fn client(args: &Args) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        // The gateway answers a place within `wait` seconds; the margin
        // separates a slow 202 from a hung connection.
        .timeout(Duration::from_secs(args.wait + 10))
        .build()
        .context("build the http client")
}

/// Runs the scenario and returns what the measured window saw.
pub(crate) async fn run(
    args: &Args,
    settings: &Settings,
    client: reqwest::Client,
) -> anyhow::Result<LoadResult> {
    let base = settings.base_url.as_str().trim_end_matches('/').to_owned();
    let customers = match args.scenario {
        Scenario::Saga => register_customers(&client, &base, args.customers).await?,
        _ => Vec::new(),
    };
    let target = Arc::new(Target {
        client,
        place_url: format!("{base}/v1/orders"),
        orders_url: format!("{base}/v1/orders"),
        health_url: format!("{base}/healthz"),
        wait: args.wait,
        lines: args.lines,
        pool: Mutex::new(Vec::new()),
        replaced: AtomicU64::new(0),
        customers,
        poll_interval: args.poll_interval,
        saga_timeout: args.saga_timeout,
    });
    let setup_orders_placed = if args.scenario == Scenario::Read {
        setup(&target, args.setup_orders).await?
    } else {
        0
    };

    let recorder = Arc::new(Recorder::new());
    let run_start = Instant::now();
    let progress = tokio::spawn(progress(
        recorder.clone(),
        run_start,
        args.warmup,
        args.duration,
    ));
    let (warmup, duration, scenario, read_ratio) =
        (args.warmup, args.duration, args.scenario, args.read_ratio);
    let window_end = run_start + warmup + duration;
    let mut send_lag = None;
    match settings.mode {
        Mode::Closed { concurrency } => {
            let next = Arc::new(AtomicU64::new(0));
            let mut workers = tokio::task::JoinSet::new();
            for _ in 0..concurrency {
                let (target, recorder, next) = (target.clone(), recorder.clone(), next.clone());
                workers.spawn(async move {
                    loop {
                        let started = run_start.elapsed();
                        let phase = schedule::phase(started, warmup, duration);
                        if phase == Phase::Over {
                            return Ok::<_, anyhow::Error>(());
                        }
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        recorder.in_flight.fetch_add(1, Ordering::Relaxed);
                        let (kind, outcome) = target.operate(scenario, read_ratio, index).await;
                        recorder.in_flight.fetch_sub(1, Ordering::Relaxed);
                        let latency = run_start.elapsed().saturating_sub(started);
                        recorder.record(phase, kind, latency, &outcome)?;
                    }
                });
            }
            while let Some(joined) = workers.join_next().await {
                joined.context("join a load worker")??;
            }
        }
        Mode::Open {
            rate,
            max_in_flight,
        } => {
            let mut lag = Histogram::<u64>::new_with_bounds(1, HISTOGRAM_MAX_MICROS, 3)
                .context("create the send-lag histogram")?;
            let mut tasks = tokio::task::JoinSet::new();
            for index in 0_u64.. {
                let intended = schedule::intended_offset(index, rate);
                let phase = schedule::phase(intended, warmup, duration);
                if phase == Phase::Over {
                    break;
                }
                tokio::time::sleep_until((run_start + intended).into()).await;
                // A cap on in-flight operations keeps a stalled gateway
                // from exhausting sockets; operations held back here are
                // still charged from their intended time.
                while recorder.in_flight.load(Ordering::Relaxed) >= max_in_flight {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                while let Some(joined) = tasks.try_join_next() {
                    joined.context("join an open-loop operation")??;
                }
                let sent = run_start.elapsed();
                if phase == Phase::Measured {
                    let micros = u64::try_from(sent.saturating_sub(intended).as_micros())
                        .unwrap_or(u64::MAX);
                    lag.saturating_record(micros.max(1));
                }
                let (target, recorder) = (target.clone(), recorder.clone());
                recorder.in_flight.fetch_add(1, Ordering::Relaxed);
                tasks.spawn(async move {
                    let (kind, outcome) = target.operate(scenario, read_ratio, index).await;
                    recorder.in_flight.fetch_sub(1, Ordering::Relaxed);
                    let latency = schedule::corrected_latency(intended, run_start.elapsed());
                    recorder.record(phase, kind, latency, &outcome)
                });
            }
            while let Some(joined) = tasks.join_next().await {
                joined.context("join an open-loop operation")??;
            }
            send_lag = Some(percentiles(&lag));
        }
    }
    let drain_s = Instant::now()
        .saturating_duration_since(window_end)
        .as_secs_f64();
    progress.abort();
    if std::io::stderr().is_terminal() {
        eprintln!();
    }

    let measured = recorder
        .measured
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut kinds: Vec<OpKind> = measured
        .histograms
        .keys()
        .chain(measured.failures.keys())
        .copied()
        .collect();
    kinds.sort();
    kinds.dedup();
    let ops: Vec<OpResult> = kinds
        .into_iter()
        .map(|kind| {
            let histogram = measured.histograms.get(&kind);
            let settled = histogram.map_or(0, Histogram::len);
            let failures = measured.failures.get(&kind).cloned().unwrap_or_default();
            OpResult {
                kind,
                settled,
                settled_per_s: schedule::per_second(settled, duration),
                latency_ms: histogram.map(percentiles),
                refused_latency_ms: measured.refusals.get(&kind).map(percentiles),
                failed: failures.values().sum(),
                failures,
            }
        })
        .collect();
    // The saga's figure is orders ended (confirmed or rejected) per second.
    let settled_commands_per_s = ops
        .iter()
        .filter(|op| match scenario {
            Scenario::Saga => matches!(op.kind, OpKind::Confirm | OpKind::Reject),
            _ => op.kind == OpKind::Place,
        })
        .map(|op| op.settled_per_s)
        .sum();
    Ok(LoadResult {
        mode: settings.mode,
        scenario,
        window_s: duration.as_secs_f64(),
        started_in_window: measured.started,
        ops,
        settled_commands_per_s,
        send_lag_ms: send_lag,
        drain_s,
        setup_orders_placed,
    })
}

/// Registers the users a `saga` run orders for, 16 at a time, unrecorded;
/// their ids. Each waits until the users projection shows it; the saga's
/// own read model of users follows within its projector's lag.
async fn register_customers(
    client: &reqwest::Client,
    base: &str,
    customers: u64,
) -> anyhow::Result<Vec<String>> {
    eprintln!("setup: registering {customers} customers");
    let run = uuid::Uuid::now_v7().simple().to_string();
    let mut registered = Vec::new();
    let indices: Vec<u64> = (0..customers).collect();
    for batch in indices.chunks(16) {
        let mut registrations = tokio::task::JoinSet::new();
        for index in batch {
            let (client, url) = (client.clone(), format!("{base}/v1/users"));
            let body = serde_json::json!({
                "email": format!("load-{run}-{index}@example.org"),
                "name": format!("Load customer {index}"),
            });
            registrations.spawn(async move {
                let response = client
                    .post(&url)
                    .header("prefer", "wait=10")
                    .json(&body)
                    .send()
                    .await
                    .context("register a customer")?;
                let status = response.status();
                let user: serde_json::Value =
                    response.json().await.context("read a registration")?;
                match (status.as_u16(), user.get("id").and_then(|id| id.as_str())) {
                    (200 | 201, Some(id)) => Ok(id.to_owned()),
                    _ => bail!("registering a customer answered {status}: {user}"),
                }
            });
        }
        while let Some(joined) = registrations.join_next().await {
            registered.push(joined.context("join a registration")??);
        }
    }
    eprintln!("setup: {} customers registered", registered.len());
    Ok(registered)
}

/// Places the orders a `read` run reads, 64 at a time, unrecorded.
async fn setup(target: &Arc<Target>, orders: u64) -> anyhow::Result<u64> {
    eprintln!("setup: placing {orders} orders to read back");
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..orders.min(64) {
        let (target, next, failed) = (target.clone(), next.clone(), failed.clone());
        workers.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < orders {
                match target.place().await {
                    Outcome::Settled(Some(id)) => target.remember(id),
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined.context("join a setup worker")?;
    }
    let placed = target
        .pool
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .len() as u64;
    let failed = failed.load(Ordering::Relaxed);
    eprintln!("setup: {placed} placed, {failed} failed");
    if placed == 0 {
        bail!("the setup phase placed no order, so there is nothing to read");
    }
    Ok(placed)
}

/// A once-a-second line on stderr: phase, answers/s, in flight, failures.
/// On a terminal it rewrites itself; in a log it appends.
async fn progress(
    recorder: Arc<Recorder>,
    run_start: Instant,
    warmup: Duration,
    duration: Duration,
) {
    let terminal = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let (mut last_answered, mut last_settled, mut last_at) = (0, 0, Instant::now());
    loop {
        tick.tick().await;
        let now = Instant::now();
        let elapsed = now.duration_since(run_start);
        let answered = recorder.answered.load(Ordering::Relaxed);
        let settled = recorder.settled.load(Ordering::Relaxed);
        let seconds = now.duration_since(last_at).as_secs_f64().max(1e-9);
        let phase = match schedule::phase(elapsed, warmup, duration) {
            Phase::Warmup => "warm-up",
            Phase::Measured => "measuring",
            Phase::Over => "draining",
        };
        let failures = recorder
            .live_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let failed: u64 = failures.values().sum();
        let detail = failures
            .iter()
            .map(|(status, count)| format!("{status}: {count}"))
            .collect::<Vec<_>>()
            .join(", ");
        let line = format!(
            "[{:>4.0}s/{:.0}s {phase:<9}] {:>7.0} answers/s, {:>7.0} settled/s, in flight {:>5}, failures {failed}{}",
            elapsed.as_secs_f64(),
            (warmup + duration).as_secs_f64(),
            (answered - last_answered) as f64 / seconds,
            (settled - last_settled) as f64 / seconds,
            recorder.in_flight.load(Ordering::Relaxed),
            if detail.is_empty() { String::new() } else { format!(" ({detail})") },
        );
        if terminal {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
        (last_answered, last_settled, last_at) = (answered, settled, now);
    }
}

impl OpResult {
    pub(crate) fn name(&self) -> &'static str {
        self.kind.name()
    }
}
