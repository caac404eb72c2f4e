//! The real CQL server: Apache Cassandra 5 (one node) run from its Maven
//! jars on the JVM, one per test process. ScyllaDB is what production runs;
//! it is not installable here and speaks the same protocol, so the CQL
//! store is tested against Cassandra.
//!
//! Started lazily by the first test that asks, on free loopback ports, in
//! its own temp directory: the harness writes `cassandra.yaml` (one token,
//! loopback only, small caches) and a logback configuration there, then
//! runs `org.apache.cassandra.service.CassandraDaemon` with the JVM options
//! Cassandra ships for Java 17 (`conf/jvm17-server.options`: the JPMS
//! exports and opens it needs) and a small heap, and waits until the log
//! says "Startup complete" and the native port accepts connections. Tests
//! share it and isolate themselves with a keyspace each.
//!
//! The jars come from `FOLDLINE_CASSANDRA_LIB` (else
//! `~/.cache/foldline/cassandra-<version>/lib`), which `scripts/test` fills
//! once from `testcontainers/cassandra/pom.xml`. The JVM and the watchdog
//! that kills the server when the test process exits are the broker's
//! ([`crate::broker`]).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::broker::{find_jars, find_java, WATCHDOG};
use crate::ports::free_port;
use crate::wait::Deadline;

/// The Cassandra version the suite runs (`cassandra.version` in
/// `testcontainers/cassandra/pom.xml`).
pub const CASSANDRA_VERSION: &str = "5.0.9";

const INSTALL_HINT: &str = "run scripts/test, which fetches Cassandra's jars once with Maven \
     (testcontainers/cassandra/pom.xml), or point FOLDLINE_CASSANDRA_LIB at a folder holding \
     cassandra-all and its runtime dependencies";

/// Cassandra's `conf/jvm17-server.options` (5.0): its collector settings
/// and every `--add-exports`/`--add-opens` it needs on Java 17, then the
/// harness's own: a small fixed heap and options that start a test node fast.
const JVM_OPTIONS: &[&str] = &[
    // One node serves every test of a binary at once: at 512 MiB it ran
    // out of heap mid-suite (java.lang.OutOfMemoryError, the saga kill test
    // then saw no CQL server); 1 GiB of the 24 leaves it room.
    "-Xms1g",
    "-Xmx1g",
    "-Xss256k",
    "-XX:+UseG1GC",
    "-XX:+ParallelRefProcEnabled",
    "-XX:MaxTenuringThreshold=1",
    "-XX:G1RSetUpdatingPauseTimePercent=5",
    "-XX:MaxGCPauseMillis=300",
    "-XX:InitiatingHeapOccupancyPercent=70",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:-UsePerfData",
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports=java.sql/java.sql=ALL-UNNAMED",
    "--add-exports=java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
    "-Djava.awt.headless=true",
    // A single fresh node: no gossip to settle, no ring to wait for, no
    // fsync of the system tables it creates at first start.
    "-Dcassandra-foreground=yes",
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.ring_delay_ms=0",
    "-Dcassandra.initial_token=0",
    "-Dcassandra.unsafesystem=true",
    "-Dcassandra.superuser_setup_delay_ms=0",
];

/// Cassandra's log at INFO into `cassandra.log` (the harness's temp dir).
fn logback(log: &Path) -> String {
    format!(
        r#"<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{}</file>
    <encoder><pattern>%-5level [%thread] %date{{ISO8601}} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
"#,
        log.display()
    )
}

/// One node, one token, loopback only, small memtables and caches; the
/// batch limit raised to ScyllaDB's default (1 MiB) so a projector batch
/// is judged as production would judge it.
fn cassandra_yaml(data: &Path, native_port: u16, storage_port: u16) -> String {
    let data = data.display();
    format!(
        "\
cluster_name: foldline-tests
num_tokens: 1
allocate_tokens_for_local_replication_factor: 1
auto_bootstrap: false
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
dynamic_snitch: false
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 8MiB
data_file_directories:
  - {data}/data
commitlog_directory: {data}/commitlog
saved_caches_directory: {data}/saved_caches
hints_directory: {data}/hints
cdc_raw_directory: {data}/cdc_raw
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: \"127.0.0.1:{storage_port}\"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: {storage_port}
native_transport_port: {native_port}
start_native_transport: true
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
auto_snapshot: false
concurrent_reads: 4
concurrent_writes: 4
concurrent_counter_writes: 4
concurrent_compactors: 1
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
key_cache_size: 0MiB
counter_cache_size: 0MiB
prepared_statements_cache_size: 8MiB
batch_size_warn_threshold: 512KiB
batch_size_fail_threshold: 1024KiB
"
    )
}

/// A running single-node Cassandra.
#[derive(Debug)]
pub struct CassandraServer {
    contact_point: String,
    directory: PathBuf,
    log: PathBuf,
    started_in: Duration,
    watchdog: Mutex<Child>,
    /// Held open for the life of the process: its closing stops the server.
    _lifeline: Mutex<ChildStdin>,
}

static SERVER: OnceLock<Result<CassandraServer, String>> = OnceLock::new();

