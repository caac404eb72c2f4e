//! How every Kafka client of every role proves who it is and whom it talks
//! to: `[kafka.security]` in the configuration, validated once at start-up,
//! applied to each client configuration the platform builds
//! (`kafka::base_client_config`), and a start-up probe that turns
//! librdkafka's error callback into a typed error naming the cause (wrong
//! credentials, an untrusted certificate) instead of a role retrying in
//! silence.
//!
//! ```toml
//! [kafka.security]
//! protocol = "SASL_SSL"           # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
//! [kafka.security.sasl]
//! mechanism = "SCRAM-SHA-512"     # SCRAM-SHA-512 | SCRAM-SHA-256 | PLAIN
//! username = "orders-processor"
//! password = "..."                # FOLDLINE__KAFKA__SECURITY__SASL__PASSWORD
//! [kafka.security.tls]
//! ca_location = "/etc/foldline/kafka-ca.pem"
//! certificate_location = "/etc/foldline/client.pem"  # mutual TLS
//! key_location = "/etc/foldline/client.key"
//! key_password = "..."
//! ```
//!
//! Secrets are [`Secret`]s: `Debug` prints `Secret(***)`, and no error
//! message here quotes a configured value other than a path.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};
use serde::{Deserialize, Serialize};

use crate::config::{KafkaConfig, Secret};

/// `security.protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecurityProtocol {
    #[default]
    #[serde(rename = "PLAINTEXT", alias = "plaintext")]
    Plaintext,
    #[serde(rename = "SSL", alias = "ssl")]
    Ssl,
    #[serde(rename = "SASL_PLAINTEXT", alias = "sasl_plaintext")]
    SaslPlaintext,
    #[serde(rename = "SASL_SSL", alias = "sasl_ssl")]
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

/// `sasl.mechanism`: the ones librdkafka serves with OpenSSL alone (no
/// Cyrus SASL, so no GSSAPI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "SCRAM-SHA-512", alias = "scram-sha-512")]
    ScramSha512,
    #[serde(rename = "SCRAM-SHA-256", alias = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "PLAIN", alias = "plain")]
    Plain,
}

impl SaslMechanism {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::Plain => "PLAIN",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SaslConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<SaslMechanism>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
}

impl SaslConfig {
    fn is_empty(&self) -> bool {
        self == &SaslConfig::default()
    }
}

/// Whether the client checks that the broker's certificate names the host
/// it dialled (`ssl.endpoint.identification.algorithm`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointIdentification {
    #[default]
    Https,
    None,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file of the CA(s) that sign the brokers' certificates; without
    /// it the system's trust store is used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_location: Option<PathBuf>,
    /// PEM file of this client's certificate (mutual TLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_location: Option<PathBuf>,
    /// PEM file of this client's private key (mutual TLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_location: Option<PathBuf>,
    /// The private key itself, PEM, instead of `key_location` (e.g. from a
    /// secret store through the environment).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_pem: Option<Secret>,
    /// The password of an encrypted private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_password: Option<Secret>,
    pub endpoint_identification: EndpointIdentification,
}

impl TlsConfig {
    fn is_empty(&self) -> bool {
        self == &TlsConfig::default()
    }
}

/// `[kafka.security]`: the same for every client of the process.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSecurityConfig {
    pub protocol: SecurityProtocol,
    pub sasl: SaslConfig,
    pub tls: TlsConfig,
}

/// A `[kafka.security]` that cannot work, found at start-up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecurityConfigError {
    #[error("kafka.security.protocol {protocol} needs kafka.security.sasl.{field}")]
    SaslFieldMissing {
        protocol: &'static str,
        field: &'static str,
    },
    #[error(
        "kafka.security.sasl is set but kafka.security.protocol {protocol} does not use SASL \
         (use SASL_SSL or SASL_PLAINTEXT)"
    )]
    SaslWithoutSaslProtocol { protocol: &'static str },
    #[error(
        "kafka.security.tls is set but kafka.security.protocol {protocol} does not use TLS \
         (use SSL or SASL_SSL)"
    )]
    TlsWithoutTlsProtocol { protocol: &'static str },
    #[error("kafka.security.tls.{field} {} does not exist or is not a file", path.display())]
    FileMissing { field: &'static str, path: PathBuf },
    #[error(
        "kafka.security.tls.certificate_location needs a private key (key_location or key_pem)"
    )]
    CertificateWithoutKey,
    #[error("kafka.security.tls has a private key but no certificate_location")]
    KeyWithoutCertificate,
    #[error("kafka.security.tls: set key_location or key_pem, not both")]
    TwoKeys,
    #[error("kafka.security.tls.key_password is set but there is no private key")]
    KeyPasswordWithoutKey,
    #[error(
        "kafka.properties sets {key}, which kafka.security owns: configure it in [kafka.security] \
         (or leave [kafka.security] at its default and use properties alone)"
    )]
    SetTwice { key: String },
}

