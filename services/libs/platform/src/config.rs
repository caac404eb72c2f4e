//! Typed, layered configuration: defaults, then a TOML file, then
//! `FOLDLINE__SECTION__KEY` environment variables. Parsed once at start-up
//! and passed down; nothing else reads the environment.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("invalid configuration: {0}")]
    Security(#[from] crate::kafka_security::SecurityConfigError),
}

/// A value that must never be printed: `Debug` and `Display` redact it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Secret(***)")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub registry: RegistryClientConfig,
    pub registry_server: RegistryServerConfig,
    pub store: StoreConfig,
    pub cache: CacheConfig,
    pub gateway: GatewayConfig,
    pub processor: ProcessorConfig,
    pub telemetry: TelemetryConfig,
    pub personal_data: PersonalDataConfig,
    pub metrics: MetricsConfig,
    pub saga: SagaConfig,
    pub payments: crate::payments_config::PaymentsConfig,
    pub notify: NotifyConfig,
}

/// `[metrics]`: where a process serves its counters (`crate::metrics`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A listener serving only `GET /metrics`, for processes without the
    /// gateway (whose own listener serves `/metrics` too). Unset: none.
    pub listen: Option<SocketAddr>,
}

/// The order saga's process managers (`services/orders/src/saga/`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SagaConfig {
    /// Whether the saga's relays issue commands. Off, their outboxes still
    /// fill (they are projections); turned on later, a relay performs
    /// everything since its cursor, timers long due included.
    pub enabled: bool,
    /// An order not confirmed this long after it was placed is rejected
    /// and its authorization voided. Read when a timer is checked, so a
    /// change applies to pending timers too. Keep it above
    /// `payments.provider.authorization_deadline_ms` plus a capture, so a
    /// slow provider declines the payment before the order runs out of time
    /// (see `services/orders/src/saga/design.md`).
    pub payment_deadline_ms: u64,
    /// The card token of an order that names none (the provider
    /// simulator's always-approved test card).
    pub default_card_token: String,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            payment_deadline_ms: 60_000,
            default_card_token: "tok_visa".to_owned(),
        }
    }
}

impl SagaConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.payment_deadline_ms == 0 {
            return Err(ConfigError::Invalid(
                "saga.payment_deadline_ms must be at least 1".to_owned(),
            ));
        }
        if self.default_card_token.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "saga.default_card_token must not be empty".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Crypto-shredding of personal data (`crate::personal_data`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersonalDataConfig {
    /// The key-encryption key wrapping every data key: 64 hex digits.
    /// Required wherever the gateway serves a domain with personal data;
    /// the embedded default generates a development key when it is unset.
    pub key_encryption_key: Option<Secret>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    /// Prepended to every topic and consumer group name: isolates
    /// environments (and tests) sharing one cluster.
    pub topic_prefix: String,
    /// Create missing topics at start-up through the admin API.
    pub create_topics: bool,
    /// Extra librdkafka properties (e.g. `socket.keepalive.enable`);
    /// security belongs in `security`.
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties holding credentials (e.g. `sasl.password`).
    pub secret_properties: BTreeMap<String, Secret>,
    /// How long a consumer's fetch may wait for data (`fetch.wait.max.ms`).
    /// Kafka answers a waiting fetch as soon as data arrives, but not every
    /// broker does (librdkafka's mock cluster holds it the full time), and
    /// each hop of a command waits on one: keep it short. 5 ms rather than
    /// 20 halved the embedded default's command latency at half load
    /// (benches/results, 2026-12-02) at no cost in throughput; on Kafka it
    /// only sets how often an idle consumer asks.
    pub fetch_wait_max_ms: u32,
    /// Whether consume-transform-produce loops (the command processor)
    /// write each batch in one Kafka transaction (`processor/design.md`).
    pub transactions: Transactions,
    /// `[kafka.security]`: TLS, SASL and mutual TLS for every client
    /// (`kafka_security`).
    pub security: crate::kafka_security::KafkaSecurityConfig,
}

/// `kafka.transactions`: the command processor's write mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transactions {
    /// On where the broker supports them: off on the embedded mock cluster
    /// (its transactions only pretend), else on unless `init_transactions`
    /// answers that the broker lacks them (librdkafka checks the brokers'
    /// ApiVersions), which falls back to off with a warning.
    #[default]
    Auto,
    /// Always; a broker without transactions is a start-up error.
    On,
    /// Never: the idempotent mode, safe by the version gate alone.
    Off,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".to_owned(),
            topic_prefix: String::new(),
            create_topics: true,
            properties: BTreeMap::new(),
            secret_properties: BTreeMap::new(),
            fetch_wait_max_ms: 5,
            transactions: Transactions::Auto,
            security: Default::default(),
        }
    }
}

/// `[registry]`: the schema registry every role's codec talks to, the
/// embedded one (`foldline up`) or any Confluent-compatible one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryClientConfig {
    /// Base URL of a Confluent-compatible schema registry (`http://` or
    /// `https://`, a path allowed, e.g. `.../apis/ccompat/v7`).
    pub url: String,
    /// HTTP basic auth (Confluent: the API key); both or neither.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// PEM file of the CA that signs the registry's certificate (default:
    /// the system's trust store); `https://` only.
    pub ca_file: Option<PathBuf>,
    /// Mutual TLS: the client's certificate and its unencrypted PKCS#8
    /// private key (PEM files); both or neither, `https://` only.
    pub certificate_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Longest wait for one registry request (connect and answer).
    pub request_timeout_ms: u64,
    /// How long start-up waits for an unreachable registry to answer
    /// before it stops (refused credentials or certificates stop at once).
    pub startup_timeout_ms: u64,
}

impl Default for RegistryClientConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8081".to_owned(),
            username: None,
            password: None,
            ca_file: None,
            certificate_file: None,
            key_file: None,
            request_timeout_ms: 5_000,
            startup_timeout_ms: 60_000,
        }
    }
}