/// The test process's CQL server, started on first use. Every caller gets
/// the same instance, or the same start-up error.
pub fn cassandra() -> anyhow::Result<&'static CassandraServer> {
    match SERVER.get_or_init(|| CassandraServer::start().map_err(|error| format!("{error:#}"))) {
        Ok(server) => Ok(server),
        Err(error) => Err(anyhow::anyhow!("cassandra did not start: {error}")),
    }
}

/// A keyspace name no other test uses: `<prefix>_<8 hex>`.
pub fn unique_keyspace(prefix: &str) -> String {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &unique[..8])
}

impl CassandraServer {
    /// `127.0.0.1:<native port>`, a CQL contact point.
    pub fn contact_point(&self) -> &str {
        &self.contact_point
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The server's log (`cassandra.log` in its directory).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// From launching the JVM to "Startup complete" and an open native port.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    pub fn log_tail(&self, lines: usize) -> String {
        crate::process::tail_of(&self.log, lines)
    }

    pub fn is_running(&self) -> bool {
        self.watchdog
            .lock()
            .map(|mut child| matches!(child.try_wait(), Ok(None)))
            .unwrap_or(false)
    }

    fn start() -> anyhow::Result<CassandraServer> {
        let began = Instant::now();
        let classpath = find_lib()?.join("*");
        let java = find_java();
        let directory = tempfile::Builder::new()
            .prefix("foldline-cassandra-")
            .tempdir()
            .context("create cassandra's temp dir")?
            .keep();
        let native_port = free_port()?;
        let storage_port = free_port()?;
        let yaml = directory.join("cassandra.yaml");
        std::fs::write(
            &yaml,
            cassandra_yaml(&directory.join("data"), native_port, storage_port),
        )
        .with_context(|| format!("write {}", yaml.display()))?;
        let log = directory.join("cassandra.log");
        let logback_file = directory.join("logback.xml");
        std::fs::write(&logback_file, logback(&log))
            .with_context(|| format!("write {}", logback_file.display()))?;
        let stdout = directory.join("stdout.log");
        let stdout_file = std::fs::File::create(&stdout)
            .with_context(|| format!("create {}", stdout.display()))?;
        let stderr = stdout_file
            .try_clone()
            .context("duplicate the stdout file handle")?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(&java)
            .args(JVM_OPTIONS)
            .arg(format!("-Dcassandra.config=file://{}", yaml.display()))
            .arg(format!(
                "-Dcassandra.storagedir={}",
                directory.join("data").display()
            ))
            .arg(format!(
                "-Dlogback.configurationFile={}",
                logback_file.display()
            ))
            .arg("-cp")
            .arg(&classpath)
            .arg("org.apache.cassandra.service.CassandraDaemon")
            .current_dir(&directory)
            .env("FOLDLINE_BROKER_DIR", &directory)
            .env_remove("JVM_OPTS")
            .env_remove("JAVA_TOOL_OPTIONS")
            .stdin(Stdio::piped())
            .stdout(stdout_file)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("start {} under sh", java.display()))?;
        let lifeline = child
            .stdin
            .take()
            .context("take the watchdog's stdin pipe")?;
        let mut server = CassandraServer {
            contact_point: format!("127.0.0.1:{native_port}"),
            directory,
            log,
            started_in: Duration::ZERO,
            watchdog: Mutex::new(child),
            _lifeline: Mutex::new(lifeline),
        };
        server.wait_until_serving(native_port, Deadline::secs(120), &stdout)?;
        server.started_in = began.elapsed();
        eprintln!(
            "cassandra {CASSANDRA_VERSION} serving cql on {} after {:?} (log: {})",
            server.contact_point,
            server.started_in,
            server.log.display()
        );
        Ok(server)
    }

    fn wait_until_serving(
        &self,
        native_port: u16,
        deadline: Deadline,
        stdout: &Path,
    ) -> anyhow::Result<()> {
        let address = SocketAddr::from(([127, 0, 0, 1], native_port));
        loop {
            if !self.is_running() {
                anyhow::bail!(
                    "cassandra exited during start-up; its output ({}):\n{}\nits log ({}):\n{}",
                    stdout.display(),
                    crate::process::tail_of(stdout, 20),
                    self.log.display(),
                    self.log_tail(30)
                );
            }
            let started = std::fs::read_to_string(&self.log)
                .map(|log| log.contains("Startup complete"))
                .unwrap_or(false);
            if started && TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            if deadline.passed() {
                anyhow::bail!(
                    "cassandra did not serve cql on {address} within {:?}; its log ({}):\n{}",
                    deadline.budget(),
                    self.log.display(),
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// FOLDLINE_CASSANDRA_LIB, else ~/.cache/foldline/cassandra-<version>/lib;
/// it must hold the server jar of [`CASSANDRA_VERSION`].
fn find_lib() -> anyhow::Result<PathBuf> {
    find_jars(
        "FOLDLINE_CASSANDRA_LIB",
        &format!("cassandra-{CASSANDRA_VERSION}"),
        &format!("cassandra-all-{CASSANDRA_VERSION}.jar"),
        &format!("apache cassandra {CASSANDRA_VERSION}"),
        INSTALL_HINT,
    )
}