/// The librdkafka properties `[kafka.security]` sets; the others (e.g.
/// `ssl.cipher.suites`) stay the operator's, through `kafka.properties`.
const OWNED_PROPERTIES: &[&str] = &[
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.pem",
    "ssl.key.password",
    "ssl.endpoint.identification.algorithm",
];

impl KafkaSecurityConfig {
    /// Checks what can be checked without a broker: a protocol with its
    /// required parts, no part its protocol ignores, files that exist.
    pub fn validate(&self, kafka: &KafkaConfig) -> Result<(), SecurityConfigError> {
        let protocol = self.protocol.as_librdkafka();
        if self != &KafkaSecurityConfig::default() {
            let owned = kafka
                .properties
                .keys()
                .chain(kafka.secret_properties.keys())
                .find(|key| OWNED_PROPERTIES.contains(&key.as_str()));
            if let Some(key) = owned {
                return Err(SecurityConfigError::SetTwice { key: key.clone() });
            }
        }
        if self.protocol.uses_sasl() {
            let missing = |field| SecurityConfigError::SaslFieldMissing { protocol, field };
            if self.sasl.mechanism.is_none() {
                return Err(missing("mechanism"));
            }
            if self.sasl.username.as_deref().is_none_or(str::is_empty) {
                return Err(missing("username"));
            }
            if self
                .sasl
                .password
                .as_ref()
                .is_none_or(|password| password.expose().is_empty())
            {
                return Err(missing("password"));
            }
        } else if !self.sasl.is_empty() {
            return Err(SecurityConfigError::SaslWithoutSaslProtocol { protocol });
        }
        if !self.protocol.uses_tls() {
            if !self.tls.is_empty() {
                return Err(SecurityConfigError::TlsWithoutTlsProtocol { protocol });
            }
            return Ok(());
        }
        let tls = &self.tls;
        for (field, path) in [
            ("ca_location", &tls.ca_location),
            ("certificate_location", &tls.certificate_location),
            ("key_location", &tls.key_location),
        ] {
            if let Some(path) = path {
                require_file(field, path)?;
            }
        }
        let has_key = tls.key_location.is_some() || tls.key_pem.is_some();
        if tls.key_location.is_some() && tls.key_pem.is_some() {
            return Err(SecurityConfigError::TwoKeys);
        }
        match (tls.certificate_location.is_some(), has_key) {
            (true, false) => return Err(SecurityConfigError::CertificateWithoutKey),
            (false, true) => return Err(SecurityConfigError::KeyWithoutCertificate),
            _ => {}
        }
        if tls.key_password.is_some() && !has_key {
            return Err(SecurityConfigError::KeyPasswordWithoutKey);
        }
        Ok(())
    }

    /// Sets the librdkafka properties of this security on `config`. The
    /// default (PLAINTEXT, nothing else) sets nothing, so `kafka.properties`
    /// alone keeps working as before.
    pub fn apply(&self, config: &mut ClientConfig) {
        if self == &KafkaSecurityConfig::default() {
            return;
        }
        config.set("security.protocol", self.protocol.as_librdkafka());
        if self.protocol.uses_sasl() {
            if let Some(mechanism) = self.sasl.mechanism {
                config.set("sasl.mechanism", mechanism.as_librdkafka());
            }
            if let Some(username) = &self.sasl.username {
                config.set("sasl.username", username);
            }
            if let Some(password) = &self.sasl.password {
                config.set("sasl.password", password.expose());
            }
        }
        if self.protocol.uses_tls() {
            let tls = &self.tls;
            let paths = [
                ("ssl.ca.location", &tls.ca_location),
                ("ssl.certificate.location", &tls.certificate_location),
                ("ssl.key.location", &tls.key_location),
            ];
            for (key, path) in paths {
                if let Some(path) = path {
                    config.set(key, path.display().to_string());
                }
            }
            if let Some(pem) = &tls.key_pem {
                config.set("ssl.key.pem", pem.expose());
            }
            if let Some(password) = &tls.key_password {
                config.set("ssl.key.password", password.expose());
            }
            config.set(
                "ssl.endpoint.identification.algorithm",
                match tls.endpoint_identification {
                    EndpointIdentification::Https => "https",
                    EndpointIdentification::None => "none",
                },
            );
        }
    }
}

