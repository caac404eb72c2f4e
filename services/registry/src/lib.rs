//! A Confluent-compatible schema registry backed by a compacted Kafka topic
//! (`_schemas`): the `registry` role of `foldline`.
//!
//! # API
//! The subset of Confluent's REST API that Avro serdes and operators use,
//! served by [`Registry::router`] (see [`serve`]):
//!
//! | route | |
//! |---|---|
//! | `POST /subjects/{subject}/versions` | register, `{"id"}` |
//! | `POST /subjects/{subject}` | look a schema up under a subject |
//! | `GET /subjects`, `GET /subjects/{subject}/versions` | list |
//! | `GET /subjects/{subject}/versions/{version\|latest}[/schema]` | one version |
//! | `GET /schemas/ids/{id}[/versions]` | a schema by global id |
//! | `GET /schemas/types` | `["AVRO"]` |
//! | `POST /compatibility/subjects/{subject}/versions[/{version\|latest}]` | `{"is_compatible"}` |
//! | `GET/PUT /config`, `GET/PUT/DELETE /config/{subject}` | compatibility levels |
//!
//! Only Avro is supported, without schema references. Errors are Confluent's
//! `{"error_code", "message"}` bodies.
//!
//! Optionally, as Confluent's registry does it ([`serve_secured`],
//! `[registry_server]`): HTTP basic auth (401 with `WWW-Authenticate:
//! Basic` before any route) and TLS.
//!
//! # Storage
//! Like Confluent's registry, all state lives in the topic, in Confluent's
//! record format (see `record`). On [`Registry::start`] an instance replays
//! the topic from the beginning, then keeps tailing it, so every instance
//! on the same topic converges on the same state, which is a pure fold of
//! the records (see `state`). A write appends a record and answers only
//! once this instance's tail has read that record back, so every answer
//! reflects the log.
//!
//! # Several instances: first in the log wins
//! Instances do not elect a leader. Each allocates the next version
//! (`max version + 1`) and the next global id (`max id seen + 1`) from its
//! own view and appends. If two instances race, the log order decides, by
//! the rule the rest of Foldline uses for conflicting facts: the **first**
//! record claiming a subject version, or claiming a global id for a
//! different schema, wins; the fold ignores later contradicting records.
//! The losing instance sees, once its own record is read back, that it did
//! not take effect, and retries the registration from the new state: with
//! a fresh id and version, and a new compatibility check against whatever
//! won. Because compaction keeps the *last* record of a key, a loser that
//! collided on a subject version first re-appends the winner's record under
//! that key, so the compacted topic still folds to the same state.

mod avro;
mod compat;
mod http;
mod record;
mod schemas_topic;
mod security;
mod state;

pub use self::security::{SecurityError, ServerSecurity};

use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use foldline_platform::config::KafkaConfig;
use rdkafka::error::KafkaError;
use tracing::{info, warn};

use self::avro::ParsedSchema;
use self::compat::{Against, CompatibilityLevel};
use self::record::{
    encode_config_key, encode_config_value, encode_schema_key, encode_schema_value, SchemaKey,
    SchemaValue,
};
use self::schemas_topic::Log;
use self::state::State;

/// Where the registry keeps its state. The brokers, and the librdkafka
/// properties its clients share with every other client, come from the
/// platform's [`KafkaConfig`] given to [`Registry::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// The compacted, single-partition topic holding the registry's records
    /// (conventionally `_schemas`). The caller creates it.
    pub topic: String,
    /// Prefix of the Kafka `client.id`s this registry uses.
    pub client_id: String,
}

/// A running registry instance. Cheap to clone; the Kafka clients and the
/// tail stop when the last clone is dropped.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    topic: String,
    state: Arc<RwLock<State>>,
    log: Log,
    /// Serialises this instance's writes: it then never races itself, only
    /// other instances, which the log settles.
    write_lock: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("topic", &self.inner.topic)
            .finish_non_exhaustive()
    }
}

