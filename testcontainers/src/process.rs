//! One `foldline run <role>...` process.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::wait::{Deadline, POLL_INTERVAL};

/// A running `foldline` child. Its stdout and stderr go to one log file.
/// Dropping it kills it (SIGKILL); when the drop happens while a test is
/// panicking, it first prints the tail of its log so the failure explains
/// itself.
#[derive(Debug)]
pub struct FoldlineProcess {
    name: String,
    roles: Vec<String>,
    child: Child,
    pid: u32,
    log: PathBuf,
    paused: bool,
}

impl FoldlineProcess {
    /// Spawns `binary run <roles>` with `env` on top of this process's
    /// environment minus every inherited `FOLDLINE_*` variable.
    pub fn spawn(
        binary: &Path,
        name: &str,
        roles: &[&str],
        env: &[(String, String)],
        working_dir: &Path,
        log: PathBuf,
    ) -> anyhow::Result<FoldlineProcess> {
        let log_file =
            File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let stderr = log_file
            .try_clone()
            .context("cannot duplicate the log file handle")?;
        let mut command = Command::new(binary);
        command.arg("run").args(roles);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("FOLDLINE") {
                command.env_remove(key);
            }
        }
        command
            .envs(
                env.iter()
                    .map(|(key, value)| (key.as_str(), value.as_str())),
            )
            .current_dir(working_dir)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(stderr);
        let child = command.spawn().with_context(|| {
            format!("cannot spawn {} run {}", binary.display(), roles.join(" "))
        })?;
        let pid = child.id();
        Ok(FoldlineProcess {
            name: name.to_owned(),
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
            child,
            pid,
            log,
            paused: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Whether the process has not exited (a paused process is running).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How the process ended, once it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, then reap. No shutdown path runs: the crash case.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            self.child
                .kill()
                .with_context(|| format!("cannot SIGKILL {}", self.name))?;
        }
        self.child
            .wait()
            .with_context(|| format!("cannot reap {}", self.name))?;
        self.paused = false;
        Ok(())
    }

    /// SIGTERM, then wait for the exit: the orderly shutdown path.
    pub async fn terminate(
        &mut self,
        deadline: Deadline,
    ) -> anyhow::Result<std::process::ExitStatus> {
        self.send_terminate()?;
        self.wait_exit(deadline).await
    }

    /// SIGTERM, without waiting.
    pub fn send_terminate(&self) -> anyhow::Result<()> {
        self.signal("-TERM")
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(
        &mut self,
        deadline: Deadline,
    ) -> anyhow::Result<std::process::ExitStatus> {
        loop {
            if let Some(status) = self.exit_status() {
                return Ok(status);
            }
            anyhow::ensure!(
                !deadline.passed(),
                "{} did not exit within {:?}",
                self.name,
                deadline.budget()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// SIGSTOP: the process freezes mid-whatever (GC pause, VM stall), keeps
    /// its sockets and wakes later believing nothing happened.
    pub fn pause(&mut self) -> anyhow::Result<()> {
        self.signal("-STOP")?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.signal("-CONT")?;
        self.paused = false;
        Ok(())
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args([signal, &self.pid.to_string()])
            .status()
            .with_context(|| format!("cannot run kill {signal} {}", self.pid))?;
        anyhow::ensure!(
            status.success(),
            "kill {signal} {} ({}) failed: {status}",
            self.pid,
            self.name
        );
        Ok(())
    }

    /// Polls `url` until it answers 200; fails early when the process exits.
    pub async fn wait_ready(&mut self, url: &str, deadline: Deadline) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
            .context("cannot build the readiness client")?;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                anyhow::bail!(
                    "{} exited with {status} before {url} was ready; log tail:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            let last = match client.get(url).send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => format!("HTTP {}", response.status()),
                Err(error) => error.to_string(),
            };
            if deadline.passed() {
                anyhow::bail!(
                    "{} was not ready at {url} within {:?} (last: {last}); log tail:\n{}",
                    self.name,
                    deadline.budget(),
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until the log contains `needle` `count` times (e.g. a role's
    /// "partitions assigned" line); fails early when the process exits.
    pub async fn wait_for_log(
        &mut self,
        needle: &str,
        count: usize,
        deadline: Deadline,
    ) -> anyhow::Result<()> {
        loop {
            let seen = self.log_text().matches(needle).count();
            if seen >= count {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                anyhow::bail!(
                    "{} exited with {status} while waiting for {needle:?} in its log; log tail:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            if deadline.passed() {
                anyhow::bail!(
                    "{} logged {needle:?} {seen} times, not {count}, within {:?}; log tail:\n{}",
                    self.name,
                    deadline.budget(),
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// How many times the log contains `needle` so far.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log_text().matches(needle).count()
    }

    /// The whole log so far, without terminal colour codes.
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|bytes| strip_ansi(&String::from_utf8_lossy(&bytes)))
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail_of(&self.log, lines)
    }

    /// A titled log tail for failure messages.
    pub fn report(&self, lines: usize) -> String {
        format!(
            "----- {} (pid {}, `foldline run {}`, log {}) last {lines} lines -----\n{}",
            self.name,
            self.pid,
            self.roles.join(" "),
            self.log.display(),
            self.log_tail(lines)
        )
    }
}

impl Drop for FoldlineProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.report(60));
        }
        // SIGKILL ends a stopped process too; no need to resume it first.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The last `lines` lines of a file (reads at most its last 256 KiB).
pub fn tail_of(path: &Path, lines: usize) -> String {
    const WINDOW: u64 = 256 * 1024;
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let length = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    let start = length.saturating_sub(WINDOW);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return format!("(cannot read {})", path.display());
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return format!("(cannot read {})", path.display());
    }
    let text = strip_ansi(&String::from_utf8_lossy(&bytes));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Removes ANSI escape sequences (`ESC [ ... final`), which tracing's text
/// format writes even into files.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(character) = chars.next() {
        if character == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for inner in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&inner) {
                    break;
                }
            }
        } else {
            out.push(character);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::strip_ansi;

    #[test]
    fn colour_codes_are_stripped() {
        let coloured = "\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \u{1b}[3mfrom\u{1b}[0m\u{1b}[2m=\u{1b}[0m40";
        assert_eq!(strip_ansi(coloured), "2026  INFO from=40");
    }
}
