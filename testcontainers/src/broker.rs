//! The real broker: tansu 0.6.0 with SQLite storage, one per test process.
//!
//! Started lazily by the first test that asks, on a free loopback port, in
//! its own temp directory (tansu reads a `.env` from its working directory).
//! Tests share it and isolate themselves with unique topic prefixes.
//!
//! A `static` is never dropped, so the broker is not a plain child: it runs
//! under a small `sh` watchdog whose stdin is a pipe this process holds open.
//! When the test process exits, however it exits (even kill -9), the pipe
//! closes, the watchdog reads end-of-file and kills the broker with SIGKILL,
//! then removes its directory.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use crate::ports::free_port;
use crate::wait::Deadline;

/// The tansu version the suite is written against.
pub const TANSU_VERSION: &str = "0.6.0";

const INSTALL_HINT: &str = "install with `cargo install tansu --version 0.6.0 --locked --features \
     dynostore,libsql,postgres` or run scripts/test (or point FOLDLINE_TANSU_BIN at the binary)";

/// Runs "$@" (the broker) in the background and kills it when stdin closes.
/// The broker's directory is removed on that orderly path only; when the
/// broker dies on its own the directory (and its log) stays for a post-mortem.
const WATCHDOG: &str = r#"
dir="$FOLDLINE_TANSU_DIR"
exec 3<&0
"$@" 0</dev/null 3<&- &
child=$!
{ read -r _ignored <&3; : > "$dir/.stopping"; kill -9 "$child" 2>/dev/null; } &
reader=$!
exec 3<&-
wait "$child"
status=$?
if [ -e "$dir/.stopping" ]; then
  rm -rf "$dir"
else
  kill "$reader" 2>/dev/null
fi
exit "$status"
"#;

/// The shared broker.
#[derive(Debug)]
pub struct Tansu {
    bootstrap_servers: String,
    directory: PathBuf,
    log: PathBuf,
    watchdog: Mutex<Child>,
    /// Held open for the life of the process: its closing (or a line
    /// written to it) stops the broker.
    lifeline: Mutex<ChildStdin>,
}

static BROKER: OnceLock<Result<Tansu, String>> = OnceLock::new();

/// The test process's broker, started on first use. Every caller gets the
/// same instance, or the same start-up error.
pub fn broker() -> anyhow::Result<&'static Tansu> {
    match BROKER.get_or_init(|| Tansu::start().map_err(|error| format!("{error:#}"))) {
        Ok(tansu) => Ok(tansu),
        Err(error) => Err(anyhow::anyhow!("the tansu broker did not start: {error}")),
    }
}

/// A broker of its own for one test, for what the shared one cannot give
/// (an empty cluster under names already in use). It lives until the test
/// process exits, like the shared one.
///
/// Not for deleting topics: tansu 0.6.0 then upsets other topics'
/// metadata, sometimes refuses to create the topic again (`Unknown`), and
/// librdkafka clients subscribed to it crash.
pub fn dedicated_broker() -> anyhow::Result<&'static Tansu> {
    Ok(Box::leak(Box::new(Tansu::start()?)))
}

impl Tansu {
    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The last `lines` lines of the broker's log.
    pub fn log_tail(&self, lines: usize) -> String {
        crate::process::tail_of(&self.log, lines)
    }

    /// Whether the broker process is still running.
    pub fn is_running(&self) -> bool {
        self.watchdog
            .lock()
            .map(|mut child| matches!(child.try_wait(), Ok(None)))
            .unwrap_or(false)
    }

