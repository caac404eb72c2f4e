//! One test's isolated Foldline environment on the shared broker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use crate::broker::{broker, KafkaBroker};
use crate::http::Api;
use crate::ports::free_port;
use crate::process::FoldlineProcess;
use crate::replay::{committed_offsets, read_topic, replay_orders_events, Replay};
use crate::wait::Deadline;

/// The key-encryption key of every test deployment (64 hex digits). A
/// test value: it protects nothing but test data.
pub const TEST_KEY_ENCRYPTION_KEY: &str =
    "5f0e3c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

/// A unique topic prefix, fixed ports for the registry and the gateway, and
/// a temp dir holding every process's store and log.
///
/// Declare it before the processes it launches: locals drop in reverse
/// order, so the processes die (and, on a panic, print their logs) before
/// the directory goes. On a panic the directory is kept and its path printed.
#[derive(Debug)]
pub struct Deployment {
    binary: PathBuf,
    broker: &'static KafkaBroker,
    prefix: String,
    registry_port: u16,
    gateway_port: u16,
    rust_log: String,
    /// `kafka.transactions` of every process it spawns, when set.
    transactions: Option<String>,
    /// Applied after the deployment's own variables (e.g. a role's
    /// credentials on the secured broker).
    role_env: Vec<(String, String)>,
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
}

impl Deployment {
    /// Starts (or joins) the shared broker and reserves this test's names and
    /// ports. `binary` is the `foldline` executable under test.
    pub fn new(binary: impl Into<PathBuf>, test_name: &str) -> anyhow::Result<Deployment> {
        Deployment::on_broker(binary, test_name, broker()?)
    }

    /// A deployment on the secured broker ([`crate::secured`]): the harness
    /// reads through its PLAINTEXT super-user listener, the roles connect as
    /// [`Deployment::with_role_env`] says.
    pub fn secured(binary: impl Into<PathBuf>, test_name: &str) -> anyhow::Result<Deployment> {
        Deployment::on_broker(
            binary,
            test_name,
            crate::secured::secured_broker()?.broker(),
        )
    }

    /// Every process this deployment spawns gets `env` on top of its own
    /// variables (before a spawn's extra ones).
    pub fn with_role_env(mut self, env: Vec<(String, String)>) -> Deployment {
        self.role_env = env;
        self
    }

    /// A deployment on a broker of its own, for tests that stop the broker.
    pub fn isolated(binary: impl Into<PathBuf>, test_name: &str) -> anyhow::Result<Deployment> {
        Deployment::on_broker(binary, test_name, crate::broker::dedicated_broker()?)
    }

    fn on_broker(
        binary: impl Into<PathBuf>,
        test_name: &str,
        broker: &'static KafkaBroker,
    ) -> anyhow::Result<Deployment> {
        let binary = binary.into();
        anyhow::ensure!(
            binary.is_file(),
            "the foldline binary {} does not exist",
            binary.display()
        );
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("it{}-{test_name}-", &unique[..8]);
        let dir = tempfile::Builder::new()
            .prefix(&format!("foldline-it-{test_name}-"))
            .tempdir()
            .context("cannot create the test's temp dir")?;
        let dir_path = dir.path().to_owned();
        Ok(Deployment {
            binary,
            broker,
            prefix,
            registry_port: free_port()?,
            gateway_port: free_port()?,
            rust_log: std::env::var("FOLDLINE_IT_LOG")
                .unwrap_or_else(|_| "info,rdkafka=warn".to_owned()),
            transactions: None,
            role_env: Vec::new(),
            dir: Some(dir),
            dir_path,
        })
    }

    /// Every process this deployment spawns runs with `kafka.transactions =
    /// mode` (`"on"`, `"off"`, `"auto"`), for tests run in both modes.
    pub fn with_transactions(mut self, mode: &str) -> Deployment {
        self.transactions = Some(mode.to_owned());
        self
    }

    /// The `kafka.transactions` this deployment's processes run with, if set.
    pub fn transactions(&self) -> Option<&str> {
        self.transactions.as_deref()
    }