fn require_file(field: &'static str, path: &Path) -> Result<(), SecurityConfigError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(SecurityConfigError::FileMissing {
            field,
            path: path.to_owned(),
        })
    }
}

/// Why a client could not talk to the brokers at start-up.
#[derive(Debug, thiserror::Error)]
pub enum KafkaConnectError {
    /// Permanent: the brokers refused the credentials (wrong password,
    /// unknown user, a mechanism the listener does not enable).
    #[error("kafka refused the credentials of user {username:?} ({mechanism}): {reason}")]
    Authentication {
        username: String,
        mechanism: String,
        reason: String,
    },
    /// Permanent: the TLS handshake failed (an untrusted or mismatched
    /// certificate on either side, a client certificate the broker wants).
    #[error("the tls handshake with kafka failed: {reason}")]
    Tls { reason: String },
    /// Transient: no answer within the probe's budget (the broker may
    /// still be starting); the roles retry on their own.
    #[error("no kafka broker at {bootstrap_servers} answered within {budget:?} (last: {reason})")]
    Unreachable {
        bootstrap_servers: String,
        budget: Duration,
        reason: String,
    },
    #[error("cannot create the kafka probe client: {0}")]
    Client(#[source] KafkaError),
    #[error("the kafka connection probe panicked")]
    ProbePanicked,
}

impl KafkaConnectError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// The first security failure librdkafka reported through its error
/// callback (it reconnects on its own and would otherwise only log). A
/// producer, because rust-rdkafka hands a consumer's error events to its
/// poll as bare codes, without librdkafka's reason.
#[derive(Debug, Default)]
struct ConnectionProbe {
    failure: Mutex<Option<(RDKafkaErrorCode, String)>>,
    last_error: Mutex<Option<String>>,
}

impl ClientContext for ConnectionProbe {
    fn error(&self, error: KafkaError, reason: &str) {
        let mut code = error.rdkafka_error_code();
        // Under TLS 1.3 the broker's verdict on the client's certificate
        // arrives after the client's side of the handshake is done, so
        // librdkafka reports the alert as a transport failure, with
        // OpenSSL's reason ("SSL routines::... alert bad certificate").
        if code == Some(RDKafkaErrorCode::BrokerTransportFailure) && reason.contains("SSL routines")
        {
            code = Some(RDKafkaErrorCode::SSL);
        }
        let slot = match code {
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL) => &self.failure,
            // Says only that the errors before it happened.
            Some(RDKafkaErrorCode::AllBrokersDown) => return,
            _ => {
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(format!("{error}: {reason}"));
                }
                return;
            }
        };
        if let (Ok(mut failure), Some(code)) = (slot.lock(), code) {
            failure.get_or_insert_with(|| (code, reason.to_owned()));
        }
    }
}

impl ProducerContext for ConnectionProbe {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, (): ()) {}
}

