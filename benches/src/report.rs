//! The run's reports: the machine, the versions, every flag and the
//! results, as JSON (for tools) and Markdown (for people), in one place.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;

use crate::args::Args;
use crate::load::LoadResult;
use crate::raw::RawResult;
use crate::sample::{Sampled, Series};

/// A command costs at least three produces: the command, its event, its
/// outcome.
pub(crate) const PRODUCES_PER_COMMAND: f64 = 3.0;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    pub(crate) cores: Option<usize>,
    pub(crate) cpu_model: Option<String>,
    pub(crate) memory_mib: Option<u64>,
    pub(crate) os: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Versions {
    pub(crate) foldline_benches: &'static str,
    pub(crate) git_commit: Option<String>,
    pub(crate) git_dirty: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Ratio {
    /// settled commands/s ÷ (raw produce/s ÷ 3); `None` without `--bootstrap-servers`.
    pub(crate) settled_vs_raw: Option<f64>,
    pub(crate) note: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) started_at: String,
    pub(crate) machine: Machine,
    pub(crate) versions: Versions,
    pub(crate) settings: Args,
    pub(crate) load: LoadResult,
    /// `--compare-health`: `/healthz` right after the reads, same mode.
    pub(crate) health: Option<LoadResult>,
    pub(crate) sampled: Sampled,
    pub(crate) raw: Option<RawResult>,
    pub(crate) ratio: Ratio,
}

pub(crate) fn ratio(load: &LoadResult, raw: Option<&RawResult>) -> Ratio {
    match raw {
        Some(raw) if raw.produce_per_s > 0.0 => Ratio {
            settled_vs_raw: Some(load.settled_commands_per_s / (raw.produce_per_s / PRODUCES_PER_COMMAND)),
            note: "settled commands/s ÷ (raw produce/s ÷ 3): 1.0 would mean the platform runs as fast as its three produces per command allow".to_owned(),
        },
        Some(_) => Ratio {
            settled_vs_raw: None,
            note: "not measured: the raw baseline produced nothing".to_owned(),
        },
        None => Ratio {
            settled_vs_raw: None,
            note: "not measured: pass --bootstrap-servers to measure the raw kafka baseline".to_owned(),
        },
    }
}

pub(crate) fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok();
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    Machine {
        cores: std::thread::available_parallelism().ok().map(usize::from),
        cpu_model: cpuinfo.as_deref().and_then(cpu_model),
        memory_mib: meminfo.as_deref().and_then(memory_mib),
        os: std::env::consts::OS,
    }
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

fn memory_mib(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib / 1_024)
    })
}

pub(crate) fn versions() -> Versions {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    Versions {
        foldline_benches: env!("CARGO_PKG_VERSION"),
        git_commit: git(&["rev-parse", "HEAD"]),
        git_dirty: git(&["status", "--porcelain", "--untracked-files=no"])
            .map(|status| !status.is_empty()),
    }
}

/// `(ISO 8601 UTC, file-name safe)` timestamps of `now`.
pub(crate) fn timestamps(now: SystemTime) -> (String, String) {
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let (year, month, day) = civil_from_days(i64::try_from(seconds / 86_400).unwrap_or(0));
    let of_day = seconds % 86_400;
    let (hour, minute, second) = (of_day / 3_600, of_day % 3_600 / 60, of_day % 60);
    (
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"),
        format!("{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z"),
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm), so the harness needs no date crate.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Writes `<stamp>-<scenario>-<mode>.json` and `.md`; returns both paths.
pub(crate) fn write(
    report: &Report,
    dir: &Path,
    stamp: &str,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("create the results directory {}", dir.display()))?;
    let mode = match report.load.mode {
        crate::args::Mode::Closed { concurrency } => format!("closed{concurrency}"),
        crate::args::Mode::Open { rate, .. } => format!("open{rate}"),
    };
    let stem = format!("{stamp}-{}-{mode}", report.settings.scenario.name());
    let json_path = dir.join(format!("{stem}.json"));
    let markdown_path = dir.join(format!("{stem}.md"));
    let json = serde_json::to_string_pretty(report).context("serialize the json report")?;
    std::fs::write(&json_path, json + "\n")
        .with_context(|| format!("write {}", json_path.display()))?;
    std::fs::write(&markdown_path, markdown(report))
        .with_context(|| format!("write {}", markdown_path.display()))?;
    Ok((json_path, markdown_path))
}