    pub fn broker(&self) -> &'static KafkaBroker {
        self.broker
    }

    pub fn bootstrap_servers(&self) -> &str {
        self.broker.bootstrap_servers()
    }

    /// The prefix of every topic and consumer group of this test.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A topic's full name, e.g. `topic("orders.events")`.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn registry_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.registry_port)
    }

    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway_port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// A client of this deployment's gateway.
    pub fn api(&self) -> anyhow::Result<Api> {
        Api::new(&self.gateway_url())
    }

    /// The environment of a process of this deployment using `store`
    /// (a subdirectory name of the temp dir) as its embedded store.
    pub fn env(&self, store: &str) -> Vec<(String, String)> {
        let pairs = [
            (
                "FOLDLINE__KAFKA__BOOTSTRAP_SERVERS",
                self.bootstrap_servers().to_owned(),
            ),
            ("FOLDLINE__KAFKA__TOPIC_PREFIX", self.prefix.clone()),
            (
                "FOLDLINE__REGISTRY_SERVER__LISTEN",
                format!("127.0.0.1:{}", self.registry_port),
            ),
            ("FOLDLINE__REGISTRY__URL", self.registry_url()),
            (
                "FOLDLINE__GATEWAY__LISTEN",
                format!("127.0.0.1:{}", self.gateway_port),
            ),
            (
                "FOLDLINE__STORE__PATH",
                self.dir_path.join(store).display().to_string(),
            ),
            ("RUST_LOG", self.rust_log.clone()),
            // The fault tests' orders are judged without the saga (their
            // checker knows the order machine alone); a saga test turns it
            // back on with `with_role_env`.
            ("FOLDLINE__SAGA__ENABLED", "false".to_owned()),
            // Every process of a deployment seals and opens personal data
            // alike; tests read it back with the same key.
            (
                "FOLDLINE__PERSONAL_DATA__KEY_ENCRYPTION_KEY",
                TEST_KEY_ENCRYPTION_KEY.to_owned(),
            ),
        ];
        let mut env: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .chain(self.role_env.iter().cloned())
            .collect();
        if let Some(mode) = &self.transactions {
            env.push(("FOLDLINE__KAFKA__TRANSACTIONS".to_owned(), mode.clone()));
        }
        env
    }

    /// Spawns `foldline run <roles>` named `name` with the store dir
    /// `<tempdir>/<store>`; its log is `<tempdir>/<name>.log` (a relaunch
    /// under the same name gets `<name>.2.log` and so on).
    pub fn spawn(
        &self,
        name: &str,
        roles: &[&str],
        store: &str,
    ) -> anyhow::Result<FoldlineProcess> {
        self.spawn_with(name, roles, store, &[])
    }

    /// [`Deployment::spawn`] with extra environment variables (e.g.
    /// `FOLDLINE__PROCESSOR__SNAPSHOT_EVERY_COMMANDS`), applied last.
    pub fn spawn_with(
        &self,
        name: &str,
        roles: &[&str],
        store: &str,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<FoldlineProcess> {
        let mut log = self.dir_path.join(format!("{name}.log"));
        let mut generation = 2;
        while log.exists() {
            log = self.dir_path.join(format!("{name}.{generation}.log"));
            generation += 1;
        }
        let mut env = self.env(store);
        env.extend(
            extra_env
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
        );
        FoldlineProcess::spawn(&self.binary, name, roles, &env, &self.dir_path, log)
    }

    /// Spawns the process that serves HTTP (`registry` and/or `gateway`
    /// among `roles`) and waits until it is ready: the gateway's /readyz when
    /// it runs the gateway, else the registry's root.
    pub async fn spawn_ready(
        &self,
        name: &str,
        roles: &[&str],
        store: &str,
        deadline: Deadline,
    ) -> anyhow::Result<FoldlineProcess> {
        self.spawn_ready_with(name, roles, store, &[], deadline)
            .await
    }

    /// [`Deployment::spawn_ready`] with extra environment variables.
    pub async fn spawn_ready_with(
        &self,
        name: &str,
        roles: &[&str],
        store: &str,
        extra_env: &[(&str, &str)],
        deadline: Deadline,
    ) -> anyhow::Result<FoldlineProcess> {
        let mut process = self.spawn_with(name, roles, store, extra_env)?;
        if roles.contains(&"gateway") {
            process
                .wait_ready(&format!("{}/readyz", self.gateway_url()), deadline)
                .await?;
        } else if roles.contains(&"registry") {
            process
                .wait_ready(&format!("{}/subjects", self.registry_url()), deadline)
                .await?;
        }
        Ok(process)
    }

    /// What the broker knows about some commands, for a failure message:
    /// where each sits in `orders.commands`, what `orders.events` holds for
    /// it, and the offsets the processor and projector groups committed.
    pub async fn diagnose_commands(&self, command_ids: &[String]) -> String {
        let mut report = Vec::new();
        let commands_topic = self.topic("orders.commands");
        let events_topic = self.topic("orders.events");
        match read_topic(self.bootstrap_servers(), &commands_topic).await {
            Ok(records) => {
                for command_id in command_ids {
                    let positions: Vec<(i32, i64)> = records
                        .iter()
                        .filter(|record| record.header("command-id") == Some(command_id.as_bytes()))
                        .map(|record| (record.partition, record.offset))
                        .collect();
                    report.push(format!(
                        "{command_id} is in {commands_topic} at (partition, offset) {positions:?}"
                    ));
                }
                let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
                for record in &records {
                    let end = ends.entry(record.partition).or_default();
                    *end = (*end).max(record.offset + 1);
                }
                report.push(format!("{commands_topic} ends at {ends:?}"));
            }
            Err(error) => report.push(format!("cannot read {commands_topic}: {error:#}")),
        }
        match self.replay().await {
            Ok(replay) => {
                for command_id in command_ids {
                    report.push(format!(
                        "{command_id}: records in {events_topic}: {:?}; settled: {:?}",
                        replay.records_of(command_id),
                        replay.settled(command_id)
                    ));
                }
                let ends: BTreeMap<i32, i64> = replay
                    .logs
                    .iter()
                    .map(|(partition, log)| (*partition, log.next_offset))
                    .collect();
                report.push(format!("{events_topic} ends at {ends:?}"));
            }
            Err(error) => report.push(format!("cannot replay {events_topic}: {error:#}")),
        }
        for (group, topic) in [
            (self.topic("orders-processor"), &commands_topic),
            (self.topic("orders-projector-orders"), &events_topic),
        ] {
            match committed_offsets(self.bootstrap_servers(), &group, topic) {
                Ok(offsets) => {
                    report.push(format!("group {group} committed {offsets:?} on {topic}"))
                }
                Err(error) => report.push(format!(
                    "cannot read the offsets of group {group}: {error:#}"
                )),
            }
        }
        report.join("\n")
    }

    /// Deletes this deployment's topic `name` (e.g. `"orders.events"`)
    /// through the admin API and waits until the broker's metadata no longer
    /// lists it, so that whoever creates it next gets an empty topic.
    pub async fn delete_topic(&self, name: &str, deadline: Deadline) -> anyhow::Result<()> {
        let topic = self.topic(name);
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .set("client.id", "foldline-it-admin")
            .create()
            .context("create an admin client")?;
        let options = AdminOptions::new().operation_timeout(Some(deadline.remaining()));
        let results = admin
            .delete_topics(&[topic.as_str()], &options)
            .await
            .with_context(|| format!("delete topic {topic}"))?;
        for result in results {
            result.map_err(|(topic, code)| anyhow::anyhow!("delete topic {topic}: {code}"))?;
        }
        let probe: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .set("client.id", "foldline-it-probe")
            .set("allow.auto.create.topics", "false")
            .create()
            .context("create the metadata probe client")?;
        crate::wait::poll_until(&format!("{topic} to be gone"), deadline, || {
            let metadata = probe.fetch_metadata(None, Duration::from_secs(1));
            let topic = &topic;
            async move {
                match metadata {
                    Ok(metadata) if metadata.topics().iter().any(|t| t.name() == topic) => {
                        Err(format!("the metadata still lists {topic}"))
                    }
                    Ok(_) => Ok(Some(())),
                    Err(error) => Err(error.to_string()),
                }
            }
        })
        .await
    }

    /// Folds this deployment's `orders.events` as the processor and the
    /// projection would.
    pub async fn replay(&self) -> anyhow::Result<Replay> {
        replay_orders_events(self.bootstrap_servers(), &self.prefix, &self.registry_url()).await
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                // The broker's log so far, beside the processes' logs.
                let _ = std::fs::copy(self.broker.log_path(), kept.join("kafka.log"));
                eprintln!(
                    "test deployment {} failed: its stores and logs (and the broker's, kafka.log) are kept in {}\n----- kafka ({}) last 15 lines -----\n{}",
                    self.prefix,
                    kept.display(),
                    if self.broker.is_running() { "running" } else { "NOT RUNNING" },
                    self.broker.log_tail(15)
                );
            }
        }
    }
}
