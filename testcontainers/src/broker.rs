//! The real broker: Apache Kafka (KRaft) run from its Maven jars on the
//! JVM. The shared broker is one node that is broker and controller, one per
//! test process; a [`dedicated_broker`], which a test may kill, runs its
//! controller in a process of its own (see [`KafkaBroker::kill9`] for why).
//!
//! Started lazily by the first test that asks, on free loopback ports, in
//! its own temp directory: the harness writes `server.properties` and a
//! log4j2 configuration there, formats the storage directory with
//! `kafka.tools.StorageTool format`, then runs `kafka.Kafka` and waits until
//! it answers a metadata request. Tests share it and isolate themselves with
//! unique topic prefixes.
//!
//! The jars come from `FOLDLINE_KAFKA_LIB` (else
//! `~/.cache/foldline/kafka-<version>/lib`), which `scripts/test` fills once
//! from `testcontainers/kafka/pom.xml`; the JVM is `FOLDLINE_JAVA`, else
//! `$JAVA_HOME/bin/java`, else `java` on `PATH`.
//!
//! A secured broker (SASL_SSL, mutual TLS, ACLs) is the same start with
//! more listeners and properties ([`crate::secured`]).
//!
//! A `static` is never dropped, so the broker is not a plain child: it runs
//! under a small `sh` watchdog whose stdin is a pipe this process holds open.
//! When the test process exits, however it exits (even kill -9), the pipe
//! closes, the watchdog reads end-of-file and kills the broker with SIGKILL,
//! then removes its directory.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use crate::ports::free_port;
use crate::wait::Deadline;

/// The Apache Kafka version the suite runs (`kafka.version` in
/// `testcontainers/kafka/pom.xml`).
pub const KAFKA_VERSION: &str = "4.4.0";

const INSTALL_HINT: &str = "run scripts/test, which fetches the broker's jars once with Maven \
     (testcontainers/kafka/pom.xml), or point FOLDLINE_KAFKA_LIB at a folder holding \
     kafka_2.13 and its runtime dependencies";

/// The JVM's options: a small heap and a collector and compiler tier that
/// start fast; a test broker holds little and moves little.
const JVM_OPTIONS: &[&str] = &[
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
];

/// Any valid KRaft cluster id (16 bytes, URL-safe base64): every broker has
/// a directory of its own, so they may share it.
const CLUSTER_ID: &str = "Zm9sZGxpbmUtdGVzdHMAAQ";

/// Kafka's log: everything at INFO except the configuration dumps and the
/// per-request log, on stdout (which the harness sends to `kafka.log`).
const LOG4J2: &str = "\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
";

/// Runs "$@" (the broker) in the background and kills it when stdin closes.
/// The broker's directory is removed on that orderly path only; when the
/// broker dies on its own the directory (and its log) stays for a post-mortem.
/// The CQL server ([`crate::cassandra`]) runs under the same watchdog.
pub(crate) const WATCHDOG: &str = r#"
dir="$FOLDLINE_BROKER_DIR"
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

/// A running single-node Kafka.
#[derive(Debug)]
pub struct KafkaBroker {
    bootstrap_servers: String,
    directory: PathBuf,
    log: PathBuf,
    started_in: Duration,
    watchdog: Mutex<Child>,
    /// Held open for the life of the process: its closing (or a line
    /// written to it) stops the broker.
    lifeline: Mutex<ChildStdin>,
    /// The KRaft controller in a process of its own, for a broker a test
    /// kills; `None` when the broker is its own controller.
    controller: Option<Controller>,
}

/// A KRaft controller process beside a [`dedicated_broker`]: it outlives
/// the broker's kill -9, so the broker comes back to a cluster that has
/// already fenced it.
#[derive(Debug)]
struct Controller {
    log: PathBuf,
    watchdog: Mutex<Child>,
    lifeline: Mutex<ChildStdin>,
}

/// What the controller logs when it fences a broker whose session expired.
const FENCED_LINE: &str = "Fencing broker 1 at epoch";

static BROKER: OnceLock<Result<KafkaBroker, String>> = OnceLock::new();

/// The test process's broker, started on first use. Every caller gets the
/// same instance, or the same start-up error.
pub fn broker() -> anyhow::Result<&'static KafkaBroker> {
    match BROKER.get_or_init(|| KafkaBroker::start().map_err(|error| format!("{error:#}"))) {
        Ok(kafka) => Ok(kafka),
        Err(error) => Err(anyhow::anyhow!("the kafka broker did not start: {error}")),
    }
}

