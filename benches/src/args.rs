//! The harness's flags and their validation: everything here is pure, so
//! a bad flag is refused (and tested) before any request leaves.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use serde::Serialize;

/// What one operation of the run does.
///
/// An enum rather than a flag per scenario so the saga (place → pay → ship)
/// and later domains become one more variant and one more arm in the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Scenario {
    /// Place orders with `Prefer: wait`; a 201 is a settled command.
    Place,
    /// Place orders and read placed orders back with GET (`--read-ratio`).
    Mixed,
    /// GET orders placed during a setup phase (`--setup-orders`); with
    /// `--compare-health`, then `/healthz` for as long, in the same run.
    Read,
    /// GET `/healthz`: the process's floor for a request.
    Health,
    /// The order saga: register `--customers` users during setup, then
    /// place orders for them (`Prefer: wait`) and poll each order every
    /// `--poll-interval` until the saga ended it: confirmed (op `confirm`)
    /// or payment rejected / rejected (op `reject`). Latency runs from the
    /// place request to the first read showing the end (so it is up to one
    /// poll interval late). Needs the payments roles and a provider.
    Saga,
}

impl Scenario {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Place => "place",
            Self::Mixed => "mixed",
            Self::Read => "read",
            Self::Health => "health",
            Self::Saga => "saga",
        }
    }
}

#[derive(Debug, Clone, Parser, Serialize)]
#[command(
    name = "foldline-load",
    about = "Load harness for a running Foldline gateway: settled throughput and latency, \
             closed or open loop, with a raw Kafka baseline"
)]
pub(crate) struct Args {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
    /// What each operation does.
    #[arg(long, value_enum, default_value_t = Scenario::Place)]
    pub(crate) scenario: Scenario,
    /// Closed loop: operations in flight, each worker sending its next one
    /// when the previous one is answered. Ignored with `--rate`.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: u64,
    /// Open loop: operations started per second, at fixed intended times,
    /// whatever the gateway's answers; latency counts from the intended time.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Open loop: most operations in flight before the scheduler stops
    /// starting new ones (late ones still count from their intended time).
    #[arg(long, default_value_t = 20_000)]
    pub(crate) max_in_flight: u64,
    /// How long the measured part lasts (`30s`, `2m`, `500ms`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_secs")]
    pub(crate) duration: Duration,
    /// How long to run before measuring (not recorded).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_secs")]
    pub(crate) warmup: Duration,
    /// Seconds a place may wait for its outcome (`Prefer: wait=N`); a 202
    /// after that is a failure: the command did not settle in time.
    #[arg(long, default_value_t = 10)]
    pub(crate) wait: u64,
    /// `mixed`: fraction of operations that are reads (0..=1).
    #[arg(long, default_value_t = 0.5)]
    pub(crate) read_ratio: f64,
    /// `read`: orders placed before the run, read back at random.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) setup_orders: u64,
    /// `saga`: users registered before the run, whose orders the saga
    /// checks against the users read model.
    #[arg(long, default_value_t = 50)]
    pub(crate) customers: u64,
    /// `saga`: how often an order is read back until the saga ended it.
    #[arg(long, default_value = "25ms", value_parser = parse_duration)]
    #[serde(serialize_with = "as_secs")]
    pub(crate) poll_interval: Duration,
    /// `saga`: an order the saga has not ended this long after it was
    /// placed is a failure (`not_ended`).
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_secs")]
    pub(crate) saga_timeout: Duration,
    /// Order lines per placed order.
    #[arg(long, default_value_t = 1)]
    pub(crate) lines: u64,
    /// Kafka bootstrap servers to measure the raw produce/consume baseline
    /// against (the embedded default prints `kafka 127.0.0.1:PORT`).
    #[arg(long)]
    pub(crate) bootstrap_servers: Option<String>,
    /// How long the raw produce baseline runs.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_secs")]
    pub(crate) raw_duration: Duration,
    /// Bytes per raw record value (a command's size on the wire).
    #[arg(long, default_value_t = 250)]
    pub(crate) raw_record_bytes: usize,
    /// Where the JSON and Markdown reports go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    pub(crate) results_dir: std::path::PathBuf,
    /// Skip writing reports (print only).
    #[arg(long)]
    pub(crate) no_report: bool,
    /// `read`: after the reads, GET `/healthz` with the same mode and
    /// duration, and report reads/s ÷ healthz/s.
    #[arg(long)]
    pub(crate) compare_health: bool,
    /// The gateway's process id: its resident memory is sampled each second.
    #[arg(long)]
    pub(crate) pid: Option<u32>,
    /// With `--bootstrap-servers`: the topics whose high-watermark
    /// difference is the backlog of undecided commands, sampled each second.
    #[arg(long, default_value = "orders.commands")]
    pub(crate) commands_topic: String,
    #[arg(long, default_value = "orders.events")]
    pub(crate) events_topic: String,
}