impl RegistryClientConfig {
    /// What serde cannot check: a usable URL, pairs set together, files
    /// that exist.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        let url = &self.url;
        let Some((scheme, rest)) = url.split_once("://") else {
            return invalid(format!(
                "registry.url {url:?} is not a url (expected http://host:port or https://host:port)"
            ));
        };
        let https = match scheme {
            "http" => false,
            "https" => true,
            _ => {
                return invalid(format!(
                    "registry.url {url:?} must start with http:// or https://"
                ))
            }
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() || authority.contains(char::is_whitespace) {
            return invalid(format!("registry.url {url:?} names no host"));
        }
        if authority.contains('@') {
            return invalid(
                "registry.url must not hold credentials: set registry.username and registry.password (FOLDLINE__REGISTRY__PASSWORD)"
                    .to_owned(),
            );
        }
        if self.username.is_some() != self.password.is_some() {
            return invalid(
                "registry.username and registry.password go together: set both or neither"
                    .to_owned(),
            );
        }
        if self.certificate_file.is_some() != self.key_file.is_some() {
            return invalid(
                "registry.certificate_file and registry.key_file go together: set both or neither"
                    .to_owned(),
            );
        }
        for (key, file) in [
            ("ca_file", &self.ca_file),
            ("certificate_file", &self.certificate_file),
            ("key_file", &self.key_file),
        ] {
            let Some(file) = file else { continue };
            if !https {
                return invalid(format!(
                    "registry.{key} needs an https:// registry.url (it is {url:?})"
                ));
            }
            if !file.is_file() {
                return invalid(format!(
                    "registry.{key} {} does not exist or is not a file",
                    file.display()
                ));
            }
        }
        if self.request_timeout_ms == 0 {
            return invalid("registry.request_timeout_ms must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// `[registry_server]`: the registry role (`foldline run registry`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryServerConfig {
    pub listen: SocketAddr,
    /// HTTP basic auth: user name → password. With any user (here or
    /// `username`), every request must authenticate.
    pub users: BTreeMap<String, Secret>,
    /// One more user, convenient from the environment
    /// (`FOLDLINE__REGISTRY_SERVER__PASSWORD`); both or neither.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// TLS: the server's certificate chain and its unencrypted PKCS#8
    /// private key (PEM files); both or neither.
    pub certificate_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl Default for RegistryServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            users: BTreeMap::new(),
            username: None,
            password: None,
            certificate_file: None,
            key_file: None,
        }
    }
}

impl RegistryServerConfig {
    /// Every basic-auth user, `users` and the single pair together.
    pub fn credentials(&self) -> BTreeMap<String, Secret> {
        let mut users = self.users.clone();
        if let (Some(username), Some(password)) = (&self.username, &self.password) {
            users.insert(username.clone(), password.clone());
        }
        users
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if self.username.is_some() != self.password.is_some() {
            return invalid(
                "registry_server.username and registry_server.password go together: set both or neither"
                    .to_owned(),
            );
        }
        for (user, password) in self.credentials() {
            if user.is_empty() || user.contains(':') {
                return invalid(format!(
                    "registry_server user {user:?} must be non-empty and hold no ':'"
                ));
            }
            if password.expose().is_empty() {
                return invalid(format!(
                    "registry_server user {user:?} has an empty password"
                ));
            }
        }
        if self.certificate_file.is_some() != self.key_file.is_some() {
            return invalid(
                "registry_server.certificate_file and registry_server.key_file go together: set both or neither"
                    .to_owned(),
            );
        }
        for (key, file) in [
            ("certificate_file", &self.certificate_file),
            ("key_file", &self.key_file),
        ] {
            if let Some(file) = file.as_ref().filter(|file| !file.is_file()) {
                return invalid(format!(
                    "registry_server.{key} {} does not exist or is not a file",
                    file.display()
                ));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Which store: `embedded`, `memory` or `scylla`.
    pub kind: StoreKind,
    /// Directory of the embedded store (`kind = "embedded"`).
    pub path: PathBuf,
    /// The CQL store (`kind = "scylla"`): ScyllaDB, or Apache Cassandra.
    pub scylla: ScyllaConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Embedded,
            path: PathBuf::from(".foldline/store"),
            scylla: ScyllaConfig::default(),
        }
    }
}

/// `[store.scylla]`: where the CQL store is and how to talk to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScyllaConfig {
    /// `host:port` of one or more nodes; the driver discovers the rest.
    pub contact_points: Vec<String>,
    pub keyspace: String,
    /// Consistency of every read and write (LWTs use `serial_consistency`
    /// for their Paxos round and this for their commit).
    pub consistency: CqlConsistency,
    pub serial_consistency: CqlSerialConsistency,
    /// Both or neither (PasswordAuthenticator).
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Prefer this datacenter's nodes (token-aware within it); unset: any.
    pub local_datacenter: Option<String>,
    /// Replicas per datacenter of the keyspace `foldline migrate` creates.
    pub replication_factor: u32,
    /// Client-side timeout of one request.
    pub request_timeout_ms: u64,
    /// Rows per page of a scan (scans are always paged).
    pub page_size: u32,
    /// Apply pending migrations at start-up, under the migration lock;
    /// otherwise start-up only checks that none is pending.
    pub migrate_on_start: bool,
}

impl Default for ScyllaConfig {
    fn default() -> Self {
        Self {
            contact_points: vec!["127.0.0.1:9042".to_owned()],
            keyspace: "foldline".to_owned(),
            consistency: CqlConsistency::LocalQuorum,
            serial_consistency: CqlSerialConsistency::LocalSerial,
            username: None,
            password: None,
            local_datacenter: None,
            replication_factor: 3,
            request_timeout_ms: 5_000,
            page_size: 1_000,
            migrate_on_start: false,
        }
    }
}

/// A keyspace or table name CQL takes unquoted, as Foldline writes them:
/// 1 to 48 lowercase letters, digits or underscores, starting with a letter.
pub fn is_cql_identifier(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|first| first.is_ascii_lowercase())
        && name.len() <= 48
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CqlConsistency {
    One,
    Two,
    Three,
    Quorum,
    All,
    LocalOne,
    LocalQuorum,
    EachQuorum,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CqlSerialConsistency {
    Serial,
    LocalSerial,
}

impl ScyllaConfig {
    /// What serde cannot check: the values make a usable connection.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if self.contact_points.is_empty() {
            return invalid("store.scylla.contact_points must name at least one node".to_owned());
        }
        for point in &self.contact_points {
            let port = point
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(port))) if !host.is_empty() && port != 0) {
                return invalid(format!(
                    "store.scylla.contact_points: {point:?} is not host:port"
                ));
            }
        }
        let keyspace = &self.keyspace;
        if !is_cql_identifier(keyspace) {
            return invalid(format!(
                "store.scylla.keyspace {keyspace:?} must be 1 to 48 lowercase letters, digits or underscores, starting with a letter"
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            return invalid(
                "store.scylla.username and store.scylla.password go together: set both or neither"
                    .to_owned(),
            );
        }
        if self.replication_factor == 0 {
            return invalid("store.scylla.replication_factor must be at least 1".to_owned());
        }
        if self.request_timeout_ms == 0 {
            return invalid("store.scylla.request_timeout_ms must be at least 1".to_owned());
        }
        if self.page_size == 0 || self.page_size > i32::MAX as u32 {
            return invalid("store.scylla.page_size must be between 1 and 2147483647".to_owned());
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// redb on local disk.
    Embedded,
    /// Maps in memory (`store::memory`): live exactly as long as the process
    /// (and so as the embedded broker's log).
    Memory,
    /// ScyllaDB (or Apache Cassandra) over CQL: `[store.scylla]`.
    Scylla,
}

/// `[cache]`: cache-aside for hot reads (`crate::cache`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub kind: CacheKind,
    /// `redis://[user:password@]host:port[/db]`; may hold a password.
    pub url: Secret,
    /// Prepended to every key (environments sharing one Redis).
    pub key_prefix: String,
    /// Tables whose rows are cached.
    pub tables: Vec<String>,
    /// An entry's life: bounds how long one the projector could not
    /// invalidate can outlive its row.
    pub ttl_seconds: u64,
    /// Longest wait for Redis before a read goes to the store.
    pub timeout_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            kind: CacheKind::None,
            url: Secret("redis://127.0.0.1:6379".to_owned()),
            key_prefix: "foldline:".to_owned(),
            tables: vec!["order_by_id".to_owned()],
            ttl_seconds: 300,
            timeout_ms: 50,
        }
    }
}