/// Asks the brokers for metadata with this configuration's security, until
/// one answers, librdkafka reports an authentication or TLS failure, or
/// `budget` passes.
pub async fn verify_connection(
    kafka: &KafkaConfig,
    budget: Duration,
) -> Result<(), KafkaConnectError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("client.id", "foldline-connection-probe")
        // A failed handshake is retried soon, so the probe sees it early.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "1000");
    kafka.security.apply(&mut config);
    let config = crate::kafka::with_overrides(config, kafka, &[]);
    let security = kafka.security.clone();
    let bootstrap_servers = kafka.bootstrap_servers.clone();
    let probe = tokio::task::spawn_blocking(move || {
        let client: BaseProducer<ConnectionProbe> = config
            .create_with_context(ConnectionProbe::default())
            .map_err(KafkaConnectError::Client)?;
        let began = Instant::now();
        loop {
            let answer = client
                .client()
                .fetch_metadata(None, Duration::from_millis(500));
            // Serves the error events: the context hears of them here.
            client.poll(Duration::ZERO);
            let context = client.context();
            if let Some((code, reason)) = context.failure.lock().ok().and_then(|f| f.clone()) {
                return Err(match code {
                    RDKafkaErrorCode::Authentication => KafkaConnectError::Authentication {
                        username: security.sasl.username.clone().unwrap_or_default(),
                        mechanism: security
                            .sasl
                            .mechanism
                            .map_or("no mechanism", SaslMechanism::as_librdkafka)
                            .to_owned(),
                        reason,
                    },
                    _ => KafkaConnectError::Tls { reason },
                });
            }
            let reason = match answer {
                Ok(metadata) if !metadata.brokers().is_empty() => return Ok(()),
                Ok(_) => "the metadata lists no broker".to_owned(),
                Err(error) => context
                    .last_error
                    .lock()
                    .ok()
                    .and_then(|last| last.clone())
                    .unwrap_or_else(|| error.to_string()),
            };
            if began.elapsed() >= budget {
                return Err(KafkaConnectError::Unreachable {
                    bootstrap_servers: bootstrap_servers.clone(),
                    budget,
                    reason,
                });
            }
        }
    });
    probe.await.unwrap_or(Err(KafkaConnectError::ProbePanicked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, crate::config::ConfigError> {
        Config::load(
            None,
            pairs
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
        )
    }

    fn pem_file(directory: &Path, name: &str) -> String {
        let path = directory.join(name);
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\n").unwrap();
        path.display().to_string()
    }

    #[test]
    fn this_librdkafka_speaks_tls_sasl_scram_and_plain() {
        let native = ClientConfig::new().create_native_config().unwrap();
        let features = native.get("builtin.features").unwrap();
        for feature in ["ssl", "sasl_scram", "sasl_plain"] {
            assert!(
                features.split(',').any(|built| built == feature),
                "librdkafka {:?} lacks {feature}: {features}",
                rdkafka::util::get_rdkafka_version()
            );
        }
    }

    #[test]
    fn the_default_is_plaintext_and_sets_nothing() {
        let config = Config::default();
        assert_eq!(config.kafka.security.protocol, SecurityProtocol::Plaintext);
        let mut client = ClientConfig::new();
        config.kafka.security.apply(&mut client);
        assert_eq!(client.get("security.protocol"), None);
    }

    #[test]
    fn sasl_ssl_with_scram_comes_from_the_environment_and_becomes_librdkafka_properties() {
        let directory = tempfile::tempdir().unwrap();
        let ca = pem_file(directory.path(), "ca.pem");
        let config = load(&[
            ("FOLDLINE__KAFKA__SECURITY__PROTOCOL", "SASL_SSL"),
            (
                "FOLDLINE__KAFKA__SECURITY__SASL__MECHANISM",
                "SCRAM-SHA-512",
            ),
            ("FOLDLINE__KAFKA__SECURITY__SASL__USERNAME", "alice"),
            // A password that looks like a number stays a string.
            ("FOLDLINE__KAFKA__SECURITY__SASL__PASSWORD", "12345"),
            ("FOLDLINE__KAFKA__SECURITY__TLS__CA_LOCATION", &ca),
        ])
        .unwrap();
        let security = &config.kafka.security;
        assert_eq!(security.protocol, SecurityProtocol::SaslSsl);
        let mut client = ClientConfig::new();
        security.apply(&mut client);
        assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(client.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(client.get("sasl.username"), Some("alice"));
        assert_eq!(client.get("sasl.password"), Some("12345"));
        assert_eq!(client.get("ssl.ca.location"), Some(ca.as_str()));
        assert_eq!(
            client.get("ssl.endpoint.identification.algorithm"),
            Some("https")
        );
        // The producer every role builds carries it.
        let producer = crate::kafka::producer_config(&config.kafka, "p");
        assert_eq!(producer.get("sasl.username"), Some("alice"));
    }

    #[test]
    fn mutual_tls_from_a_file_sets_certificate_key_and_key_password() {
        let directory = tempfile::tempdir().unwrap();
        let ca = pem_file(directory.path(), "ca.pem");
        let certificate = pem_file(directory.path(), "client.pem");
        let key = pem_file(directory.path(), "client.key");
        let file = directory.path().join("foldline.toml");
        std::fs::write(
            &file,
            format!(
                "[kafka.security]\nprotocol = \"ssl\"\n[kafka.security.tls]\nca_location = \"{ca}\"\n\
                 certificate_location = \"{certificate}\"\nkey_location = \"{key}\"\n\
                 key_password = \"pass-phrase\"\nendpoint_identification = \"none\"\n"
            ),
        )
        .unwrap();
        let config = Config::load(Some(&file), Vec::new()).unwrap();
        let mut client = ClientConfig::new();
        config.kafka.security.apply(&mut client);
        assert_eq!(client.get("security.protocol"), Some("SSL"));
        assert_eq!(
            client.get("ssl.certificate.location"),
            Some(certificate.as_str())
        );
        assert_eq!(client.get("ssl.key.location"), Some(key.as_str()));
        assert_eq!(client.get("ssl.key.password"), Some("pass-phrase"));
        assert_eq!(
            client.get("ssl.endpoint.identification.algorithm"),
            Some("none")
        );
        assert_eq!(client.get("sasl.mechanism"), None);
    }

    #[test]
    fn garbage_is_refused_at_start_up_with_what_is_wrong() {
        let directory = tempfile::tempdir().unwrap();
        let certificate = pem_file(directory.path(), "client.pem");
        let key = pem_file(directory.path(), "client.key");
        let refused = |pairs: &[(&str, &str)]| load(pairs).unwrap_err().to_string();

        let error = refused(&[("FOLDLINE__KAFKA__SECURITY__PROTOCOL", "SASL_SSL")]);
        assert!(
            error.contains("needs kafka.security.sasl.mechanism"),
            "{error}"
        );
        let error = refused(&[
            ("FOLDLINE__KAFKA__SECURITY__PROTOCOL", "SASL_SSL"),
            ("FOLDLINE__KAFKA__SECURITY__SASL__MECHANISM", "PLAIN"),
            ("FOLDLINE__KAFKA__SECURITY__SASL__USERNAME", "alice"),
        ]);
        assert!(
            error.contains("needs kafka.security.sasl.password"),
            "{error}"
        );
        let error = refused(&[
            ("FOLDLINE__KAFKA__SECURITY__PROTOCOL", "SASL_SSL"),
            ("FOLDLINE__KAFKA__SECURITY__SASL__MECHANISM", "GSSAPI"),
        ]);
        assert!(error.contains("mechanism"), "{error}");
        let error = refused(&[("FOLDLINE__KAFKA__SECURITY__PROTOCOL", "TLS1.3")]);
        assert!(error.contains("protocol"), "{error}");
        let error = refused(&[
            ("FOLDLINE__KAFKA__SECURITY__PROTOCOL", "SSL"),
            (
                "FOLDLINE__KAFKA__SECURITY__TLS__CA_LOCATION",
                "/nonexistent/ca.pem",
            ),
        ]);
        assert!(
            error.contains("ca_location /nonexistent/ca.pem does not exist"),
            "{error}"
        );
        let error = refused(&[
            ("FOLDLINE__KAFKA__SECURITY__PROTOCOL", "SSL"),
            (
                "FOLDLINE__KAFKA__SECURITY__TLS__CERTIFICATE_LOCATION",
                &certificate,
            ),
        ]);
        assert!(error.contains("needs a private key"), "{error}");
        let error = refused(&[
            ("FOLDLINE__KAFKA__SECURITY__PROTOCOL", "SSL"),
            ("FOLDLINE__KAFKA__SECURITY__TLS__KEY_LOCATION", &key),
        ]);
        assert!(error.contains("no certificate_location"), "{error}");
        let error = refused(&[
            ("FOLDLINE__KAFKA__SECURITY__PROTOCOL", "SSL"),
            ("FOLDLINE__KAFKA__SECURITY__TLS__KEY_PASSWORD", "x"),
        ]);
        assert!(error.contains("no private key"), "{error}");
        let error = refused(&[
            ("FOLDLINE__KAFKA__SECURITY__PROTOCOL", "SSL"),
            (
                "FOLDLINE__KAFKA__SECURITY__TLS__CERTIFICATE_LOCATION",
                &certificate,
            ),
            ("FOLDLINE__KAFKA__SECURITY__TLS__KEY_LOCATION", &key),
            (
                "FOLDLINE__KAFKA__SECURITY__TLS__KEY_PEM",
                "-----BEGIN PRIVATE KEY-----",
            ),
        ]);
        assert!(error.contains("not both"), "{error}");
        let error = refused(&[
            ("FOLDLINE__KAFKA__SECURITY__PROTOCOL", "PLAINTEXT"),
            ("FOLDLINE__KAFKA__SECURITY__SASL__USERNAME", "alice"),
        ]);
        assert!(error.contains("does not use SASL"), "{error}");
        let error = refused(&[
            ("FOLDLINE__KAFKA__SECURITY__PROTOCOL", "SASL_PLAINTEXT"),
            ("FOLDLINE__KAFKA__SECURITY__SASL__MECHANISM", "PLAIN"),
            ("FOLDLINE__KAFKA__SECURITY__SASL__USERNAME", "alice"),
            ("FOLDLINE__KAFKA__SECURITY__SASL__PASSWORD", "secret"),
            ("FOLDLINE__KAFKA__SECURITY__TLS__CA_LOCATION", &certificate),
        ]);
        assert!(error.contains("does not use TLS"), "{error}");
        let error = refused(&[
            ("FOLDLINE__KAFKA__SECURITY__PROTOCOL", "SSL"),
            ("FOLDLINE__KAFKA__PROPERTIES__SECURITY_PROTOCOL", "SASL_SSL"),
        ]);
        assert!(error.contains("sets security.protocol"), "{error}");
        // What kafka.security does not set stays the operator's.
        load(&[
            ("FOLDLINE__KAFKA__SECURITY__PROTOCOL", "SSL"),
            (
                "FOLDLINE__KAFKA__PROPERTIES__SSL_CIPHER_SUITES",
                "ECDHE-RSA-AES256-GCM-SHA384",
            ),
        ])
        .unwrap();
    }

    #[test]
    fn no_secret_reaches_debug_or_an_error() {
        let directory = tempfile::tempdir().unwrap();
        let certificate = pem_file(directory.path(), "client.pem");
        let config = load(&[
            ("FOLDLINE__KAFKA__SECURITY__PROTOCOL", "SASL_SSL"),
            (
                "FOLDLINE__KAFKA__SECURITY__SASL__MECHANISM",
                "SCRAM-SHA-256",
            ),
            ("FOLDLINE__KAFKA__SECURITY__SASL__USERNAME", "alice"),
            ("FOLDLINE__KAFKA__SECURITY__SASL__PASSWORD", "hunter2-sasl"),
            (
                "FOLDLINE__KAFKA__SECURITY__TLS__CERTIFICATE_LOCATION",
                &certificate,
            ),
            ("FOLDLINE__KAFKA__SECURITY__TLS__KEY_PEM", "hunter2-pem"),
            (
                "FOLDLINE__KAFKA__SECURITY__TLS__KEY_PASSWORD",
                "hunter2-key",
            ),
        ])
        .unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("Secret(***)"), "{printed}");
        // rdkafka's own Debug of the client configuration hides the
        // passwords (but not `ssl.key.pem`: never print a ClientConfig).
        let client = crate::kafka::reader_config(&config.kafka, "r");
        let printed = format!("{client:?}");
        assert!(!printed.contains("hunter2-sasl") && !printed.contains("hunter2-key"));
        // A refused configuration names the field, never the value.
        let error = load(&[
            ("FOLDLINE__KAFKA__SECURITY__PROTOCOL", "SASL_SSL"),
            ("FOLDLINE__KAFKA__SECURITY__SASL__PASSWORD", "hunter2-sasl"),
        ])
        .unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[tokio::test]
    async fn nothing_listening_is_a_transient_unreachable() {
        let mut kafka = KafkaConfig::default();
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        kafka.bootstrap_servers = format!("127.0.0.1:{port}");
        let error = verify_connection(&kafka, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(error.is_transient(), "{error}");
        assert!(error.to_string().contains("no kafka broker at"), "{error}");
    }
}