fn as_secs<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(value.as_secs_f64())
}

/// How operations are started.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum Mode {
    Closed { concurrency: u64 },
    Open { rate: f64, max_in_flight: u64 },
}

impl Mode {
    pub(crate) fn describe(self) -> String {
        match self {
            Self::Closed { concurrency } => format!("closed loop, concurrency {concurrency}"),
            Self::Open { rate, .. } => format!("open loop, {rate} ops/s"),
        }
    }
}

/// Flags checked and turned into what the runner needs.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) base_url: reqwest::Url,
    pub(crate) mode: Mode,
}

/// Parses `500ms`, `30s`, `2m`, `1h`, or a bare number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 30s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1_000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3_600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is out of range"))
}

/// Refuses flags that would make a run meaningless, with the reason.
pub(crate) fn validate(args: &Args) -> anyhow::Result<Settings> {
    if args.duration.is_zero() {
        bail!("--duration must be longer than zero");
    }
    let mode = match args.rate {
        Some(rate) => {
            if !rate.is_finite() || rate <= 0.0 {
                bail!("--rate must be a positive number of operations per second, got {rate}");
            }
            if args.max_in_flight == 0 {
                bail!("--max-in-flight must be at least 1");
            }
            Mode::Open {
                rate,
                max_in_flight: args.max_in_flight,
            }
        }
        None => {
            if args.concurrency == 0 {
                bail!("--concurrency must be at least 1");
            }
            if args.concurrency > 100_000 {
                bail!("--concurrency must be at most 100000");
            }
            Mode::Closed {
                concurrency: args.concurrency,
            }
        }
    };
    if args.wait == 0 || args.wait > 60 {
        bail!("--wait must be between 1 and 60 seconds");
    }
    if !(0.0..=1.0).contains(&args.read_ratio) {
        bail!("--read-ratio must be between 0 and 1");
    }
    if args.scenario == Scenario::Read && args.setup_orders == 0 {
        bail!("--setup-orders must be at least 1 for the read scenario");
    }
    if args.scenario == Scenario::Saga {
        if args.customers == 0 || args.customers > 100_000 {
            bail!("--customers must be between 1 and 100000 for the saga scenario");
        }
        if args.poll_interval.is_zero() {
            bail!("--poll-interval must be longer than zero");
        }
        if args.saga_timeout < args.poll_interval {
            bail!("--saga-timeout must be at least one --poll-interval");
        }
    }
    if args.compare_health && args.scenario != Scenario::Read {
        bail!("--compare-health goes with --scenario read");
    }
    if let Some(pid) = args.pid {
        if !std::path::Path::new(&format!("/proc/{pid}/status")).exists() {
            bail!("--pid {pid}: no such process");
        }
    }
    if args.lines == 0 || args.lines > 100 {
        bail!("--lines must be between 1 and 100");
    }
    if args.bootstrap_servers.is_some() && args.raw_duration.is_zero() {
        bail!("--raw-duration must be longer than zero");
    }
    if let Some(servers) = &args.bootstrap_servers {
        if servers.trim().is_empty() {
            bail!("--bootstrap-servers must not be empty");
        }
    }
    let base_url =
        reqwest::Url::parse(&args.url).with_context(|| format!("parse --url `{}`", args.url))?;
    if !matches!(base_url.scheme(), "http" | "https") {
        bail!("--url must be http or https, got `{}`", args.url);
    }
    Ok(Settings { base_url, mode })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flags: &[&str]) -> anyhow::Result<Settings> {
        let args =
            Args::try_parse_from(std::iter::once("foldline-load").chain(flags.iter().copied()))
                .map_err(|error| anyhow::anyhow!("{error}"))?;
        validate(&args)
    }

    fn refused(flags: &[&str]) -> String {
        match parse(flags) {
            Ok(settings) => panic!("{flags:?} was accepted: {settings:?}"),
            Err(error) => format!("{error:#}"),
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1_500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-3s").is_err());
    }

    #[test]
    fn defaults_are_a_closed_loop() {
        let settings = parse(&[]).expect("defaults are valid");
        assert_eq!(settings.mode, Mode::Closed { concurrency: 64 });
    }

    #[test]
    fn a_rate_makes_an_open_loop() {
        let settings = parse(&["--rate", "250.5"]).expect("a positive rate is valid");
        assert_eq!(
            settings.mode,
            Mode::Open {
                rate: 250.5,
                max_in_flight: 20_000
            }
        );
    }

    #[test]
    fn zero_duration_is_refused() {
        assert!(refused(&["--duration", "0s"]).contains("--duration"));
    }

    #[test]
    fn a_rate_of_zero_or_less_is_refused() {
        assert!(refused(&["--rate", "0"]).contains("--rate"));
        assert!(refused(&["--rate=-5"]).contains("--rate"));
        assert!(refused(&["--rate", "NaN"]).contains("--rate"));
    }

    #[test]
    fn zero_concurrency_is_refused() {
        assert!(refused(&["--concurrency", "0"]).contains("--concurrency"));
    }

    #[test]
    fn an_unknown_scenario_is_refused_with_the_choices() {
        let message = refused(&["--scenario", "sagas"]);
        assert!(message.contains("place"), "{message}");
        assert!(message.contains("mixed"), "{message}");
    }

    #[test]
    fn a_bad_url_is_refused() {
        assert!(refused(&["--url", "not a url"]).contains("--url"));
        assert!(refused(&["--url", "ftp://gateway"]).contains("--url"));
    }

    #[test]
    fn a_read_ratio_outside_zero_to_one_is_refused() {
        assert!(refused(&["--scenario", "mixed", "--read-ratio", "1.5"]).contains("--read-ratio"));
    }

    #[test]
    fn a_health_comparison_needs_a_read_run() {
        assert!(refused(&["--compare-health"]).contains("--compare-health"));
        assert!(parse(&["--scenario", "read", "--compare-health"]).is_ok());
    }

    #[test]
    fn a_pid_that_is_no_process_is_refused() {
        assert!(refused(&["--pid", "4000000000"]).contains("--pid"));
        assert!(parse(&["--pid", &std::process::id().to_string()]).is_ok());
    }

    #[test]
    fn a_saga_run_needs_customers_and_a_sensible_poll() {
        assert!(parse(&["--scenario", "saga"]).is_ok());
        assert!(refused(&["--scenario", "saga", "--customers", "0"]).contains("--customers"));
        assert!(
            refused(&["--scenario", "saga", "--poll-interval", "0s"]).contains("--poll-interval")
        );
        assert!(refused(&[
            "--scenario",
            "saga",
            "--poll-interval",
            "2s",
            "--saga-timeout",
            "1s"
        ])
        .contains("--saga-timeout"));
    }

    #[test]
    fn a_read_run_needs_setup_orders() {
        assert!(refused(&["--scenario", "read", "--setup-orders", "0"]).contains("--setup-orders"));
    }
}