impl CacheConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: &str| Err(ConfigError::Invalid(message.to_owned()));
        self.validate_url()?;
        if self.ttl_seconds == 0 {
            return invalid("cache.ttl_seconds must be at least 1");
        }
        if self.timeout_ms == 0 {
            return invalid("cache.timeout_ms must be at least 1");
        }
        if self.tables.is_empty() {
            return invalid("cache.tables must name at least one table");
        }
        Ok(())
    }
}

impl CacheConfig {
    /// `cache.url` and `cache.key_prefix` also name the Redis the gateway's
    /// shared state uses (`gateway.idempotency`, `gateway.rate_limit`).
    pub fn validate_url(&self) -> Result<(), ConfigError> {
        if !(self.url.expose().starts_with("redis://")
            || self.url.expose().starts_with("rediss://"))
        {
            return Err(ConfigError::Invalid(
                "cache.url must start with redis:// or rediss://".to_owned(),
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheKind {
    None,
    Redis,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub request_timeout_ms: u64,
    pub body_limit_bytes: usize,
    /// Upper bound of `Prefer: wait=N`.
    pub max_wait_seconds: u64,
    /// Requests in flight before the gateway sheds load with 503.
    pub concurrency_limit: usize,
    /// Who the gateway names as the issuer of commands it accepts.
    pub client_id: String,
    /// Commands of one domain this gateway has produced and not yet seen
    /// settled before it refuses more with 503 (admission, see
    /// `ARCHITECTURE.md`). Bounds this gateway's share of the backlog
    /// between `D.commands` and `D.events`; at least 1.
    pub max_unsettled_commands: usize,
    /// After how long an admitted command whose outcome never came (parked,
    /// or its outcome lost) stops counting against the bound; at least 1.
    pub unsettled_expiry_seconds: u64,
    /// `[gateway.idempotency]`: where `Idempotency-Key` records live.
    pub idempotency: IdempotencyConfig,
    /// `[gateway.rate_limit]`: requests per client and window.
    pub rate_limit: RateLimitConfig,
}

/// `[gateway.idempotency]` (ARCHITECTURE.md, *Shared gateway state*).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    pub backend: IdempotencyBackend,
    /// How long a record lives in Redis: a retry after that is a new
    /// request. (Store records do not expire.)
    pub ttl_seconds: u64,
    /// Longest wait for Redis before a keyed command is refused with 503.
    pub timeout_ms: u64,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            backend: IdempotencyBackend::Store,
            ttl_seconds: 24 * 60 * 60,
            timeout_ms: 500,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdempotencyBackend {
    /// The projection store: shared by replicas only if the store is (CQL).
    Store,
    /// The Redis at `cache.url`, shared by every replica whatever its
    /// store; while Redis is unreachable keyed commands are refused (503).
    Redis,
}

/// `[gateway.rate_limit]` (ARCHITECTURE.md, *Shared gateway state*).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub kind: RateLimitKind,
    /// Requests one client may make per window; at least 1.
    pub requests: u32,
    pub window_seconds: u64,
    /// The header naming the client, set (overwritten) by the trusted proxy
    /// in front, e.g. `x-forwarded-for` or an authenticated client id.
    /// Unset, or absent on a request: the client is the peer address.
    pub client_header: Option<String>,
    /// Longest wait for Redis before this replica's own limiter decides.
    pub timeout_ms: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            kind: RateLimitKind::None,
            requests: 600,
            window_seconds: 60,
            client_header: None,
            timeout_ms: 50,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitKind {
    None,
    /// Per replica, in process (GCRA, `governor`).
    Local,
    /// One count per client and window in the Redis at `cache.url`, shared
    /// by every replica; the local limiter while Redis is unreachable.
    Redis,
}

impl IdempotencyConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.ttl_seconds == 0 {
            return Err(ConfigError::Invalid(
                "gateway.idempotency.ttl_seconds must be at least 1".to_owned(),
            ));
        }
        if self.timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "gateway.idempotency.timeout_ms must be at least 1".to_owned(),
            ));
        }
        Ok(())
    }
}

impl RateLimitConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: &str| Err(ConfigError::Invalid(message.to_owned()));
        if self.requests == 0 {
            return invalid("gateway.rate_limit.requests must be at least 1");
        }
        if self.window_seconds == 0 || self.window_seconds > 24 * 60 * 60 {
            return invalid("gateway.rate_limit.window_seconds must be between 1 and 86400");
        }
        if self.timeout_ms == 0 {
            return invalid("gateway.rate_limit.timeout_ms must be at least 1");
        }
        if let Some(header) = &self.client_header {
            let valid = !header.is_empty()
                && header
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
            if !valid {
                return invalid(
                    "gateway.rate_limit.client_header must be a header name (letters, digits, '-')",
                );
            }
        }
        Ok(())
    }
}

impl GatewayConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_unsettled_commands == 0 {
            return Err(ConfigError::Invalid(
                "gateway.max_unsettled_commands must be at least 1".to_owned(),
            ));
        }
        if self.unsettled_expiry_seconds == 0 {
            return Err(ConfigError::Invalid(
                "gateway.unsettled_expiry_seconds must be at least 1".to_owned(),
            ));
        }
        self.idempotency.validate()?;
        self.rate_limit.validate()
    }

    /// Whether the gateway keeps state in the Redis at `cache.url`.
    pub fn uses_redis(&self) -> bool {
        self.idempotency.backend == IdempotencyBackend::Redis
            || self.rate_limit.kind == RateLimitKind::Redis
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout_ms: 30_000,
            body_limit_bytes: 64 * 1024,
            max_wait_seconds: 20,
            concurrency_limit: 1024,
            client_id: "anonymous".to_owned(),
            max_unsettled_commands: 512,
            unsettled_expiry_seconds: 30,
            idempotency: IdempotencyConfig::default(),
            rate_limit: RateLimitConfig::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorConfig {
    /// Commands decided between two aggregate snapshots of a partition.
    pub snapshot_every_commands: u64,
    /// Also wait, between two snapshots, for as many commands as the
    /// partition's state holds entries (aggregates and remembered
    /// commands), so the cost of snapshots per command stays constant as
    /// the state grows. Off, a snapshot is written every
    /// `snapshot_every_commands` whatever the state's size (the fault
    /// suite does, to kill processors mid-snapshot often).
    pub snapshot_scales_with_state: bool,
    /// Most commands decided in one produce round.
    pub max_batch: usize,
    /// This replica's stable name (e.g. its StatefulSet pod name), which
    /// names its `transactional.id` in the transactional mode: a restarted
    /// replica with the same name fences its predecessor and aborts its open
    /// transaction at once. Unset, every start picks a fresh one, and a
    /// crashed replica's open transaction holds its partitions' readers
    /// back until the broker times it out.
    pub instance_id: Option<String>,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            snapshot_every_commands: 1_000,
            snapshot_scales_with_state: true,
            max_batch: 256,
            instance_id: None,
        }
    }
}