fn number(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |value| format!("{value:.digits$}"))
}

/// The human summary, also printed to stdout at the end of a run.
pub(crate) fn summary(report: &Report) -> String {
    let mut out = String::new();
    let load = &report.load;
    let _ = writeln!(
        out,
        "{} scenario, {}, {:.0} s measured after {:.0} s warm-up against {}",
        report.settings.scenario.name(),
        load.mode.describe(),
        load.window_s,
        report.settings.warmup.as_secs_f64(),
        report.settings.url,
    );
    // A read run places nothing: its figure is the reads' row below.
    match report.settings.scenario {
        crate::args::Scenario::Read => {}
        crate::args::Scenario::Saga => {
            let _ = writeln!(
                out,
                "orders the saga ended (confirmed or rejected)/s: {:.1}; latency: place request → first read showing the end (poll every {:?})",
                load.settled_commands_per_s, report.settings.poll_interval
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "settled commands/s: {:.1}",
                load.settled_commands_per_s
            );
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "| op | settled | per s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | failed | failures by status |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let health_ops = report.health.iter().flat_map(|health| health.ops.iter());
    for op in load.ops.iter().chain(health_ops) {
        let latency = op.latency_ms.as_ref();
        let failures = op
            .failures
            .iter()
            .map(|(status, count)| format!("{status}: {count}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} |",
            op.name(),
            op.settled,
            op.settled_per_s,
            number(latency.map(|l| l.p50), 1),
            number(latency.map(|l| l.p90), 1),
            number(latency.map(|l| l.p99), 1),
            number(latency.map(|l| l.p999), 1),
            number(latency.map(|l| l.max), 1),
            op.failed,
            if failures.is_empty() {
                "–".to_owned()
            } else {
                failures
            },
        );
    }
    let _ = writeln!(out);
    for op in &load.ops {
        if let Some(refused) = &op.refused_latency_ms {
            let refusals = op.failures.get("503").copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "{}: {refusals} refused with 503, answered in p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                op.name(),
                refused.p50,
                refused.p99,
                refused.max,
            );
        }
    }
    if let Some(health) = &report.health {
        let per_s = |result: &LoadResult, kind| {
            result
                .ops
                .iter()
                .find(|op| op.kind == kind)
                .map_or(0.0, |op| op.settled_per_s)
        };
        let reads = per_s(load, crate::load::OpKind::Read);
        let healthz = per_s(health, crate::load::OpKind::Health);
        if healthz > 0.0 {
            let _ = writeln!(
                out,
                "GET order {reads:.0}/s ÷ GET /healthz {healthz:.0}/s = {:.2} (same process, one after the other)",
                reads / healthz
            );
        }
    }
    let series = |name: &str, series: &Option<Series>, unit: &str| match series {
        Some(series) => format!(
            "{name}: first {:.0}{unit}, max {:.0}{unit}, last {:.0}{unit} ({} samples, 1/s)",
            series.first,
            series.max,
            series.last,
            series.samples.len()
        ),
        None => format!("{name}: not sampled"),
    };
    let _ = writeln!(
        out,
        "{}",
        series("gateway RSS", &report.sampled.rss_mib, " MiB")
    );
    let _ = writeln!(
        out,
        "{}",
        series(
            &format!(
                "backlog ({} − {} high watermarks)",
                report.sampled.commands_topic, report.sampled.events_topic
            ),
            &report.sampled.backlog_commands,
            ""
        )
    );
    if let Some(lag) = &load.send_lag_ms {
        let _ = writeln!(
            out,
            "open loop: latency counted from each operation's intended start; harness send lag p99 {:.1} ms, max {:.1} ms",
            lag.p99, lag.max
        );
    }
    let _ = writeln!(
        out,
        "drained in-flight operations for {:.1} s after the window",
        load.drain_s
    );
    match &report.raw {
        Some(raw) => {
            let _ = writeln!(
                out,
                "raw kafka ({} B records, topic {}, {} partitions): produce {:.0}/s ({} in {:.1} s, {} failed), consume {:.0}/s ({} in {:.1} s: {} passes over the {} records retained)",
                raw.record_bytes,
                raw.topic,
                raw.partitions,
                raw.produce_per_s,
                raw.produced,
                raw.produce_s,
                raw.produce_failed,
                raw.consume_per_s,
                raw.consumed,
                raw.consume_s,
                raw.consume_passes,
                raw.retained,
            );
        }
        None => {
            let _ = writeln!(out, "raw kafka baseline: not measured");
        }
    }
    match report.ratio.settled_vs_raw {
        Some(ratio) => {
            let _ = writeln!(out, "settled commands/s ÷ (raw produce/s ÷ 3) = {ratio:.3}");
        }
        None => {
            let _ = writeln!(out, "ratio to raw kafka: {}", report.ratio.note);
        }
    }
    out
}

fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# foldline-load: {} ({})",
        report.settings.scenario.name(),
        report.load.mode.describe()
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "Started {}.", report.started_at);
    let _ = writeln!(out);
    let _ = writeln!(out, "## Results");
    let _ = writeln!(out);
    out.push_str(&summary(report));
    let _ = writeln!(out);
    let _ = writeln!(out, "A place is settled when the gateway answers 201 under `Prefer: wait` (outcome decided, projection shows it); 202, 4xx, 5xx and transport errors are failures, by status.");
    let _ = writeln!(out);
    let _ = writeln!(out, "## Machine");
    let _ = writeln!(out);
    let machine = &report.machine;
    let _ = writeln!(
        out,
        "- cores: {}",
        machine
            .cores
            .map_or_else(|| "unknown".to_owned(), |c| c.to_string())
    );
    let _ = writeln!(
        out,
        "- cpu: {}",
        machine.cpu_model.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(
        out,
        "- memory: {}",
        machine
            .memory_mib
            .map_or_else(|| "unknown".to_owned(), |m| format!("{m} MiB"))
    );
    let _ = writeln!(out, "- os: {}", machine.os);
    let _ = writeln!(out);
    let _ = writeln!(out, "## Versions");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "- foldline-benches {}",
        report.versions.foldline_benches
    );
    let _ = writeln!(
        out,
        "- git commit: {}{}",
        report.versions.git_commit.as_deref().unwrap_or("unknown"),
        if report.versions.git_dirty == Some(true) {
            " (with uncommitted changes)"
        } else {
            ""
        }
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "## Settings");
    let _ = writeln!(out);
    let _ = writeln!(out, "```json");
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&report.settings).unwrap_or_default()
    );
    let _ = writeln!(out, "```");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamps(UNIX_EPOCH).0, "1970-01-01T00:00:00Z");
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_661);
        assert_eq!(
            timestamps(leap_day),
            (
                "2000-02-29T01:01:01Z".to_owned(),
                "20000229T010101Z".to_owned()
            )
        );
        let later = UNIX_EPOCH + Duration::from_secs(1_796_176_800);
        assert_eq!(timestamps(later).0, "2026-12-02T02:00:00Z");
    }

    #[test]
    fn proc_files_parse() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: x\nmodel name\t: Example CPU @ 2.00GHz\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("Example CPU @ 2.00GHz"));
        assert_eq!(
            memory_mib("MemTotal:       16384000 kB\nMemFree: 1 kB\n"),
            Some(16_000)
        );
        assert_eq!(cpu_model(""), None);
    }
}
