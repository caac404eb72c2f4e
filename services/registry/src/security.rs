//! Basic auth and TLS for the REST API, as Confluent's registry does them:
//! a request without valid credentials gets 401 with `WWW-Authenticate:
//! Basic` before any route sees it; TLS is terminated here, on OpenSSL
//! (tokio-native-tls), from a PEM certificate chain and PKCS#8 key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use foldline_platform::config::{RegistryServerConfig, Secret};
use subtle::ConstantTimeEq as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_native_tls::native_tls;
use tokio_native_tls::{TlsAcceptor, TlsStream};
use tracing::{debug, info};

use super::http::CONTENT_TYPE;

/// What `WWW-Authenticate` names.
const REALM: &str = "Basic realm=\"foldline-registry\", charset=\"UTF-8\"";

/// A client that opened a connection gets this long to finish its TLS
/// handshake, so a silent one cannot hold a handshake slot for good.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the server to take them.
const ACCEPT_BACKLOG: usize = 64;

/// Why the registry's basic auth or TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot read registry_server.{key} {path}: {source}")]
    ReadFile {
        key: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("registry_server.certificate_file and registry_server.key_file are not a pem certificate chain and an unencrypted pkcs#8 pem key (BEGIN PRIVATE KEY; convert with openssl pkcs8 -topk8 -nocrypt): {0}")]
    Identity(String),
    #[error("cannot set up tls for the registry: {0}")]
    Tls(String),
}