/// The notify domain's delivery: each channel's ordered provider chain,
/// the circuit breaker every provider sits behind, and the retry schedule.
/// Chains are `name=target` pairs, comma separated, tried in order:
/// `target` is an `http://` or `https://` provider API base url, or `sink`
/// (the local sink, read back through the API). Parsed and checked by the
/// notify crate at start-up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    pub email_providers: String,
    pub sms_providers: String,
    pub webhook_providers: String,
    /// How long one provider call may take before it counts as failed.
    pub provider_timeout_ms: u64,
    /// Unavailable calls in a row that open a provider's breaker.
    pub breaker_consecutive_failures: u32,
    /// Failure rate (0 to 1] over `breaker_window_secs` that opens it too.
    pub breaker_error_rate: f64,
    /// Calls the window must hold before the rate is judged.
    pub breaker_min_calls: u32,
    /// The window the failure rate is taken over, whole seconds.
    pub breaker_window_secs: u64,
    /// How long an open breaker refuses calls before a trial call.
    pub breaker_open_wait_ms: u64,
    /// A provider call that succeeds but takes longer than this counts as
    /// a failure for its breaker (the message is delivered all the same),
    /// so a degraded provider loses its traffic to the next of the chain.
    /// At least 1; at or above `provider_timeout_ms` it never applies.
    pub breaker_slow_call_ms: u64,
    /// Deliveries of one channel in flight at once (provider calls of the
    /// relay and the retry consumer together), 1 to 1024.
    pub in_flight_per_channel: usize,
    /// Attempts per notification (each tries the whole chain) before it
    /// goes to the dead-letter topic.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles per attempt up to the max.
    pub retry_backoff_ms: u64,
    pub retry_backoff_max_ms: u64,
    /// Whether the order notices' relays queue notifications (confirmed,
    /// rejected, refunded: `services/notify/src/hooks/`).
    pub order_notices: bool,
    /// How long after its event a notice waits for notify's read models to
    /// fold the order and its customer before it is recorded as skipped
    /// (`order_unknown`, `recipient_unknown`).
    pub order_notice_grace_ms: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            email_providers: "email-sink=sink".to_owned(),
            sms_providers: "sms-sink=sink".to_owned(),
            webhook_providers: "webhook-sink=sink".to_owned(),
            provider_timeout_ms: 2_000,
            breaker_consecutive_failures: 5,
            breaker_error_rate: 0.5,
            breaker_min_calls: 10,
            breaker_window_secs: 10,
            breaker_open_wait_ms: 5_000,
            // The seed's SLA: P99 of 150 ms.
            breaker_slow_call_ms: 150,
            in_flight_per_channel: 16,
            max_attempts: 5,
            retry_backoff_ms: 500,
            retry_backoff_max_ms: 30_000,
            order_notices: true,
            order_notice_grace_ms: 10_000,
        }
    }
}

impl NotifyConfig {
    /// The policy of every provider's breaker (`breaker_*` keys).
    pub fn breaker_policy(&self) -> crate::breaker::BreakerPolicy {
        crate::breaker::BreakerPolicy {
            consecutive_failures: self.breaker_consecutive_failures,
            failure_rate: Some(crate::breaker::FailureRate {
                rate: self.breaker_error_rate,
                min_calls: self.breaker_min_calls,
                window: std::time::Duration::from_secs(self.breaker_window_secs),
            }),
            open_wait: std::time::Duration::from_millis(self.breaker_open_wait_ms),
            slow_call: Some(std::time::Duration::from_millis(self.breaker_slow_call_ms)),
        }
    }

    /// The most `in_flight_per_channel` may be.
    pub const MAX_IN_FLIGHT_PER_CHANNEL: usize = 1024;

    /// The first delivery key out of its range, if any (beyond what the
    /// breaker policy checks): the key and the range it must be in.
    pub fn out_of_range(&self) -> Option<(&'static str, String)> {
        if self.breaker_slow_call_ms == 0 {
            return Some(("breaker_slow_call_ms", "at least 1".to_owned()));
        }
        if !(1..=Self::MAX_IN_FLIGHT_PER_CHANNEL).contains(&self.in_flight_per_channel) {
            return Some((
                "in_flight_per_channel",
                format!("from 1 to {}", Self::MAX_IN_FLIGHT_PER_CHANNEL),
            ));
        }
        None
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some((key, range)) = self.out_of_range() {
            return Err(ConfigError::Invalid(format!(
                "notify.{key} must be {range}"
            )));
        }
        self.breaker_policy()
            .validate()
            .map_err(|error| ConfigError::Invalid(format!("notify.breaker_*: {error}")))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `tracing` env-filter directives.
    pub filter: String,
    pub format: LogFormat,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            filter: "info,rdkafka=warn".to_owned(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Loads defaults, then `file` (which must exist when given), then
    /// `FOLDLINE__SECTION__KEY` variables from `environment`.
    pub fn load(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::MissingFile(file.to_owned()));
            }
            figment = figment.merge(Toml::file(file));
        }
        let mut log_filter = None;
        for (name, value) in environment {
            if name == "RUST_LOG" {
                log_filter = Some(value);
                continue;
            }
            let Some(path) = name.strip_prefix("FOLDLINE__") else {
                continue;
            };
            let path = path.to_ascii_lowercase();
            if let Some((map, property)) = librdkafka_property(&path) {
                // Variable names cannot hold dots, librdkafka keys have no
                // underscores: `..__PROPERTIES__SECURITY_PROTOCOL` is
                // `security.protocol`, and its value is always a string.
                let nested = BTreeMap::from([(
                    "kafka",
                    BTreeMap::from([(map, BTreeMap::from([(property, value)]))]),
                )]);
                figment = figment.merge(Serialized::globals(nested));
                continue;
            }
            let key = path.replace("__", ".");
            // Every security key is a string or a path, and a secret is
            // always a string: a password or a key of digits stays a
            // string (and never reaches a type error).
            let parsed: figment::value::Value = if key.starts_with("kafka.security.")
                || key == "personal_data.key_encryption_key"
                || is_registry_string(&key)
                || (key.starts_with("notify.") && key.ends_with("_providers"))
            {
                figment::value::Value::from(value)
            } else {
                value
                    .parse()
                    .unwrap_or_else(|_| figment::value::Value::from(value.clone()))
            };
            figment = figment.merge(Serialized::global(&key, parsed));
        }
        // `RUST_LOG`, the operator's habitual lever, overrides every other
        // source of the log filter.
        if let Some(filter) = log_filter {
            figment = figment.merge(Serialized::global("telemetry.filter", filter));
        }
        let config = figment
            .extract::<Config>()
            .map_err(|error| ConfigError::Invalid(error.to_string()))?;
        config.kafka.security.validate(&config.kafka)?;
        config.gateway.validate()?;
        config.registry.validate()?;
        config.registry_server.validate()?;
        config.saga.validate()?;
        config.payments.validate()?;
        config.notify.validate()?;
        if config.store.kind == StoreKind::Scylla {
            config.store.scylla.validate()?;
        }
        if config.cache.kind == CacheKind::Redis {
            config.cache.validate()?;
        }
        if config.gateway.uses_redis() {
            config.cache.validate_url()?;
        }
        Ok(config)
    }

    /// A topic or group name under this environment's prefix.
    pub fn prefixed(&self, name: &str) -> String {
        format!("{}{name}", self.kafka.topic_prefix)
    }
}

