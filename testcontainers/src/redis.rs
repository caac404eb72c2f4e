//! A real Redis (`redis-server` from Debian, which `scripts/test` installs)
//! per test, on a free loopback port, no persistence, its log in its own
//! temp dir. A test can stop it (SIGKILL: an outage) and start it again on
//! the same port.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::ports::free_port;
use crate::wait::Deadline;

#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    directory: tempfile::TempDir,
    child: Option<Child>,
    generation: u32,
}

impl RedisServer {
    pub fn start() -> anyhow::Result<RedisServer> {
        let directory = tempfile::Builder::new()
            .prefix("foldline-redis-")
            .tempdir()
            .context("create redis's temp dir")?;
        let mut server = RedisServer {
            port: free_port()?,
            directory,
            child: None,
            generation: 0,
        };
        server.start_again()?;
        Ok(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.directory
            .path()
            .join(format!("redis.{}.log", self.generation))
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("kill redis-server")?;
            child.wait().context("wait for redis-server")?;
        }
        Ok(())
    }

    /// Starts the server (again) on its port and waits until it accepts
    /// connections. Nothing survives a restart: it keeps no data on disk.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.generation += 1;
        let log = self.log_path();
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.directory.path())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().context("duplicate the log handle")?)
            .stderr(log_file)
            .spawn()
            .context(
                "start redis-server (scripts/test installs it: apt-get install redis-server)",
            )?;
        self.child = Some(child);
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Deadline::secs(20);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            anyhow::ensure!(
                !deadline.passed(),
                "redis-server did not listen on {address}; its log:\n{}",
                crate::process::tail_of(&log, 20)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