/// How the REST API is protected: who may call it, and whether over TLS.
#[derive(Clone, Default)]
pub struct ServerSecurity {
    users: Option<Arc<BTreeMap<String, Secret>>>,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for ServerSecurity {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ServerSecurity")
            .field(
                "users",
                &self
                    .users
                    .as_ref()
                    .map(|users| users.keys().collect::<Vec<_>>()),
            )
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl ServerSecurity {
    /// From `[registry_server]` (validated by `Config::load`): basic auth
    /// when any user is configured, TLS when the certificate and key are.
    pub fn from_config(config: &RegistryServerConfig) -> Result<ServerSecurity, SecurityError> {
        let users = config.credentials();
        let tls = match (&config.certificate_file, &config.key_file) {
            (Some(certificate), Some(key)) => Some(acceptor(certificate, key)?),
            _ => None,
        };
        Ok(ServerSecurity {
            users: (!users.is_empty()).then(|| Arc::new(users)),
            tls,
        })
    }

    pub fn requires_auth(&self) -> bool {
        self.users.is_some()
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `router` behind basic auth, when on.
    pub(crate) fn protect(&self, router: axum::Router) -> axum::Router {
        match &self.users {
            Some(users) => router.layer(axum::middleware::from_fn_with_state(
                Arc::clone(users),
                basic_auth,
            )),
            None => router,
        }
    }

    pub(crate) fn acceptor(&self) -> Option<TlsAcceptor> {
        self.tls.clone()
    }
}

fn acceptor(certificate: &Path, key: &Path) -> Result<TlsAcceptor, SecurityError> {
    let read = |key_name: &'static str, path: &Path| {
        std::fs::read(path).map_err(|source| SecurityError::ReadFile {
            key: key_name,
            path: path.display().to_string(),
            source,
        })
    };
    let identity = native_tls::Identity::from_pkcs8(
        &read("certificate_file", certificate)?,
        &read("key_file", key)?,
    )
    .map_err(|error| SecurityError::Identity(error.to_string()))?;
    let acceptor = native_tls::TlsAcceptor::builder(identity)
        .min_protocol_version(Some(native_tls::Protocol::Tlsv12))
        .build()
        .map_err(|error| SecurityError::Tls(error.to_string()))?;
    Ok(TlsAcceptor::from(acceptor))
}

async fn basic_auth(
    State(users): State<Arc<BTreeMap<String, Secret>>>,
    request: Request,
    next: Next,
) -> Response {
    match authenticate(&users, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            match refusal {
                Refusal::NoCredentials => debug!("registry request without credentials refused"),
                Refusal::Malformed => {
                    info!("registry request with malformed basic credentials refused")
                }
                Refusal::Wrong(user) => {
                    info!(
                        user,
                        "registry request refused: unknown user or wrong password"
                    )
                }
            }
            unauthorized()
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    NoCredentials,
    Malformed,
    /// The user name the client gave (never the password).
    Wrong(String),
}

fn authenticate(users: &BTreeMap<String, Secret>, headers: &HeaderMap) -> Result<(), Refusal> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(Refusal::NoCredentials)?
        .to_str()
        .map_err(|_| Refusal::Malformed)?;
    let (scheme, encoded) = value.split_once(' ').ok_or(Refusal::Malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(Refusal::NoCredentials);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| Refusal::Malformed)?;
    let decoded = String::from_utf8(decoded).map_err(|_| Refusal::Malformed)?;
    let (user, password) = decoded.split_once(':').ok_or(Refusal::Malformed)?;
    let matches = users.get(user).is_some_and(|expected| {
        bool::from(expected.expose().as_bytes().ct_eq(password.as_bytes()))
    });
    match matches {
        true => Ok(()),
        false => Err(Refusal::Wrong(user.to_owned())),
    }
}

/// Confluent's answer to missing or wrong credentials.
fn unauthorized() -> Response {
    let body = serde_json::json!({"error_code": 401, "message": "Unauthorized"});
    let mut response = (StatusCode::UNAUTHORIZED, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// A listener whose connections are TLS-handshaken off the accept path:
/// each handshake runs in its own task (bounded by [`HANDSHAKE_TIMEOUT`]),
/// so one slow client delays no other.
#[derive(Debug)]
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: JoinHandle<()>,
}

impl TlsListener {
    pub(crate) fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (handshaken, ready) = mpsc::channel(ACCEPT_BACKLOG);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off.
                        debug!(%error, "registry accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let handshaken = handshaken.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let _ = handshaken.send((stream, peer)).await;
                        }
                        Ok(Err(error)) => {
                            debug!(%peer, %error, "tls handshake with a registry client failed")
                        }
                        Err(_) => debug!(%peer, "tls handshake with a registry client timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> BTreeMap<String, Secret> {
        BTreeMap::from([("alice".to_owned(), Secret::new("s3cret:with:colons"))])
    }

    fn basic(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn encoded(pair: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }

    #[test]
    fn the_right_pair_passes_and_everything_else_is_refused() {
        let users = users();
        assert_eq!(
            authenticate(&users, &basic(&encoded("alice:s3cret:with:colons"))),
            Ok(())
        );
        assert_eq!(
            authenticate(&users, &basic(&encoded("alice:wrong"))),
            Err(Refusal::Wrong("alice".to_owned()))
        );
        assert_eq!(
            authenticate(&users, &basic(&encoded("mallory:s3cret:with:colons"))),
            Err(Refusal::Wrong("mallory".to_owned()))
        );
        assert_eq!(
            authenticate(&users, &HeaderMap::new()),
            Err(Refusal::NoCredentials)
        );
        assert_eq!(
            authenticate(&users, &basic("Bearer abc")),
            Err(Refusal::NoCredentials)
        );
        for garbage in ["Basic", "Basic !!!", &encoded("no-colon")] {
            assert_eq!(
                authenticate(&users, &basic(garbage)),
                Err(Refusal::Malformed),
                "{garbage}"
            );
        }
    }

    #[test]
    fn a_refusal_is_confluents_401_with_a_basic_challenge() {
        let response = unauthorized();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], REALM);
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
    }

    #[test]
    fn unusable_tls_files_are_refused_naming_the_keys() {
        let directory = tempfile::tempdir().unwrap();
        let certificate = directory.path().join("server.pem");
        let key = directory.path().join("server.key");
        std::fs::write(&certificate, "not a certificate").unwrap();
        std::fs::write(
            &key,
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap();
        let config = RegistryServerConfig {
            certificate_file: Some(certificate.clone()),
            key_file: Some(key),
            ..RegistryServerConfig::default()
        };
        let error = ServerSecurity::from_config(&config)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("registry_server.certificate_file and registry_server.key_file")
                && error.contains("pkcs#8"),
            "{error}"
        );
        let config = RegistryServerConfig {
            certificate_file: Some(certificate),
            key_file: Some(directory.path().join("missing.key")),
            ..RegistryServerConfig::default()
        };
        let error = ServerSecurity::from_config(&config)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("cannot read registry_server.key_file"),
            "{error}"
        );
    }

    #[test]
    fn the_debug_form_names_users_but_never_passwords() {
        let security = ServerSecurity {
            users: Some(Arc::new(users())),
            tls: None,
        };
        let printed = format!("{security:?}");
        assert!(
            printed.contains("alice") && !printed.contains("s3cret"),
            "{printed}"
        );
    }
}