/// A broker of its own for one test, for what the shared one cannot give
/// (a broker the test may stop). It lives until the test process exits,
/// like the shared one.
pub fn dedicated_broker() -> anyhow::Result<&'static KafkaBroker> {
    Ok(Box::leak(Box::new(KafkaBroker::start_killable()?)))
}

impl KafkaBroker {
    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The broker's log file (`kafka.log` in its directory).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// From formatting the storage to the first answered metadata request.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The last `lines` lines of the broker's log.
    pub fn log_tail(&self, lines: usize) -> String {
        crate::process::tail_of(&self.log, lines)
    }

    /// Whether the broker process is still running.
    pub fn is_running(&self) -> bool {
        still_running(&self.watchdog)
    }

    /// Kills the broker (SIGKILL, through its watchdog) and waits until it
    /// is gone: the outage case. Only for a [`dedicated_broker`].
    pub fn stop(&self) -> anyhow::Result<()> {
        ask_to_stop(&self.lifeline, "broker")?;
        if let Some(controller) = &self.controller {
            controller.stop()?;
        }
        let deadline = Deadline::secs(30);
        while self.is_running() {
            anyhow::ensure!(!deadline.passed(), "the broker did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// kill -9 of the broker's JVM (its data stays), then the same broker
    /// started again on the same ports and log directories; returns once it
    /// answers metadata requests. The crash-and-recover case: what the
    /// broker acknowledged with acks=all must survive it. Only for a
    /// [`dedicated_broker`].
    pub fn kill9_and_restart(&self) -> anyhow::Result<()> {
        self.kill9()?;
        self.restart()
    }

    /// kill -9 of the broker's JVM, keeping its data, and waits until it is
    /// gone and its controller has fenced it: an outage that
    /// [`KafkaBroker::restart`] ends. Only for a [`dedicated_broker`].
    ///
    /// Why the controller lives apart and the fence is waited for: a
    /// single-node cluster (broker and controller in one JVM) restarted
    /// right after a kill -9 comes back believing it still leads its
    /// partitions, under a registration the controller fences a few seconds
    /// later. A transaction that was prepared to commit when the kill landed
    /// has its markers sent in that window; the fence leaves the partitions
    /// leaderless, and Kafka 4.4's marker sender then drops the markers as
    /// if the partitions were deleted. The transaction hangs: its partitions'
    /// last stable offset stops for good (stop 15's CI found it). A killed
    /// broker whose controller survives and fences it first comes back to
    /// leaderless partitions and leads them again only once unfenced, when
    /// the markers can be delivered: the production shape (dedicated
    /// controllers), and the one the fault tests mean.
    pub fn kill9(&self) -> anyhow::Result<()> {
        let mut watchdog = self
            .watchdog
            .lock()
            .map_err(|_| anyhow::anyhow!("the broker's watchdog is poisoned"))?;
        let fenced_before = self.controller.as_ref().map(Controller::fencings);
        let pid = watchdog.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .with_context(|| format!("list the children of the broker's watchdog {pid}"))?;
        let jvm = children
            .split_whitespace()
            .find(|child| {
                std::fs::read_to_string(format!("/proc/{child}/comm"))
                    .is_ok_and(|comm| comm.trim() == "java")
            })
            .with_context(|| format!("the broker's watchdog {pid} runs no java process"))?
            .to_owned();
        let status = Command::new("kill")
            .args(["-KILL", &jvm])
            .status()
            .context("run kill -KILL")?;
        anyhow::ensure!(status.success(), "kill -KILL {jvm} failed: {status}");
        let deadline = Deadline::secs(30);
        while matches!(watchdog.try_wait(), Ok(None)) {
            anyhow::ensure!(
                !deadline.passed(),
                "the killed broker's watchdog did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(watchdog);
        if let (Some(controller), Some(before)) = (&self.controller, fenced_before) {
            controller.wait_fenced(before, Deadline::secs(30))?;
        }
        Ok(())
    }

    /// Starts a broker killed by [`KafkaBroker::kill9`] again, on the same
    /// ports and log directories; returns once it answers metadata
    /// requests.
    pub fn restart(&self) -> anyhow::Result<()> {
        let mut watchdog = self
            .watchdog
            .lock()
            .map_err(|_| anyhow::anyhow!("the broker's watchdog is poisoned"))?;
        anyhow::ensure!(
            !matches!(watchdog.try_wait(), Ok(None)),
            "the broker is still running"
        );
        if let Some(controller) = &self.controller {
            anyhow::ensure!(
                controller.is_running(),
                "the broker's controller is not running; its log ({}):\n{}",
                controller.log.display(),
                crate::process::tail_of(&controller.log, 30)
            );
        }
        let (child, lifeline) = launch(&self.directory, &self.log, true)?;
        *watchdog = child;
        drop(watchdog);
        *self
            .lifeline
            .lock()
            .map_err(|_| anyhow::anyhow!("the broker's lifeline is poisoned"))? = lifeline;
        self.wait_until_serving(Deadline::secs(90))
    }

    fn start() -> anyhow::Result<KafkaBroker> {
        KafkaBroker::start_with(|_| Ok(BrokerSetup::default()))
    }

    /// A broker a test may kill: its controller runs in a process of its
    /// own, which the kill leaves running.
    fn start_killable() -> anyhow::Result<KafkaBroker> {
        KafkaBroker::start_in(|_| Ok(BrokerSetup::default()), true)
    }

    /// A broker whose setup (extra listeners, properties, storage-format
    /// flags) `setup` writes into the broker's fresh directory.
    pub(crate) fn start_with(
        setup: impl FnOnce(&Path) -> anyhow::Result<BrokerSetup>,
    ) -> anyhow::Result<KafkaBroker> {
        KafkaBroker::start_in(setup, false)
    }

    fn start_in(
        setup: impl FnOnce(&Path) -> anyhow::Result<BrokerSetup>,
        separate_controller: bool,
    ) -> anyhow::Result<KafkaBroker> {
        let began = Instant::now();
        let directory = tempfile::Builder::new()
            .prefix("foldline-kafka-")
            .tempdir()
            .context("create the broker's temp dir")?
            .keep();
        let setup = setup(&directory)?;
        let port = free_port()?;
        let controller_port = free_port()?;
        let controller = if separate_controller {
            Some(Controller::start(
                &directory.join("controller"),
                controller_port,
            )?)
        } else {
            None
        };
        let role = if separate_controller {
            Role::Broker
        } else {
            Role::Combined
        };
        let properties =
            server_properties(role, port, controller_port, &directory.join("data"), &setup);
        prepare_node(&directory, &properties, &setup.format_args)?;

        let log = directory.join("kafka.log");
        let (child, lifeline) = launch(&directory, &log, false)?;
        let mut kafka = KafkaBroker {
            bootstrap_servers: format!("127.0.0.1:{port}"),
            directory,
            log,
            started_in: Duration::ZERO,
            watchdog: Mutex::new(child),
            lifeline: Mutex::new(lifeline),
            controller,
        };
        kafka.wait_until_serving(Deadline::secs(90))?;
        kafka.started_in = began.elapsed();
        eprintln!(
            "kafka {KAFKA_VERSION} serving on {} after {:?} (log: {})",
            kafka.bootstrap_servers,
            kafka.started_in,
            kafka.log.display()
        );
        Ok(kafka)
    }

    /// Waits until the broker answers a Kafka metadata request.
    fn wait_until_serving(&self, deadline: Deadline) -> anyhow::Result<()> {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", "foldline-it-probe")
            .set("log_level", "3")
            .create()
            .context("create the metadata probe client")?;
        loop {
            if !self.is_running() {
                anyhow::bail!(
                    "kafka exited during start-up; its log ({}):\n{}",
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
                    "kafka did not answer metadata requests within {:?} (last error: {last_error}); its log:\n{}",
                    deadline.budget(),
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether the process under `watchdog` is still running.
fn still_running(watchdog: &Mutex<Child>) -> bool {
    watchdog
        .lock()
        .map(|mut child| matches!(child.try_wait(), Ok(None)))
        .unwrap_or(false)
}

/// Writes a line to a watchdog's `lifeline`: it kills its process and
/// removes its directory. `what` names the process in errors.
fn ask_to_stop(lifeline: &Mutex<ChildStdin>, what: &str) -> anyhow::Result<()> {
    let mut lifeline = lifeline
        .lock()
        .map_err(|_| anyhow::anyhow!("the {what}'s lifeline is poisoned"))?;
    std::io::Write::write_all(&mut *lifeline, b"stop\n")
        .with_context(|| format!("signal the {what}'s watchdog"))
}

/// Writes a node's `server.properties` and log4j2 configuration into
/// `directory` and formats its storage.
fn prepare_node(directory: &Path, properties: &str, format_args: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(directory)
        .with_context(|| format!("create {}", directory.display()))?;
    let properties_path = directory.join("server.properties");
    std::fs::write(&properties_path, properties)
        .with_context(|| format!("write {}", properties_path.display()))?;
    let log4j = directory.join("log4j2.properties");
    std::fs::write(&log4j, LOG4J2).with_context(|| format!("write {}", log4j.display()))?;
    let format_log = directory.join("format.log");
    let mut format = jvm_command(directory, "kafka.tools.StorageTool")?;
    format
        .args(["format", "--cluster-id", CLUSTER_ID, "--config"])
        .arg(&properties_path)
        .arg("--ignore-formatted")
        .args(format_args);
    run_to_end(format, &format_log, Deadline::secs(60))
        .with_context(|| format!("format the node's storage in {}", directory.display()))
}

impl Controller {
    /// Formats and starts a controller in `directory`, listening on
    /// `port`; the broker waits for it on its own start.
    fn start(directory: &Path, port: u16) -> anyhow::Result<Controller> {
        let properties = server_properties(
            Role::Controller,
            0,
            port,
            &directory.join("data"),
            &BrokerSetup::default(),
        );
        prepare_node(directory, &properties, &[])?;
        let log = directory.join("controller.log");
        let (child, lifeline) = launch(directory, &log, false)?;
        Ok(Controller {
            log,
            watchdog: Mutex::new(child),
            lifeline: Mutex::new(lifeline),
        })
    }

    fn is_running(&self) -> bool {
        still_running(&self.watchdog)
    }

    /// How often the controller has fenced the broker so far.
    fn fencings(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|log| log.matches(FENCED_LINE).count())
            .unwrap_or(0)
    }

    /// Waits until the controller has fenced the broker more than `before`
    /// times: the killed broker's session expired, its partitions have no
    /// leader, and a restarted broker registers as a new incarnation at once.
    fn wait_fenced(&self, before: usize, deadline: Deadline) -> anyhow::Result<()> {
        while self.fencings() <= before {
            anyhow::ensure!(
                self.is_running(),
                "the controller exited; its log ({}):\n{}",
                self.log.display(),
                crate::process::tail_of(&self.log, 30)
            );
            anyhow::ensure!(
                !deadline.passed(),
                "the controller did not fence the killed broker within {:?}; its log ({}):\n{}",
                deadline.budget(),
                self.log.display(),
                crate::process::tail_of(&self.log, 30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Asks the controller's watchdog to stop it (and remove its directory).
    fn stop(&self) -> anyhow::Result<()> {
        ask_to_stop(&self.lifeline, "controller")
    }
}

/// Runs the broker of `directory` (its `server.properties`, already
/// formatted) under its watchdog, its output going to `log` (appended to
/// when `append`, on a restart); returns the watchdog and its lifeline.
fn launch(directory: &Path, log: &Path, append: bool) -> anyhow::Result<(Child, ChildStdin)> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    let stderr = log_file
        .try_clone()
        .context("duplicate the log file handle")?;
    let server = jvm_command(directory, "kafka.Kafka")?;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("sh")
        .arg(server.get_program())
        .args(server.get_args())
        .arg(directory.join("server.properties"))
        .current_dir(directory)
        .env("FOLDLINE_BROKER_DIR", directory)
        .env_remove("KAFKA_OPTS")
        .env_remove("KAFKA_HEAP_OPTS")
        .stdin(Stdio::piped())
        .stdout(log_file)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("start {} under sh", server.get_program().to_string_lossy()))?;
    let lifeline = child
        .stdin
        .take()
        .context("take the watchdog's stdin pipe")?;
    Ok((child, lifeline))
}

/// What a broker has beyond the plain one: listeners (name, which is also
/// its security protocol, and port), properties, storage-format flags.
#[derive(Debug, Default)]
pub(crate) struct BrokerSetup {
    pub(crate) listeners: Vec<(&'static str, u16)>,
    pub(crate) properties: String,
    pub(crate) format_args: Vec<String>,
}

/// `java <JVM_OPTIONS> -cp <kafka lib>/* <main_class>` in `directory`,
/// logging with the `log4j2.properties` there.
pub(crate) fn jvm_command(directory: &Path, main_class: &str) -> anyhow::Result<Command> {
    let mut command = Command::new(find_java());
    command
        .args(JVM_OPTIONS)
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            directory.join("log4j2.properties").display()
        ))
        .arg("-cp")
        .arg(find_lib()?.join("*"))
        .arg(main_class)
        .current_dir(directory)
        .env_remove("KAFKA_OPTS")
        .env_remove("KAFKA_HEAP_OPTS");
    Ok(command)
}

/// What a node of a test cluster is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// One node that is broker and controller (node 1).
    Combined,
    /// A broker only (node 1), its controller a [`Role::Controller`].
    Broker,
    /// A controller only (node 2).
    Controller,
}

/// A node's `server.properties`: on loopback only, every internal topic at
/// replication factor 1, no rebalance delay. `port` is the broker's client
/// port (unused by a controller), `controller_port` the controller's.
fn server_properties(
    role: Role,
    port: u16,
    controller_port: u16,
    data: &Path,
    setup: &BrokerSetup,
) -> String {
    let data = data.display();
    let extra = |line: &dyn Fn(&str, u16) -> String| -> String {
        setup
            .listeners
            .iter()
            .map(|(name, port)| line(name, *port))
            .collect()
    };
    let listeners = extra(&|name, port| format!(",{name}://127.0.0.1:{port}"));
    let protocols = extra(&|name, _| format!(",{name}:{name}"));
    let setup_properties = &setup.properties;
    let node = match role {
        Role::Combined => format!(
            "\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}{listeners}
"
        ),
        Role::Broker => format!(
            "\
process.roles=broker
node.id=1
controller.quorum.voters=2@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port}{listeners}
# A killed broker's session ends soon after its last heartbeat (the
# controller's broker.session.timeout.ms).
broker.heartbeat.interval.ms=1000
"
        ),
        Role::Controller => {
            return format!(
                "\
process.roles=controller
node.id=2
controller.quorum.voters=2@127.0.0.1:{controller_port}
listeners=CONTROLLER://127.0.0.1:{controller_port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT
log.dirs={data}
# Fences a killed broker 6 s after its last heartbeat (the default is 9 s).
broker.session.timeout.ms=6000
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
num.network.threads=1
num.io.threads=1
background.threads=1
num.recovery.threads.per.data.dir=1
"
            )
        }
    };
    format!(
        "\
{node}advertised.listeners=PLAINTEXT://127.0.0.1:{port}{listeners}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT{protocols}
log.dirs={data}
# Topics are created through the admin API, as in production.
auto.create.topics.enable=false
delete.topic.enable=true
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Fault tests shorten a killed member's session to keep crash cycles quick.
group.min.session.timeout.ms=1000
# Two cores are shared by everything a test runs.
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608
{setup_properties}"
    )
}

/// Runs `command` to its end with its output in `log`, failing with the
/// log's tail when it fails or outlives `deadline` (it is killed then).
pub(crate) fn run_to_end(
    mut command: Command,
    log: &Path,
    deadline: Deadline,
) -> anyhow::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let log_file =
        std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let stderr = log_file
        .try_clone()
        .context("duplicate the log file handle")?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("start {program}"))?;
    loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("wait for {program}"))?
        {
            anyhow::ensure!(
                status.success(),
                "{program} failed ({status}); its output ({}):\n{}",
                log.display(),
                crate::process::tail_of(log, 20)
            );
            return Ok(());
        }
        if deadline.passed() {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "{program} did not finish within {:?}; its output ({}):\n{}",
                deadline.budget(),
                log.display(),
                crate::process::tail_of(log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// FOLDLINE_KAFKA_LIB, else ~/.cache/foldline/kafka-<version>/lib; it must
/// hold the broker jar of [`KAFKA_VERSION`].
fn find_lib() -> anyhow::Result<PathBuf> {
    find_jars(
        "FOLDLINE_KAFKA_LIB",
        &format!("kafka-{KAFKA_VERSION}"),
        &format!("kafka_2.13-{KAFKA_VERSION}.jar"),
        &format!("apache kafka {KAFKA_VERSION}"),
        INSTALL_HINT,
    )
}

/// `$variable`, else `~/.cache/foldline/<cached>/lib`, which must hold `jar`.
pub(crate) fn find_jars(
    variable: &str,
    cached: &str,
    jar: &str,
    what: &str,
    hint: &str,
) -> anyhow::Result<PathBuf> {
    let lib = match std::env::var_os(variable) {
        Some(explicit) => PathBuf::from(explicit),
        None => std::env::var_os("HOME")
            .map(|home| {
                PathBuf::from(home)
                    .join(".cache/foldline")
                    .join(cached)
                    .join("lib")
            })
            .with_context(|| format!("find the {what} jars: neither {variable} nor HOME is set"))?,
    };
    let jar = lib.join(jar);
    anyhow::ensure!(
        jar.is_file(),
        "{what} not found: {} does not exist; {hint}",
        jar.display()
    );
    Ok(lib)
}

/// FOLDLINE_JAVA, else $JAVA_HOME/bin/java, else `java` (from PATH).
pub(crate) fn find_java() -> PathBuf {
    if let Some(explicit) = std::env::var_os("FOLDLINE_JAVA") {
        return PathBuf::from(explicit);
    }
    std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin").join("java"))
        .filter(|java| java.is_file())
        .unwrap_or_else(|| PathBuf::from("java"))
}