/// Registry keys that are always strings (a password of digits stays one).
fn is_registry_string(key: &str) -> bool {
    matches!(
        key,
        "registry.url"
            | "registry.username"
            | "registry.password"
            | "registry_server.username"
            | "registry_server.password"
    ) || key.starts_with("registry_server.users.")
}

/// `kafka__properties__fetch_wait_max_ms` → `("properties", "fetch.wait.max.ms")`.
fn librdkafka_property(path: &str) -> Option<(&'static str, String)> {
    ["properties", "secret_properties"]
        .into_iter()
        .find_map(|map| {
            path.strip_prefix("kafka__")?
                .strip_prefix(map)?
                .strip_prefix("__")
                .map(|property| (map, property.replace('_', ".")))
        })
        .filter(|(_, property)| !property.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_without_a_file() {
        let config = Config::load(None, Vec::new()).unwrap();
        assert_eq!(config.gateway.listen.port(), 8080);
        assert_eq!(config.store.kind, StoreKind::Embedded);
    }

    #[test]
    fn an_admission_bound_of_zero_is_refused_with_its_key() {
        for (key, name) in [
            (
                "FOLDLINE__GATEWAY__MAX_UNSETTLED_COMMANDS",
                "gateway.max_unsettled_commands",
            ),
            (
                "FOLDLINE__GATEWAY__UNSETTLED_EXPIRY_SECONDS",
                "gateway.unsettled_expiry_seconds",
            ),
        ] {
            let error = Config::load(None, vec![(key.to_owned(), "0".to_owned())]).unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains(&format!("{name} must be at least 1")),
                "{error}"
            );
        }
        let config = Config::load(
            None,
            vec![(
                "FOLDLINE__GATEWAY__MAX_UNSETTLED_COMMANDS".to_owned(),
                "64".to_owned(),
            )],
        )
        .unwrap();
        assert_eq!(config.gateway.max_unsettled_commands, 64);
    }

    #[test]
    fn rust_log_sets_the_log_filter_over_every_other_source() {
        let environment = vec![
            ("FOLDLINE__TELEMETRY__FILTER".to_owned(), "warn".to_owned()),
            ("RUST_LOG".to_owned(), "debug,rdkafka=info".to_owned()),
        ];
        let config = Config::load(None, environment).unwrap();
        assert_eq!(config.telemetry.filter, "debug,rdkafka=info");
        let config = Config::load(
            None,
            vec![("FOLDLINE__TELEMETRY__FILTER".to_owned(), "warn".to_owned())],
        )
        .unwrap();
        assert_eq!(config.telemetry.filter, "warn");
    }

    #[test]
    fn the_metrics_listener_is_off_by_default_and_garbage_is_refused_with_its_key() {
        let config = Config::load(None, Vec::new()).unwrap();
        assert_eq!(config.metrics.listen, None);
        let config = Config::load(
            None,
            vec![(
                "FOLDLINE__METRICS__LISTEN".to_owned(),
                "127.0.0.1:9464".to_owned(),
            )],
        )
        .unwrap();
        assert_eq!(
            config.metrics.listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
        let error = Config::load(
            None,
            vec![(
                "FOLDLINE__METRICS__LISTEN".to_owned(),
                "everywhere".to_owned(),
            )],
        )
        .unwrap_err();
        assert!(error.to_string().contains("metrics.listen"), "{error}");
    }

    #[test]
    fn a_missing_file_is_an_error_not_a_silent_default() {
        let error = Config::load(Some(Path::new("/nonexistent/foldline.toml")), Vec::new());
        assert!(matches!(error, Err(ConfigError::MissingFile(_))));
    }

    #[test]
    fn file_then_environment_layers_apply_in_order() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("foldline.toml");
        std::fs::write(
            &file,
            "[kafka]\nbootstrap_servers = \"file:9092\"\ntopic_prefix = \"t-\"\n[gateway]\nmax_wait_seconds = 3\n",
        )
        .unwrap();
        let config = Config::load(Some(&file), Vec::new()).unwrap();
        assert_eq!(config.kafka.bootstrap_servers, "file:9092");
        assert_eq!(config.gateway.max_wait_seconds, 3);
        assert_eq!(config.prefixed("orders.events"), "t-orders.events");

        let environment = vec![
            (
                "FOLDLINE__GATEWAY__MAX_WAIT_SECONDS".to_owned(),
                "7".to_owned(),
            ),
            (
                "FOLDLINE__KAFKA__BOOTSTRAP_SERVERS".to_owned(),
                "env:1".to_owned(),
            ),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let config = Config::load(Some(&file), environment).unwrap();
        assert_eq!(config.gateway.max_wait_seconds, 7);
        assert_eq!(config.kafka.bootstrap_servers, "env:1");
        assert_eq!(config.kafka.topic_prefix, "t-");

        let garbage = vec![(
            "FOLDLINE__GATEWAY__MAX_WAIT_SECONDS".to_owned(),
            "soon".to_owned(),
        )];
        assert!(Config::load(None, garbage).is_err());
    }

    #[test]
    fn garbage_values_and_unknown_keys_are_rejected() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("foldline.toml");
        std::fs::write(&file, "[gateway]\nlisten = \"not an address\"\n").unwrap();
        let error = Config::load(Some(&file), Vec::new()).unwrap_err();
        assert!(error.to_string().contains("listen"), "{error}");

        std::fs::write(&file, "[gatewy]\nlisten = \"127.0.0.1:1\"\n").unwrap();
        assert!(Config::load(Some(&file), Vec::new()).is_err());

        std::fs::write(&file, "[store]\nkind = \"cassandra-ish\"\n").unwrap();
        assert!(Config::load(Some(&file), Vec::new()).is_err());
    }

    #[test]
    fn librdkafka_properties_come_from_the_environment_as_strings() {
        let environment = vec![
            (
                "FOLDLINE__KAFKA__PROPERTIES__FETCH_WAIT_MAX_MS".to_owned(),
                "10".to_owned(),
            ),
            (
                "FOLDLINE__KAFKA__PROPERTIES__SECURITY_PROTOCOL".to_owned(),
                "SASL_SSL".to_owned(),
            ),
            (
                "FOLDLINE__KAFKA__SECRET_PROPERTIES__SASL_PASSWORD".to_owned(),
                "hunter2".to_owned(),
            ),
        ];
        let config = Config::load(None, environment).unwrap();
        assert_eq!(
            config
                .kafka
                .properties
                .get("fetch.wait.max.ms")
                .map(String::as_str),
            Some("10")
        );
        assert_eq!(
            config
                .kafka
                .properties
                .get("security.protocol")
                .map(String::as_str),
            Some("SASL_SSL")
        );
        assert_eq!(
            config
                .kafka
                .secret_properties
                .get("sasl.password")
                .map(Secret::expose),
            Some("hunter2")
        );
        let empty = vec![("FOLDLINE__KAFKA__PROPERTIES__".to_owned(), "x".to_owned())];
        assert!(Config::load(None, empty).is_err());
    }

    #[test]
    fn saga_settings_parse_and_bad_ones_are_refused() {
        let defaults = Config::load(None, Vec::new()).unwrap().saga;
        assert!(defaults.enabled);
        assert_eq!(defaults.payment_deadline_ms, 60_000);
        let environment = vec![
            ("FOLDLINE__SAGA__ENABLED".to_owned(), "false".to_owned()),
            (
                "FOLDLINE__SAGA__PAYMENT_DEADLINE_MS".to_owned(),
                "1500".to_owned(),
            ),
        ];
        let saga = Config::load(None, environment).unwrap().saga;
        assert!(!saga.enabled);
        assert_eq!(saga.payment_deadline_ms, 1_500);
        for (key, value) in [
            ("FOLDLINE__SAGA__PAYMENT_DEADLINE_MS", "0"),
            ("FOLDLINE__SAGA__PAYMENT_DEADLINE_MS", "soon"),
            ("FOLDLINE__SAGA__ENABLED", "maybe"),
            ("FOLDLINE__SAGA__DEFAULT_CARD_TOKEN", " "),
        ] {
            let error = Config::load(None, vec![(key.to_owned(), value.to_owned())]).unwrap_err();
            assert!(
                error.to_string().contains("saga") || error.to_string().contains(value),
                "{key}={value}: {error}"
            );
        }
    }

    #[test]
    fn notify_breaker_settings_parse_and_garbage_is_refused_with_its_key() {
        let environment = vec![
            (
                "FOLDLINE__NOTIFY__BREAKER_CONSECUTIVE_FAILURES".to_owned(),
                "2".to_owned(),
            ),
            (
                "FOLDLINE__NOTIFY__BREAKER_ERROR_RATE".to_owned(),
                "0.25".to_owned(),
            ),
            (
                "FOLDLINE__NOTIFY__BREAKER_OPEN_WAIT_MS".to_owned(),
                "750".to_owned(),
            ),
        ];
        let notify = Config::load(None, environment).unwrap().notify;
        let policy = notify.breaker_policy();
        assert_eq!(policy.consecutive_failures, 2);
        assert_eq!(policy.failure_rate.map(|rate| rate.rate), Some(0.25));
        assert_eq!(policy.open_wait, std::time::Duration::from_millis(750));
        for (key, value) in [
            ("FOLDLINE__NOTIFY__BREAKER_CONSECUTIVE_FAILURES", "0"),
            ("FOLDLINE__NOTIFY__BREAKER_CONSECUTIVE_FAILURES", "-1"),
            ("FOLDLINE__NOTIFY__BREAKER_CONSECUTIVE_FAILURES", "many"),
            ("FOLDLINE__NOTIFY__BREAKER_ERROR_RATE", "0"),
            ("FOLDLINE__NOTIFY__BREAKER_ERROR_RATE", "1.5"),
            ("FOLDLINE__NOTIFY__BREAKER_ERROR_RATE", "half"),
            ("FOLDLINE__NOTIFY__BREAKER_MIN_CALLS", "0"),
            ("FOLDLINE__NOTIFY__BREAKER_WINDOW_SECS", "0"),
            ("FOLDLINE__NOTIFY__BREAKER_OPEN_WAIT_MS", "0"),
            ("FOLDLINE__NOTIFY__BREAKER_OPEN_WAIT_MS", "soon"),
            ("FOLDLINE__NOTIFY__BREAKER_HALF_OPEN_LEN", "3"),
        ] {
            let error = Config::load(None, vec![(key.to_owned(), value.to_owned())]).unwrap_err();
            let text = error.to_string();
            assert!(
                text.contains("breaker") || text.contains(value),
                "{key}={value}: {error}"
            );
        }
    }

    #[test]
    fn notify_slow_call_and_in_flight_settings_parse_and_garbage_is_refused_with_its_key() {
        let defaults = Config::load(None, Vec::new()).unwrap().notify;
        assert_eq!(
            defaults.breaker_policy().slow_call,
            Some(std::time::Duration::from_millis(150))
        );
        assert_eq!(defaults.in_flight_per_channel, 16);
        let environment = vec![
            (
                "FOLDLINE__NOTIFY__BREAKER_SLOW_CALL_MS".to_owned(),
                "300".to_owned(),
            ),
            (
                "FOLDLINE__NOTIFY__IN_FLIGHT_PER_CHANNEL".to_owned(),
                "4".to_owned(),
            ),
        ];
        let notify = Config::load(None, environment).unwrap().notify;
        assert_eq!(
            notify.breaker_policy().slow_call,
            Some(std::time::Duration::from_millis(300))
        );
        assert_eq!(notify.in_flight_per_channel, 4);
        for (key, value) in [
            ("FOLDLINE__NOTIFY__BREAKER_SLOW_CALL_MS", "0"),
            ("FOLDLINE__NOTIFY__BREAKER_SLOW_CALL_MS", "-5"),
            ("FOLDLINE__NOTIFY__BREAKER_SLOW_CALL_MS", "slow"),
            ("FOLDLINE__NOTIFY__IN_FLIGHT_PER_CHANNEL", "0"),
            ("FOLDLINE__NOTIFY__IN_FLIGHT_PER_CHANNEL", "1025"),
            ("FOLDLINE__NOTIFY__IN_FLIGHT_PER_CHANNEL", "many"),
        ] {
            let error = Config::load(None, vec![(key.to_owned(), value.to_owned())]).unwrap_err();
            let field = key
                .trim_start_matches("FOLDLINE__NOTIFY__")
                .to_ascii_lowercase();
            assert!(error.to_string().contains(&field), "{key}={value}: {error}");
        }
    }

    #[test]
    fn transactions_parse_from_the_environment_and_garbage_is_refused() {
        assert_eq!(
            Config::load(None, Vec::new()).unwrap().kafka.transactions,
            Transactions::Auto
        );
        for (value, expected) in [
            ("on", Transactions::On),
            ("off", Transactions::Off),
            ("auto", Transactions::Auto),
        ] {
            let environment = vec![("FOLDLINE__KAFKA__TRANSACTIONS".to_owned(), value.to_owned())];
            let config = Config::load(None, environment).unwrap();
            assert_eq!(config.kafka.transactions, expected, "{value}");
        }
        let garbage = vec![(
            "FOLDLINE__KAFKA__TRANSACTIONS".to_owned(),
            "sometimes".to_owned(),
        )];
        let error = Config::load(None, garbage).unwrap_err().to_string();
        assert!(
            error.contains("transactions") && error.contains("sometimes"),
            "{error}"
        );
    }

    #[test]
    fn the_key_encryption_key_is_a_string_secret_from_the_environment() {
        let digits = "1".repeat(64);
        let config = Config::load(
            None,
            vec![(
                "FOLDLINE__PERSONAL_DATA__KEY_ENCRYPTION_KEY".to_owned(),
                digits.clone(),
            )],
        )
        .unwrap();
        let key = config.personal_data.key_encryption_key.as_ref().unwrap();
        assert_eq!(key.expose(), digits);
        assert!(!format!("{config:?}").contains(&digits));
        assert_eq!(
            Config::load(None, Vec::new())
                .unwrap()
                .personal_data
                .key_encryption_key,
            None
        );
    }

    #[test]
    fn the_scylla_store_is_configured_by_file_and_environment_and_validated() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("foldline.toml");
        std::fs::write(
            &file,
            "[store]\nkind = \"scylla\"\n[store.scylla]\ncontact_points = [\"10.0.0.1:9042\", \"node-2:19042\"]\nkeyspace = \"shop\"\nusername = \"foldline\"\npassword = \"hunter2\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&file), Vec::new()).unwrap();
        assert_eq!(config.store.kind, StoreKind::Scylla);
        assert_eq!(config.store.scylla.contact_points.len(), 2);
        assert_eq!(config.store.scylla.keyspace, "shop");
        assert_eq!(
            config.store.scylla.consistency,
            CqlConsistency::LocalQuorum,
            "LOCAL_QUORUM is the default"
        );
        assert!(!format!("{config:?}").contains("hunter2"));

        let environment = vec![
            (
                "FOLDLINE__STORE__SCYLLA__CONSISTENCY".to_owned(),
                "one".to_owned(),
            ),
            (
                "FOLDLINE__STORE__SCYLLA__MIGRATE_ON_START".to_owned(),
                "true".to_owned(),
            ),
            (
                "FOLDLINE__STORE__SCYLLA__CONTACT_POINTS".to_owned(),
                "[\"127.0.0.1:19042\"]".to_owned(),
            ),
        ];
        let config = Config::load(Some(&file), environment).unwrap();
        assert_eq!(config.store.scylla.consistency, CqlConsistency::One);
        assert!(config.store.scylla.migrate_on_start);
        assert_eq!(config.store.scylla.contact_points, vec!["127.0.0.1:19042"]);

        let refused = |toml: &str, expected: &str| {
            std::fs::write(&file, format!("[store]\nkind = \"scylla\"\n{toml}")).unwrap();
            let error = Config::load(Some(&file), Vec::new())
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{toml}: {error}");
        };
        refused("[store.scylla]\ncontact_points = []\n", "at least one node");
        refused(
            "[store.scylla]\ncontact_points = [\"no-port\"]\n",
            "is not host:port",
        );
        refused(
            "[store.scylla]\ncontact_points = [\"h:0\"]\n",
            "is not host:port",
        );
        refused("[store.scylla]\nkeyspace = \"Bad-Name\"\n", "keyspace");
        refused(
            "[store.scylla]\nusername = \"only-me\"\n",
            "set both or neither",
        );
        refused("[store.scylla]\nconsistency = \"most\"\n", "consistency");
        refused(
            "[store.scylla]\nreplication_factor = 0\n",
            "replication_factor",
        );
        refused("[store.scylla]\npage_size = 0\n", "page_size");
        refused("[store.scylla]\nhosts = [\"a:1\"]\n", "hosts");
    }

    #[test]
    fn the_cache_is_off_by_default_and_validated_when_on() {
        let config = Config::load(None, Vec::new()).unwrap();
        assert_eq!(config.cache.kind, CacheKind::None);
        let on = |extra: (&str, &str)| {
            Config::load(
                None,
                vec![
                    ("FOLDLINE__CACHE__KIND".to_owned(), "redis".to_owned()),
                    (extra.0.to_owned(), extra.1.to_owned()),
                ],
            )
        };
        let config = on(("FOLDLINE__CACHE__URL", "redis://:hunter2@cache:6379")).unwrap();
        assert_eq!(config.cache.kind, CacheKind::Redis);
        assert!(!format!("{config:?}").contains("hunter2"));
        let error = on(("FOLDLINE__CACHE__URL", "http://cache")).unwrap_err();
        assert!(error.to_string().contains("redis://"), "{error}");
        let error = on(("FOLDLINE__CACHE__TTL_SECONDS", "0")).unwrap_err();
        assert!(error.to_string().contains("ttl_seconds"), "{error}");
        let error = on(("FOLDLINE__CACHE__TIMEOUT_MS", "0")).unwrap_err();
        assert!(error.to_string().contains("timeout_ms"), "{error}");
    }

    #[test]
    fn shared_gateway_state_is_off_by_default_and_garbage_is_refused_with_its_key() {
        let config = Config::load(None, Vec::new()).unwrap();
        assert_eq!(
            config.gateway.idempotency.backend,
            IdempotencyBackend::Store
        );
        assert_eq!(config.gateway.rate_limit.kind, RateLimitKind::None);
        assert!(!config.gateway.uses_redis());
        let load = |pairs: &[(&str, &str)]| {
            Config::load(
                None,
                pairs
                    .iter()
                    .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                    .collect::<Vec<(String, String)>>(),
            )
        };
        let config = load(&[
            ("FOLDLINE__GATEWAY__IDEMPOTENCY__BACKEND", "redis"),
            ("FOLDLINE__GATEWAY__RATE_LIMIT__KIND", "redis"),
            ("FOLDLINE__GATEWAY__RATE_LIMIT__REQUESTS", "5"),
            (
                "FOLDLINE__GATEWAY__RATE_LIMIT__CLIENT_HEADER",
                "x-client-id",
            ),
        ])
        .unwrap();
        assert_eq!(
            config.gateway.idempotency.backend,
            IdempotencyBackend::Redis
        );
        assert_eq!(config.gateway.rate_limit.requests, 5);
        assert_eq!(
            config.gateway.rate_limit.client_header.as_deref(),
            Some("x-client-id")
        );
        assert!(config.gateway.uses_redis());
        for (pairs, expected) in [
            (
                vec![("FOLDLINE__GATEWAY__IDEMPOTENCY__BACKEND", "memcached")],
                "backend",
            ),
            (
                vec![("FOLDLINE__GATEWAY__IDEMPOTENCY__TTL_SECONDS", "0")],
                "gateway.idempotency.ttl_seconds",
            ),
            (
                vec![("FOLDLINE__GATEWAY__IDEMPOTENCY__TIMEOUT_MS", "soon")],
                "timeout_ms",
            ),
            (
                vec![("FOLDLINE__GATEWAY__RATE_LIMIT__KIND", "leaky")],
                "kind",
            ),
            (
                vec![("FOLDLINE__GATEWAY__RATE_LIMIT__REQUESTS", "0")],
                "gateway.rate_limit.requests",
            ),
            (
                vec![("FOLDLINE__GATEWAY__RATE_LIMIT__REQUESTS", "-3")],
                "requests",
            ),
            (
                vec![("FOLDLINE__GATEWAY__RATE_LIMIT__WINDOW_SECONDS", "0")],
                "gateway.rate_limit.window_seconds",
            ),
            (
                vec![("FOLDLINE__GATEWAY__RATE_LIMIT__WINDOW_SECONDS", "100000")],
                "gateway.rate_limit.window_seconds",
            ),
            (
                vec![("FOLDLINE__GATEWAY__RATE_LIMIT__CLIENT_HEADER", "x client")],
                "gateway.rate_limit.client_header",
            ),
            (vec![("FOLDLINE__GATEWAY__RATE_LIMIT__BURST", "3")], "burst"),
            (
                vec![
                    ("FOLDLINE__GATEWAY__RATE_LIMIT__KIND", "redis"),
                    ("FOLDLINE__CACHE__URL", "http://cache:6379"),
                ],
                "cache.url",
            ),
        ] {
            let error = load(&pairs).unwrap_err().to_string();
            assert!(error.contains(expected), "{pairs:?}: {error}");
        }
        // The cache's url is only checked when something uses Redis.
        assert!(load(&[("FOLDLINE__CACHE__URL", "http://cache:6379")]).is_ok());
    }

    #[test]
    fn the_registry_client_takes_credentials_tls_files_and_a_timeout() {
        let directory = tempfile::tempdir().unwrap();
        let ca = directory.path().join("ca.pem");
        std::fs::write(&ca, "not parsed here").unwrap();
        let file = directory.path().join("foldline.toml");
        std::fs::write(
            &file,
            format!(
                "[registry]\nurl = \"https://registry.internal:8081/apis/ccompat/v7\"\nusername = \"orders\"\nca_file = \"{}\"\nrequest_timeout_ms = 2500\n",
                ca.display()
            ),
        )
        .unwrap();
        // The password from the environment, as a string even when digits.
        let environment = vec![(
            "FOLDLINE__REGISTRY__PASSWORD".to_owned(),
            "0123456789".to_owned(),
        )];
        let config = Config::load(Some(&file), environment).unwrap();
        let registry = &config.registry;
        assert_eq!(registry.username.as_deref(), Some("orders"));
        assert_eq!(
            registry.password.as_ref().map(Secret::expose),
            Some("0123456789")
        );
        assert_eq!(registry.ca_file.as_deref(), Some(ca.as_path()));
        assert_eq!(registry.request_timeout_ms, 2500);
        assert!(!format!("{config:?}").contains("0123456789"));
    }

    #[test]
    fn garbage_registry_client_values_are_refused_naming_the_key() {
        let missing = "/nonexistent/registry-ca.pem";
        for (pairs, expected) in [
            (vec![("URL", "registry:8081")], "is not a url"),
            (vec![("URL", "ftp://registry:8081")], "http:// or https://"),
            (vec![("URL", "http://")], "names no host"),
            (
                vec![("URL", "http://user:pw@registry:8081")],
                "must not hold credentials",
            ),
            (vec![("USERNAME", "orders")], "set both or neither"),
            (vec![("PASSWORD", "hunter2")], "set both or neither"),
            (
                vec![("URL", "https://registry:8081"), ("CA_FILE", missing)],
                "registry.ca_file /nonexistent/registry-ca.pem does not exist",
            ),
            (
                vec![("URL", "http://registry:8081"), ("CA_FILE", missing)],
                "registry.ca_file needs an https:// registry.url",
            ),
            (
                vec![("URL", "https://registry:8081"), ("KEY_FILE", missing)],
                "registry.certificate_file and registry.key_file go together",
            ),
            (vec![("REQUEST_TIMEOUT_MS", "0")], "request_timeout_ms"),
            (vec![("REQUEST_TIMEOUT_MS", "soon")], "request_timeout_ms"),
        ] {
            let environment = pairs
                .iter()
                .map(|(key, value)| (format!("FOLDLINE__REGISTRY__{key}"), (*value).to_owned()))
                .collect::<Vec<_>>();
            let error = Config::load(None, environment).unwrap_err().to_string();
            assert!(error.contains(expected), "{pairs:?}: {error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn the_registry_server_takes_users_a_pair_and_tls_files() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("foldline.toml");
        std::fs::write(
            &file,
            "[registry_server]\nusers = { alice = \"alice-pw\", bob = \"bob-pw\" }\n",
        )
        .unwrap();
        let environment = vec![
            (
                "FOLDLINE__REGISTRY_SERVER__USERNAME".to_owned(),
                "orders".to_owned(),
            ),
            (
                "FOLDLINE__REGISTRY_SERVER__PASSWORD".to_owned(),
                "1234".to_owned(),
            ),
        ];
        let config = Config::load(Some(&file), environment).unwrap();
        let users = config.registry_server.credentials();
        assert_eq!(
            users.keys().map(String::as_str).collect::<Vec<_>>(),
            ["alice", "bob", "orders"]
        );
        assert_eq!(users["orders"].expose(), "1234");
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("alice-pw") && !printed.contains("1234"),
            "{printed}"
        );

        let refused = |pairs: &[(&str, &str)], expected: &str| {
            let environment = pairs
                .iter()
                .map(|(key, value)| {
                    (
                        format!("FOLDLINE__REGISTRY_SERVER__{key}"),
                        (*value).to_owned(),
                    )
                })
                .collect::<Vec<_>>();
            let error = Config::load(None, environment).unwrap_err().to_string();
            assert!(error.contains(expected), "{pairs:?}: {error}");
        };
        refused(&[("USERNAME", "orders")], "set both or neither");
        refused(
            &[("USERNAME", "a:b"), ("PASSWORD", "pw")],
            "must be non-empty and hold no ':'",
        );
        refused(&[("USERS__ORDERS", "")], "has an empty password");
        refused(
            &[("CERTIFICATE_FILE", "/nonexistent/cert.pem")],
            "go together",
        );
        refused(
            &[
                ("CERTIFICATE_FILE", "/nonexistent/cert.pem"),
                ("KEY_FILE", "/nonexistent/key.pem"),
            ],
            "registry_server.certificate_file /nonexistent/cert.pem does not exist",
        );
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret("hunter2".to_owned());
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        let mut config = Config::default();
        config
            .kafka
            .secret_properties
            .insert("sasl.password".to_owned(), secret);
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