    /// Kills the broker (SIGKILL, through its watchdog) and waits until it
    /// is gone: the outage case. Only for a [`dedicated_broker`].
    pub fn stop(&self) -> anyhow::Result<()> {
        {
            let mut lifeline = self
                .lifeline
                .lock()
                .map_err(|_| anyhow::anyhow!("the broker's lifeline is poisoned"))?;
            std::io::Write::write_all(&mut *lifeline, b"stop\n")
                .context("cannot signal the broker's watchdog")?;
        }
        let deadline = Deadline::secs(30);
        while self.is_running() {
            anyhow::ensure!(!deadline.passed(), "the broker did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn start() -> anyhow::Result<Tansu> {
        let binary = find_binary()?;
        check_version(&binary)?;
        let directory = tempfile::Builder::new()
            .prefix("foldline-tansu-")
            .tempdir()
            .context("cannot create the broker's temp dir")?
            .keep();
        let port = free_port()?;
        let listener = format!("tcp://127.0.0.1:{port}");
        let log = directory.join("tansu.log");
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let stderr = log_file
            .try_clone()
            .context("cannot duplicate the log file handle")?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(&binary)
            .args([
                "broker",
                "--listener-url",
                &listener,
                "--advertised-listener-url",
                &listener,
            ])
            // A path relative to the working directory: tansu 0.6.0 reads
            // `sqlite:///abs` as relative too and then fails to open it.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .args(["--cluster-id", "foldline-it"])
            .current_dir(&directory)
            .env("FOLDLINE_TANSU_DIR", &directory)
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .env_remove("CLUSTER_ID")
            .env_remove("SCHEMA_REGISTRY")
            .stdin(Stdio::piped())
            .stdout(log_file)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {} under sh", binary.display()))?;
        let lifeline = child
            .stdin
            .take()
            .context("the watchdog has no stdin pipe")?;
        let tansu = Tansu {
            bootstrap_servers: format!("127.0.0.1:{port}"),
            directory,
            log,
            watchdog: Mutex::new(child),
            lifeline: Mutex::new(lifeline),
        };
        tansu.wait_until_serving(Deadline::secs(30))?;
        Ok(tansu)
    }

    /// Waits until the broker answers a Kafka metadata request.
    fn wait_until_serving(&self, deadline: Deadline) -> anyhow::Result<()> {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", "foldline-it-probe")
            .set("log_level", "3")
            .create()
            .context("cannot create the metadata probe client")?;
        loop {
            if !self.is_running() {
                anyhow::bail!(
                    "tansu exited during start-up; its log ({}):\n{}",
                    self.log.display(),
                    self.log_tail(30)
                );
            }
            let last_error = match client.fetch_metadata(None, Duration::from_secs(1)) {
                Ok(metadata) if !metadata.brokers().is_empty() => return Ok(()),
                Ok(_) => "metadata lists no broker".to_owned(),
                Err(error) => error.to_string(),
            };
            if deadline.passed() {
                anyhow::bail!(
                    "tansu did not answer metadata requests within {:?} (last error: {last_error}); its log:\n{}",
                    deadline.budget(),
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// FOLDLINE_TANSU_BIN, else `tansu` on PATH, else ~/.cargo/bin/tansu.
fn find_binary() -> anyhow::Result<PathBuf> {
    if let Some(explicit) = std::env::var_os("FOLDLINE_TANSU_BIN") {
        let explicit = PathBuf::from(explicit);
        if explicit.is_file() {
            return Ok(explicit);
        }
        anyhow::bail!(
            "tansu {TANSU_VERSION} not found: FOLDLINE_TANSU_BIN={} is not a file; {INSTALL_HINT}",
            explicit.display()
        );
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("tansu"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let in_cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|cargo_home| cargo_home.join("bin").join("tansu"));
    on_path
        .into_iter()
        .chain(in_cargo_home)
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| anyhow::anyhow!("tansu {TANSU_VERSION} not found: {INSTALL_HINT}"))
}

/// Refuses another tansu version: the suite relies on 0.6.0's behaviour.
fn check_version(binary: &Path) -> anyhow::Result<()> {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {} --version", binary.display()))?;
    let version = String::from_utf8_lossy(&output.stdout);
    if !version.split_whitespace().any(|word| word == TANSU_VERSION) {
        anyhow::bail!(
            "{} reports version {:?}, the suite needs tansu {TANSU_VERSION}: {INSTALL_HINT}",
            binary.display(),
            version.trim()
        );
    }
    Ok(())
}
