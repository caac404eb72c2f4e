//! Avro values in the Confluent wire format (magic byte, 4-byte schema id,
//! Avro binary), through a Confluent-compatible schema registry.
//!
//! Subjects follow TopicRecordNameStrategy (`<topic>-<record full name>`,
//! DESIGN.md §3). Caching is schema_registry_converter's: its encoder keeps
//! each subject's schema and id after the first successful registration
//! (concurrent first calls share one request), its decoder each id's schema
//! after the first lookup; failures the registry may recover from are not
//! kept. One [`Codec`] is built per process and cloned into every loop, so
//! start-up's [`Codec::register`] is the only registration of a subject in
//! the process (`codec_cache` tests count the requests).
//!
//! The registry may be any Confluent-compatible one, with basic auth and TLS
//! (a custom CA, a client certificate): [`Codec::connect`].

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use apache_avro::types::Value;
use foldline_contracts::schema::{self, RecordSchema};
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::{get_all_subjects, SrSettings};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    RawError, SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::RegistryClientConfig;

/// Why encoding, decoding or talking to the registry failed. Transient
/// (retrying the same call can succeed): [`Self::RegistryUnavailable`],
/// and at run time also refused credentials and TLS failures, which an
/// operator fixes without the record changing (see [`Self::is_transient`]).
/// Start-up stops at once on those ([`Self::is_misconfiguration`]).
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("no schema is declared for record {0}")]
    UndeclaredRecord(String),
    #[error("schema registry unavailable: {0}")]
    RegistryUnavailable(String),
    /// 401 or 403: wrong, missing or unauthorised credentials.
    #[error("the schema registry at {url} refused the credentials (http {status}): check registry.username and registry.password")]
    RegistryCredentialsRefused { url: String, status: u16 },
    /// The TLS handshake failed: an untrusted or mismatched certificate,
    /// or `https://` against a plain-HTTP registry.
    #[error("the tls handshake with the schema registry at {url} failed: {reason}")]
    RegistryTls { url: String, reason: String },
    /// 409 (incompatible with an earlier version) or 422 (invalid schema):
    /// the registry's own message.
    #[error("the schema registry refused schema {subject} (http {status}): {message}")]
    SchemaRefused {
        subject: String,
        status: u16,
        message: String,
    },
    #[error("schema registry refused: {0}")]
    RegistryRefused(String),
    #[error("record cannot be encoded as {record}: {reason}")]
    Encode { record: String, reason: String },
    #[error("value is not a decodable avro record: {0}")]
    Undecodable(String),
    #[error("value of record {record} does not fit the expected type: {reason}")]
    WrongShape { record: String, reason: String },
}

/// How long an unknown schema id is retried before its record is poison.
const UNKNOWN_SCHEMA_GRACE: Duration = Duration::from_secs(5);

impl CodecError {
    /// Whether retrying the same bytes can succeed rather than the bytes
    /// being poison: the registry is down, or it refuses this client's
    /// credentials or certificate. A record is never parked because of the
    /// registry's side: a rotated password must stall a loop, not send its
    /// records to the dead-letter topic.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RegistryUnavailable(_)
                | Self::RegistryCredentialsRefused { .. }
                | Self::RegistryTls { .. }
        )
    }

    /// Whether only a change of configuration (credentials, CA, schema)
    /// can make the call succeed: start-up stops on these at once.
    pub fn is_misconfiguration(&self) -> bool {
        matches!(
            self,
            Self::RegistryCredentialsRefused { .. }
                | Self::RegistryTls { .. }
                | Self::SchemaRefused { .. }
        )
    }

    /// Classifies a converter error from a call about `subject` (if any).
    fn from_registry(url: &str, subject: Option<&str>, error: SRCError) -> Self {
        let status = http_status(&error.error);
        let refusal = error
            .source()
            .and_then(|source| source.downcast_ref::<RawError>());
        match status {
            Some(status @ (401 | 403)) => {
                return Self::RegistryCredentialsRefused {
                    url: url.to_owned(),
                    status,
                }
            }
            Some(status @ (409 | 422)) => {
                if let Some(subject) = subject {
                    return Self::SchemaRefused {
                        subject: subject.to_owned(),
                        status,
                        message: refusal.map_or_else(
                            || error.cause.clone().unwrap_or_default(),
                            |raw| format!("{} (error code {})", raw.message, raw.error_code),
                        ),
                    };
                }
            }
            _ => {}
        }
        let chain = error_chain(&error);
        if error.retriable && status.is_none() && is_tls_failure(&chain) {
            return Self::RegistryTls {
                url: url.to_owned(),
                reason: chain,
            };
        }
        let detail = match refusal {
            Some(raw) => format!("{}: {}", error.error, raw.message),
            None => chain,
        };
        // A 404 is told apart by its text (`decode`'s grace period).
        if error.retriable || status.is_some_and(|status| status >= 500 || status == 429) {
            Self::RegistryUnavailable(format!("{url}: {detail}"))
        } else {
            Self::RegistryRefused(detail)
        }
    }
}

