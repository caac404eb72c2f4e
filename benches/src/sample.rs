//! What the run does to the platform, sampled once a second while it runs:
//! the gateway process's resident memory (`--pid`, from `/proc`) and the
//! backlog between the commands and the events topic (`--bootstrap-servers`:
//! one command settles as one event, so the difference of their summed high
//! watermarks is the number of commands produced and not yet decided).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;

const INTERVAL: Duration = Duration::from_secs(1);
const BROKER_TIMEOUT: Duration = Duration::from_secs(2);

/// First, largest and last sample of one quantity, and the samples themselves.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Series {
    pub(crate) first: f64,
    pub(crate) max: f64,
    pub(crate) last: f64,
    /// One a second from the start of the run (warm-up included).
    pub(crate) samples: Vec<f64>,
}

impl Series {
    fn from_samples(samples: Vec<f64>) -> Option<Series> {
        Some(Series {
            first: *samples.first()?,
            max: samples.iter().copied().fold(f64::MIN, f64::max),
            last: *samples.last()?,
            samples,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Sampled {
    pub(crate) rss_mib: Option<Series>,
    pub(crate) backlog_commands: Option<Series>,
    pub(crate) commands_topic: String,
    pub(crate) events_topic: String,
}

/// Where the samples come from.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    pub(crate) pid: Option<u32>,
    pub(crate) bootstrap_servers: Option<String>,
    pub(crate) commands_topic: String,
    pub(crate) events_topic: String,
}

/// A sampler running on a blocking thread until [`Sampler::finish`].
pub(crate) struct Sampler {
    stop: Arc<AtomicBool>,
    thread: tokio::task::JoinHandle<anyhow::Result<Sampled>>,
}

impl Sampler {
    pub(crate) fn start(sources: Sources) -> anyhow::Result<Sampler> {
        let consumer = match &sources.bootstrap_servers {
            Some(bootstrap) => Some(
                ClientConfig::new()
                    .set("bootstrap.servers", bootstrap)
                    .set("group.id", "foldline-load-sampler")
                    .create::<BaseConsumer>()
                    .context("create the backlog sampler's kafka client")?,
            ),
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = tokio::task::spawn_blocking(move || {
            let (mut rss, mut backlog) = (Vec::new(), Vec::new());
            let mut next = Instant::now();
            while !stopped.load(Ordering::Relaxed) {
                if let Some(pid) = sources.pid {
                    if let Some(mib) = rss_mib(pid) {
                        rss.push(mib);
                    }
                }
                if let Some(consumer) = &consumer {
                    let commands = high_watermarks(consumer, &sources.commands_topic);
                    let events = high_watermarks(consumer, &sources.events_topic);
                    if let (Ok(commands), Ok(events)) = (commands, events) {
                        backlog.push((commands - events) as f64);
                    }
                }
                next += INTERVAL;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            Ok(Sampled {
                rss_mib: Series::from_samples(rss),
                backlog_commands: Series::from_samples(backlog),
                commands_topic: sources.commands_topic,
                events_topic: sources.events_topic,
            })
        });
        Ok(Sampler { stop, thread })
    }

    pub(crate) async fn finish(self) -> anyhow::Result<Sampled> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.await.context("join the sampler")?
    }
}

/// `VmRSS` of `pid` in MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss_kib(&status).map(|kib| kib as f64 / 1024.0)
}

fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The sum of `topic`'s partitions' high watermarks.
fn high_watermarks(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<i64> {
    let metadata = consumer
        .fetch_metadata(Some(topic), BROKER_TIMEOUT)
        .with_context(|| format!("read the metadata of {topic}"))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|found| found.name() == topic)
        .map(|found| found.partitions().len())
        .unwrap_or(0);
    let mut sum = 0;
    for partition in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition as i32, BROKER_TIMEOUT)
            .with_context(|| format!("read the watermarks of {topic}/{partition}"))?;
        sum += high;
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_from_proc_status() {
        let status = "Name:\tfoldline\nVmPeak:\t  900 kB\nVmRSS:\t  123456 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss_kib(status), Some(123_456));
        assert_eq!(parse_vm_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn a_series_keeps_first_max_and_last() {
        let series = Series::from_samples(vec![3.0, 9.0, 4.0]).unwrap();
        assert_eq!((series.first, series.max, series.last), (3.0, 9.0, 4.0));
        assert!(Series::from_samples(Vec::new()).is_none());
    }
}