/// Why the registry cannot start or could not complete a write.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid registry configuration: {0}")]
    InvalidConfig(&'static str),
    #[error("cannot create kafka client: {0}")]
    Client(#[source] KafkaError),
    #[error("kafka brokers at {bootstrap_servers} are unreachable: {source}")]
    Unreachable {
        bootstrap_servers: String,
        #[source]
        source: KafkaError,
    },
    #[error("schemas topic {topic} does not exist; create it (compacted, 1 partition) before starting the registry")]
    TopicMissing { topic: String },
    #[error("schemas topic {topic} is unavailable: {reason}")]
    TopicUnavailable { topic: String, reason: String },
    #[error("schemas topic {topic} has {partitions} partitions; the registry needs exactly 1 so that the log has a single order")]
    TopicPartitions { topic: String, partitions: usize },
    #[error("timed out replaying schemas topic {topic}")]
    ReplayTimeout { topic: String },
    #[error("cannot write to schemas topic {topic}: {source}")]
    Write {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("timed out reading back offset {offset} of schemas topic {topic}")]
    ReadBackTimeout { topic: String, offset: i64 },
    #[error("the schemas topic reader has stopped")]
    ReaderStopped,
    #[error("the registration did not settle after {attempts} attempts; other instances keep winning the race")]
    Contention { attempts: u32 },
    #[error("the async runtime is shutting down")]
    Runtime,
}

/// Why a registration was refused or failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegisterError {
    #[error("incompatible with an earlier schema")]
    Incompatible(Vec<String>),
    #[error("no version or id is left")]
    Exhausted,
    #[error(transparent)]
    Store(#[from] RegistryError),
}

/// How many times a registration is retried after losing a race.
const MAX_ATTEMPTS: u32 = 8;

/// How long a lookup of an id above every id seen waits for the tail.
/// Another instance may have just registered it: its client already has the
/// id (the write was acknowledged, so it is in the log) and a consumer may
/// ask this instance for it a few milliseconds later.
const FUTURE_ID_WAIT: Duration = Duration::from_secs(1);

impl Registry {
    /// Connects, replays the topic, starts tailing.
    ///
    /// Fails if the brokers cannot be reached, or the topic does not exist
    /// or has more than one partition, within a few seconds; or if the
    /// replay does not finish within a minute.
    pub async fn start(
        kafka: &KafkaConfig,
        config: RegistryConfig,
    ) -> Result<Registry, RegistryError> {
        let state = Arc::new(RwLock::new(State::default()));
        let log = Log::open(kafka, &config, Arc::clone(&state)).await?;
        let registry = Registry {
            inner: Arc::new(Inner {
                topic: config.topic.clone(),
                state,
                log,
                write_lock: tokio::sync::Mutex::new(()),
            }),
        };
        // Settle keys a crashed instance left contested (see `state`).
        {
            let _guard = registry.inner.write_lock.lock().await;
            registry.repair().await?;
        }
        info!(topic = %config.topic, "schema registry started");
        Ok(registry)
    }

    /// The REST API.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// A read view of the state. Never hold it across an `.await`.
    pub(crate) fn state(&self) -> RwLockReadGuard<'_, State> {
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The schema text registered under a global id.
    ///
    /// An id above every id seen so far gets a short grace period (see
    /// [`FUTURE_ID_WAIT`]) before it is declared unknown; ids below that are
    /// answered at once.
    pub(crate) async fn schema_text(&self, id: u32) -> Option<Arc<str>> {
        let deadline = tokio::time::Instant::now() + FUTURE_ID_WAIT;
        let mut changes = self.inner.log.changes();
        loop {
            {
                let state = self.state();
                if let Some(entry) = state.schema(id) {
                    return Some(Arc::clone(&entry.text));
                }
                if !state.is_future_id(id) {
                    return None;
                }
            }
            match tokio::time::timeout_at(deadline, changes.next()).await {
                Ok(true) => {}
                Ok(false) | Err(_) => return None,
            }
        }
    }

    /// Registers `schema` under `subject` and returns its global id.
    ///
    /// A schema already live under the subject returns its id without a
    /// write. Otherwise it gets the id it already has under another subject,
    /// or `max id + 1`, and version `max version + 1`, after the
    /// compatibility check. If the record loses a race (see `state`), the
    /// registration is planned again from the new state and retried.
    pub(crate) async fn register(
        &self,
        subject: &str,
        text: &str,
        schema: &ParsedSchema,
    ) -> Result<u32, RegisterError> {
        // Re-registering is the common case (every producer start does it):
        // answer it without queueing behind writes.
        if let Some((_, id)) = self
            .state()
            .find_in_subject(subject, &schema.identity, false)
        {
            return Ok(id);
        }
        let _guard = self.inner.write_lock.lock().await;
        for attempt in 1..=MAX_ATTEMPTS {
            let (key, value) = {
                let state = self.state();
                if let Some((_, id)) = state.find_in_subject(subject, &schema.identity, false) {
                    return Ok(id);
                }
                let existing = state.live_schemas(subject);
                let existing: Vec<(u32, &apache_avro::Schema)> =
                    existing.iter().map(|(v, s)| (*v, &**s)).collect();
                compat::check(
                    state.effective_level(subject),
                    Against::Level,
                    &schema.schema,
                    &existing,
                )
                .map_err(RegisterError::Incompatible)?;
                let id = match state.id_for_identity(&schema.identity) {
                    Some(id) => id,
                    None => state.next_id().ok_or(RegisterError::Exhausted)?,
                };
                let version = state
                    .next_version(subject)
                    .ok_or(RegisterError::Exhausted)?;
                let key = SchemaKey {
                    subject: subject.to_owned(),
                    version,
                };
                let value = SchemaValue {
                    subject: subject.to_owned(),
                    version,
                    id,
                    schema: text.to_owned(),
                    deleted: false,
                    schema_type: None,
                    references: Vec::new(),
                };
                (key, value)
            };
            let offset = self
                .inner
                .log
                .append(&encode_schema_key(&key), Some(&encode_schema_value(&value)))
                .await?;
            let (won, contested) = {
                let state = self.state();
                let won = state
                    .version(subject, state::VersionSelector::Number(key.version), true)
                    .is_some_and(|(_, entry)| {
                        entry.id == value.id
                            && state
                                .schema(entry.id)
                                .is_some_and(|e| e.parsed.identity == schema.identity)
                    });
                (won, state.is_contested(&key))
            };
            if won {
                info!(
                    subject,
                    version = key.version,
                    id = value.id,
                    offset,
                    "schema registered"
                );
                return Ok(value.id);
            }
            warn!(
                subject,
                version = key.version,
                id = value.id,
                offset,
                attempt,
                "registration lost a race with another instance; retrying"
            );
            if contested {
                self.repair().await?;
            }
        }
        Err(RegistryError::Contention {
            attempts: MAX_ATTEMPTS,
        }
        .into())
    }

    /// Sets (or with `None` clears) the compatibility level of a subject, or
    /// of the registry when `subject` is `None`.
    pub(crate) async fn set_level(
        &self,
        subject: Option<&str>,
        level: Option<CompatibilityLevel>,
    ) -> Result<(), RegistryError> {
        let _guard = self.inner.write_lock.lock().await;
        let value = level.map(encode_config_value);
        let offset = self
            .inner
            .log
            .append(&encode_config_key(subject), value.as_deref())
            .await?;
        info!(
            subject,
            level = level.map(CompatibilityLevel::as_str),
            offset,
            "compatibility level set"
        );
        Ok(())
    }

    /// Re-appends the winning value of every contested key, so compaction
    /// keeps the winner. The caller holds the write lock.
    async fn repair(&self) -> Result<(), RegistryError> {
        let repairs = self.state().repairs();
        for (key, value) in repairs {
            warn!(subject = %key.subject, version = key.version, id = value.id, "re-appending the winner of a contested schema version");
            self.inner
                .log
                .append(&encode_schema_key(&key), Some(&encode_schema_value(&value)))
                .await?;
        }
        Ok(())
    }
}

/// Serves the registry's REST API on `listener` until `shutdown` completes,
/// then finishes the requests in flight.
pub async fn serve(
    registry: Registry,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_secured(registry, listener, ServerSecurity::default(), shutdown).await
}

/// [`serve`] behind `security`'s basic auth and TLS, when they are on.
pub async fn serve_secured(
    registry: Registry,
    listener: tokio::net::TcpListener,
    security: ServerSecurity,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(address) = listener.local_addr() {
        info!(
            %address,
            topic = %registry.inner.topic,
            tls = security.is_tls(),
            basic_auth = security.requires_auth(),
            "schema registry listening"
        );
    }
    let router = security.protect(registry.router());
    match security.acceptor() {
        Some(acceptor) => {
            axum::serve(security::TlsListener::new(listener, acceptor)?, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}