/// The status in the converter's "... failed with status 401 Unauthorized".
fn http_status(message: &str) -> Option<u16> {
    let (_, rest) = message.split_once("with status ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The error and every cause under it, `: `-joined (reqwest's own message
/// says only "error sending request").
fn error_chain(error: &SRCError) -> String {
    let mut text = error.error.clone();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// OpenSSL's words for a failed handshake (native-tls shows them as text).
fn is_tls_failure(chain: &str) -> bool {
    let chain = chain.to_ascii_lowercase();
    [
        "certificate verify failed",
        "ssl routines",
        "handshake",
        "wrong version number",
    ]
    .iter()
    .any(|needle| chain.contains(needle))
}

/// A decoded value and the full name of its writer schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    pub record_name: String,
    pub value: Value,
}

impl Decoded {
    /// Reads the value as a wire type.
    pub fn into_record<T: DeserializeOwned>(self) -> Result<T, CodecError> {
        apache_avro::from_value::<T>(&self.value).map_err(|error| CodecError::WrongShape {
            record: self.record_name,
            reason: error.to_string(),
        })
    }
}

/// Why the registry client cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum RegistryClientError {
    #[error("cannot read registry.{key} {path}: {source}")]
    ReadFile {
        key: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("registry.ca_file {path} holds no pem certificate: {reason}")]
    BadCa { path: String, reason: String },
    #[error("registry.certificate_file and registry.key_file are not a pem certificate and an unencrypted pkcs#8 pem key: {0}")]
    BadIdentity(String),
    #[error("cannot build the schema registry client: {0}")]
    Build(String),
}

/// Shared by every loop of a process; cheap to clone.
#[derive(Clone)]
pub struct Codec {
    url: Arc<str>,
    encoder: Arc<AvroEncoder>,
    decoder: Arc<AvroDecoder>,
    settings: SrSettings,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Codec")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Codec {
    /// A client of an unauthenticated registry at `registry_url`.
    pub fn new(registry_url: &str) -> Result<Codec, RegistryClientError> {
        Codec::connect(&RegistryClientConfig {
            url: registry_url.to_owned(),
            ..RegistryClientConfig::default()
        })
    }

    /// A client of the registry `config` describes (validated by
    /// `Config::load`): basic auth, a custom CA, a client certificate, the
    /// request timeout. Connects lazily; [`Codec::check`] probes.
    pub fn connect(config: &RegistryClientConfig) -> Result<Codec, RegistryClientError> {
        let read = |key: &'static str, path: &std::path::Path| {
            std::fs::read(path).map_err(|source| RegistryClientError::ReadFile {
                key,
                path: path.display().to_string(),
                source,
            })
        };
        let mut builder = reqwest_registry::Client::builder();
        if let Some(path) = &config.ca_file {
            let certificates = reqwest_registry::Certificate::from_pem_bundle(&read(
                "ca_file", path,
            )?)
            .map_err(|error| RegistryClientError::BadCa {
                path: path.display().to_string(),
                reason: error.to_string(),
            })?;
            if certificates.is_empty() {
                return Err(RegistryClientError::BadCa {
                    path: path.display().to_string(),
                    reason: "no certificate in the file".to_owned(),
                });
            }
            builder = builder.tls_certs_merge(certificates);
        }
        if let (Some(certificate), Some(key)) = (&config.certificate_file, &config.key_file) {
            let identity = reqwest_registry::Identity::from_pkcs8_pem(
                &read("certificate_file", certificate)?,
                &read("key_file", key)?,
            )
            .map_err(|error| RegistryClientError::BadIdentity(error.to_string()))?;
            builder = builder.identity(identity);
        }
        let url = config.url.trim_end_matches('/').to_owned();
        let mut settings = SrSettings::new_builder(url.clone());
        settings
            .set_timeout(Duration::from_millis(config.request_timeout_ms))
            .no_proxy();
        if let (Some(username), Some(password)) = (&config.username, &config.password) {
            settings.set_basic_authorization(username, Some(password.expose()));
        }
        let settings = settings
            .build_with(builder)
            .map_err(|error| RegistryClientError::Build(error_chain(&error)))?;
        Ok(Codec {
            url: Arc::from(url),
            encoder: Arc::new(AvroEncoder::new(settings.clone())),
            decoder: Arc::new(AvroDecoder::new(settings.clone())),
            settings,
        })
    }

    /// The registry's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One authenticated request (`GET /subjects`): whether the registry
    /// answers, over TLS it trusts, and accepts the credentials.
    pub async fn check(&self) -> Result<(), CodecError> {
        get_all_subjects(&self.settings)
            .await
            .map(drop)
            .map_err(|error| CodecError::from_registry(&self.url, None, error))
    }

    fn strategy(topic: &str, declared: &RecordSchema) -> SubjectNameStrategy {
        SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
            topic.to_owned(),
            SuppliedSchema::new(
                Some(declared.full_name.to_owned()),
                SchemaType::Avro,
                declared.text.to_owned(),
            ),
        )
    }

    fn declared(record_name: &str) -> Result<&'static RecordSchema, CodecError> {
        schema::by_full_name(record_name)
            .ok_or_else(|| CodecError::UndeclaredRecord(record_name.to_owned()))
    }

    /// Encodes `record` as `record_name` for `topic`.
    pub async fn encode<T: Serialize>(
        &self,
        topic: &str,
        record_name: &str,
        record: &T,
    ) -> Result<Vec<u8>, CodecError> {
        let value = apache_avro::to_value(record).map_err(|error| CodecError::Encode {
            record: record_name.to_owned(),
            reason: error.to_string(),
        })?;
        self.encode_value(topic, record_name, value).await
    }

    /// Encodes an Avro value as `record_name` for `topic`.
    pub async fn encode_value(
        &self,
        topic: &str,
        record_name: &str,
        value: Value,
    ) -> Result<Vec<u8>, CodecError> {
        let declared = Self::declared(record_name)?;
        let strategy = Self::strategy(topic, declared);
        match self.encoder.encode_value(value, &strategy).await {
            Ok(bytes) => Ok(bytes),
            Err(error) => Err(self.encoder_error(topic, record_name, error)),
        }
    }

    /// Registers (or finds) every record schema of `topic` up front, so a
    /// registry that refuses a schema stops start-up instead of a command.
    pub async fn register(&self, topic: &str, record_names: &[String]) -> Result<(), CodecError> {
        for record_name in record_names {
            let declared = Self::declared(record_name)?;
            let key = schema::subject(topic, record_name);
            self.encoder
                .get_schema_and_id(&key, Self::strategy(topic, declared))
                .await
                .map_err(|error| self.encoder_error(topic, record_name, error))?;
        }
        Ok(())
    }

    fn encoder_error(&self, topic: &str, record_name: &str, error: SRCError) -> CodecError {
        let error =
            CodecError::from_registry(&self.url, Some(&schema::subject(topic, record_name)), error);
        // The converter caches refusals; one the registry side can recover
        // from (credentials, certificates, an outage) must not stick.
        if error.is_transient() {
            self.encoder.remove_errors_from_cache();
        }
        error
    }

    pub async fn decode(&self, bytes: &[u8]) -> Result<Decoded, CodecError> {
        if bytes.len() < 5 || bytes[0] != 0 {
            return Err(CodecError::Undecodable(
                "missing the confluent wire-format header".to_owned(),
            ));
        }
        // Set at the first 404 only: the common path reads no clock.
        let mut grace_ends: Option<tokio::time::Instant> = None;
        let mut delay = Duration::from_millis(100);
        loop {
            match self.decoder.decode(Some(bytes)).await {
                Ok(result) => {
                    let record_name =
                        result.name.map(|name| name.fullname(None)).ok_or_else(|| {
                            CodecError::Undecodable(
                                "writer schema is not a named record".to_owned(),
                            )
                        })?;
                    return Ok(Decoded {
                        record_name,
                        value: result.value,
                    });
                }
                Err(error) if error.retriable => {
                    self.decoder.remove_errors_from_cache();
                    return Err(CodecError::from_registry(&self.url, None, error));
                }
                // A registry replica that has not replayed `_schemas` up to
                // a schema registered elsewhere answers 404 for a valid id:
                // the id gets a grace period before the bytes count as
                // poison (skipping a real event would corrupt every fold).
                Err(error)
                    if error.error.contains("404")
                        && *grace_ends.get_or_insert_with(|| {
                            tokio::time::Instant::now() + UNKNOWN_SCHEMA_GRACE
                        }) > tokio::time::Instant::now() =>
                {
                    self.decoder.remove_errors_from_cache();
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(error) => {
                    let error = CodecError::from_registry(&self.url, None, error);
                    if error.is_transient() {
                        self.decoder.remove_errors_from_cache();
                        return Err(error);
                    }
                    return Err(CodecError::Undecodable(error.to_string()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://registry:8081";

    fn refused(status: &str, code: u32, message: &str) -> SRCError {
        let raw: RawError =
            serde_json::from_value(serde_json::json!({"error_code": code, "message": message}))
                .unwrap();
        SRCError::non_retryable_with_cause(
            raw,
            &format!("HTTP request to schema registry failed with status {status}"),
        )
    }

    #[test]
    fn refused_credentials_are_permanent_at_start_up_and_never_poison() {
        for status in ["401 Unauthorized", "403 Forbidden"] {
            let error = CodecError::from_registry(URL, None, refused(status, 401, "Unauthorized"));
            assert!(
                matches!(error, CodecError::RegistryCredentialsRefused { .. }),
                "{error:?}"
            );
            assert!(error.is_misconfiguration() && error.is_transient());
            assert!(
                error.to_string().contains("refused the credentials"),
                "{error}"
            );
        }
    }

    #[test]
    fn an_incompatible_schema_carries_the_registrys_message() {
        let error = CodecError::from_registry(
            URL,
            Some("orders.events-foldline.orders.OrderPlaced"),
            refused(
                "409 Conflict",
                409,
                "schema being registered is incompatible with an earlier schema",
            ),
        );
        assert!(error.is_misconfiguration() && !error.is_transient());
        let text = error.to_string();
        assert!(
            text.contains("orders.events-foldline.orders.OrderPlaced")
                && text.contains("http 409")
                && text.contains("incompatible with an earlier schema"),
            "{text}"
        );
    }

    #[test]
    fn outages_are_transient_and_tls_failures_are_named() {
        let down = CodecError::from_registry(
            URL,
            None,
            SRCError::retryable_with_cause(
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"),
                "http call to schema registry failed",
            ),
        );
        assert!(
            matches!(down, CodecError::RegistryUnavailable(_)),
            "{down:?}"
        );
        assert!(down.is_transient() && !down.is_misconfiguration());
        let busy =
            CodecError::from_registry(URL, None, refused("500 Internal Server Error", 50001, "x"));
        assert!(busy.is_transient(), "{busy:?}");
        let tls = CodecError::from_registry(
            URL,
            None,
            SRCError::retryable_with_cause(
                std::io::Error::other(
                    "error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed",
                ),
                "http call to schema registry failed",
            ),
        );
        assert!(matches!(tls, CodecError::RegistryTls { .. }), "{tls:?}");
        assert!(
            tls.to_string().contains("certificate verify failed"),
            "{tls}"
        );
    }

    #[test]
    fn unusable_tls_files_are_refused_naming_the_key() {
        let directory = tempfile::tempdir().unwrap();
        let garbage = directory.path().join("garbage.pem");
        std::fs::write(&garbage, "not pem at all").unwrap();
        let config = RegistryClientConfig {
            url: URL.to_owned(),
            ca_file: Some(garbage.clone()),
            ..RegistryClientConfig::default()
        };
        let error = Codec::connect(&config).unwrap_err().to_string();
        assert!(error.starts_with("registry.ca_file"), "{error}");
        let config = RegistryClientConfig {
            url: URL.to_owned(),
            certificate_file: Some(garbage.clone()),
            key_file: Some(garbage),
            ..RegistryClientConfig::default()
        };
        let error = Codec::connect(&config).unwrap_err().to_string();
        assert!(
            error.contains("registry.certificate_file and registry.key_file"),
            "{error}"
        );
        let config = RegistryClientConfig {
            url: URL.to_owned(),
            ca_file: Some(directory.path().join("missing.pem")),
            ..RegistryClientConfig::default()
        };
        let error = Codec::connect(&config).unwrap_err().to_string();
        assert!(error.contains("cannot read registry.ca_file"), "{error}");
    }

    #[test]
    fn the_status_is_read_from_the_converters_message() {
        assert_eq!(
            http_status("HTTP request to schema registry failed with status 401 Unauthorized"),
            Some(401)
        );
        assert_eq!(http_status("http call to schema registry failed"), None);
    }
}
