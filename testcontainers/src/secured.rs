//! A secured Apache Kafka for the security tests: one per test process,
//! started on first use beside the plain shared broker.
//!
//! - A test PKI made with the `openssl` CLI in the broker's directory: a CA,
//!   the broker's certificate (for 127.0.0.1 and localhost), a client
//!   certificate for mutual TLS with an encrypted key, and a second,
//!   untrusted CA.
//! - Listeners: `SASL_SSL` (SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN),
//!   `SSL` with `ssl.client.auth=required` (mutual TLS), and the harness's
//!   own `PLAINTEXT` listener, whose anonymous principal is the super user
//!   the harness's tools (replay, diagnostics, topic deletion) act as.
//! - SCRAM users created by the storage tool (`format --add-scram`), PLAIN
//!   users in the listener's JAAS line.
//! - KRaft's `StandardAuthorizer`, with ACLs created through the Admin API
//!   (`testcontainers/kafka/Acls.java`, run in Java's source-file mode):
//!   [`ALICE`] and the mutual-TLS principal may use every topic under the
//!   test prefix `it`; [`MALLORY`] may join groups but use no topic.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::broker::{jvm_command, run_to_end, BrokerSetup, KafkaBroker};
use crate::ports::free_port;
use crate::wait::Deadline;

/// A SASL user of the secured broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaslUser {
    pub name: &'static str,
    pub password: &'static str,
}

/// The platform's principal: SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN, with
/// ACLs on every topic whose name starts with `it` (every test prefix).
pub const ALICE: SaslUser = SaslUser {
    name: "alice",
    password: "alice-secret-0",
};

/// A principal the broker authenticates (SCRAM-SHA-512) but whom no ACL
/// lets at a topic; it may join consumer groups.
pub const MALLORY: SaslUser = SaslUser {
    name: "mallory",
    password: "mallory-secret-0",
};

/// The subject of the mutual-TLS client certificate, i.e. its principal
/// `User:CN=foldline-mtls-client`.
pub const MTLS_CLIENT_CN: &str = "foldline-mtls-client";

/// The password of the client certificate's encrypted private key.
pub const CLIENT_KEY_PASSWORD: &str = "client-key-pass-0";

/// The files of the test PKI.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA that signed the broker's and the client's certificates.
    pub ca: PathBuf,
    /// A CA that signed nothing the broker presents.
    pub untrusted_ca: PathBuf,
    pub client_certificate: PathBuf,
    /// Encrypted with [`CLIENT_KEY_PASSWORD`].
    pub client_key: PathBuf,
}

/// The secured broker and what a client needs to reach it.
#[derive(Debug)]
pub struct SecuredKafka {
    broker: KafkaBroker,
    sasl_ssl: String,
    mtls: String,
    pki: TestPki,
    started_in: Duration,
}

static SECURED: OnceLock<Result<SecuredKafka, String>> = OnceLock::new();

/// The test process's secured broker, started on first use.
pub fn secured_broker() -> anyhow::Result<&'static SecuredKafka> {
    match SECURED.get_or_init(|| SecuredKafka::start().map_err(|error| format!("{error:#}"))) {
        Ok(kafka) => Ok(kafka),
        Err(error) => Err(anyhow::anyhow!(
            "the secured kafka broker did not start: {error}"
        )),
    }
}

impl SecuredKafka {
    /// The broker; its `bootstrap_servers` is the harness's PLAINTEXT
    /// listener (super user), not one a role under test should use.
    pub fn broker(&'static self) -> &'static KafkaBroker {
        &self.broker
    }

    /// `host:port` of the SASL_SSL listener.
    pub fn sasl_ssl_bootstrap(&self) -> &str {
        &self.sasl_ssl
    }

    /// `host:port` of the SSL listener that requires a client certificate.
    pub fn mtls_bootstrap(&self) -> &str {
        &self.mtls
    }

    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    /// From generating the PKI to the ACLs in place.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The environment of a role connecting over SASL_SSL as `user` with
    /// `mechanism`, trusting `ca`.
    pub fn sasl_env(&self, mechanism: &str, user: SaslUser, ca: &Path) -> Vec<(String, String)> {
        [
            ("FOLDLINE__KAFKA__BOOTSTRAP_SERVERS", self.sasl_ssl.clone()),
            ("FOLDLINE__KAFKA__SECURITY__PROTOCOL", "SASL_SSL".to_owned()),
            (
                "FOLDLINE__KAFKA__SECURITY__SASL__MECHANISM",
                mechanism.to_owned(),
            ),
            (
                "FOLDLINE__KAFKA__SECURITY__SASL__USERNAME",
                user.name.to_owned(),
            ),
            (
                "FOLDLINE__KAFKA__SECURITY__SASL__PASSWORD",
                user.password.to_owned(),
            ),
            (
                "FOLDLINE__KAFKA__SECURITY__TLS__CA_LOCATION",
                ca.display().to_string(),
            ),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
    }

    /// The environment of a role connecting with mutual TLS.
    pub fn mtls_env(&self) -> Vec<(String, String)> {
        [
            ("FOLDLINE__KAFKA__BOOTSTRAP_SERVERS", self.mtls.clone()),
            ("FOLDLINE__KAFKA__SECURITY__PROTOCOL", "SSL".to_owned()),
            (
                "FOLDLINE__KAFKA__SECURITY__TLS__CA_LOCATION",
                self.pki.ca.display().to_string(),
            ),
            (
                "FOLDLINE__KAFKA__SECURITY__TLS__CERTIFICATE_LOCATION",
                self.pki.client_certificate.display().to_string(),
            ),
            (
                "FOLDLINE__KAFKA__SECURITY__TLS__KEY_LOCATION",
                self.pki.client_key.display().to_string(),
            ),
            (
                "FOLDLINE__KAFKA__SECURITY__TLS__KEY_PASSWORD",
                CLIENT_KEY_PASSWORD.to_owned(),
            ),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
    }

    fn start() -> anyhow::Result<SecuredKafka> {
        let began = Instant::now();
        let sasl_port = free_port()?;
        let mtls_port = free_port()?;
        let mut pki = None;
        let broker = KafkaBroker::start_with(|directory| {
            let made = make_pki(&directory.join("pki"))?;
            let setup = secured_setup(sasl_port, mtls_port, &made);
            pki = Some(made);
            Ok(setup)
        })?;
        let pki = pki.context("the broker set-up made no pki")?;
        create_acls(&broker)?;
        let secured = SecuredKafka {
            broker,
            sasl_ssl: format!("127.0.0.1:{sasl_port}"),
            mtls: format!("127.0.0.1:{mtls_port}"),
            pki: pki.public,
            started_in: began.elapsed(),
        };
        eprintln!(
            "secured kafka: SASL_SSL on {}, mutual TLS on {}, ready with its ACLs after {:?}",
            secured.sasl_ssl, secured.mtls, secured.started_in
        );
        Ok(secured)
    }
}

/// The PKI's files, including those only the broker reads.
#[derive(Debug)]
struct MadePki {
    public: TestPki,
    broker_keystore: PathBuf,
}

fn secured_setup(sasl_port: u16, mtls_port: u16, pki: &MadePki) -> BrokerSetup {
    let keystore = pki.broker_keystore.display();
    let truststore = pki.public.ca.display();
    let (alice, password) = (ALICE.name, ALICE.password);
    let properties = format!(
        "\
# Security (testcontainers/src/secured.rs)
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_{alice}=\"{password}\";
listener.name.ssl.ssl.client.auth=required
ssl.keystore.type=PEM
ssl.keystore.location={keystore}
ssl.truststore.type=PEM
ssl.truststore.location={truststore}
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:ANONYMOUS
"
    );
    let scram = |mechanism: &str, user: SaslUser| {
        [
            "--add-scram".to_owned(),
            format!(
                "{mechanism}=[name={},password={}]",
                user.name, user.password
            ),
        ]
    };
    let format_args = [
        scram("SCRAM-SHA-512", ALICE),
        scram("SCRAM-SHA-256", ALICE),
        scram("SCRAM-SHA-512", MALLORY),
    ]
    .concat();
    BrokerSetup {
        listeners: vec![("SASL_SSL", sasl_port), ("SSL", mtls_port)],
        properties,
        format_args,
    }
}

/// Makes the CA, broker, client and untrusted-CA files in `directory`.
fn make_pki(directory: &Path) -> anyhow::Result<MadePki> {
    std::fs::create_dir_all(directory)
        .with_context(|| format!("create {}", directory.display()))?;
    let openssl = |args: &[&str]| -> anyhow::Result<()> {
        let mut command = Command::new("openssl");
        command.args(args).current_dir(directory);
        let log = directory.join("openssl.log");
        run_to_end(command, &log, Deadline::secs(30))
            .with_context(|| format!("run openssl {}", args.join(" ")))
    };
    let write = |name: &str, text: &str| -> anyhow::Result<()> {
        std::fs::write(directory.join(name), text)
            .with_context(|| format!("write {name} in {}", directory.display()))
    };
    for (key, certificate, subject) in [
        ("ca.key", "ca.pem", "/CN=foldline-test-ca"),
        (
            "untrusted-ca.key",
            "untrusted-ca.pem",
            "/CN=foldline-untrusted-ca",
        ),
    ] {
        crate::tls::make_ca(directory, key, certificate, subject)?;
    }
    // librdkafka checks the dialled host with OpenSSL's host check, which
    // matches an IP literal only against DNS names: hence DNS:127.0.0.1.
    write(
        "broker.ext",
        "subjectAltName=IP:127.0.0.1,DNS:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )?;
    write("client.ext", "extendedKeyUsage=clientAuth\n")?;
    let client_subject = format!("/CN={MTLS_CLIENT_CN}");
    for (name, subject) in [
        ("broker", "/CN=localhost"),
        ("client", client_subject.as_str()),
    ] {
        let (key, request, certificate, extensions) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        openssl(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &request, "-subj",
            subject,
        ])?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &request,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3",
            "-out",
            &certificate,
            "-extfile",
            &extensions,
        ])?;
    }
    let password = format!("pass:{CLIENT_KEY_PASSWORD}");
    openssl(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-in",
        "client.key",
        "-out",
        "client-encrypted.key",
        "-passout",
        &password,
    ])?;
    // Kafka's PEM key store: the (unencrypted PKCS#8) key and the chain.
    let read = |name: &str| {
        std::fs::read_to_string(directory.join(name))
            .with_context(|| format!("read {name} in {}", directory.display()))
    };
    let keystore = format!("{}{}", read("broker.key")?, read("broker.pem")?);
    write("broker-keystore.pem", &keystore)?;
    Ok(MadePki {
        public: TestPki {
            ca: directory.join("ca.pem"),
            untrusted_ca: directory.join("untrusted-ca.pem"),
            client_certificate: directory.join("client.pem"),
            client_key: directory.join("client-encrypted.key"),
        },
        broker_keystore: directory.join("broker-keystore.pem"),
    })
}

/// ALICE and the mutual-TLS principal: everything on topics under `it`,
/// every group and transactional id, idempotent writes. MALLORY: groups
/// only (refused a transactional id, and every topic).
fn create_acls(broker: &KafkaBroker) -> anyhow::Result<()> {
    let source = broker.directory().join("Acls.java");
    std::fs::write(&source, include_str!("../kafka/Acls.java"))
        .with_context(|| format!("write {}", source.display()))?;
    let alice = format!("User:{}", ALICE.name);
    let mtls = format!("User:CN={MTLS_CLIENT_CN}");
    let mallory = format!("User:{}", MALLORY.name);
    let mut args: Vec<String> = vec![broker.bootstrap_servers().to_owned()];
    for principal in [&alice, &mtls] {
        for [resource, pattern, name, operation] in [
            ["TOPIC", "PREFIXED", "it", "ALL"],
            ["GROUP", "LITERAL", "*", "ALL"],
            ["TRANSACTIONAL_ID", "LITERAL", "*", "ALL"],
            ["CLUSTER", "LITERAL", "kafka-cluster", "IDEMPOTENT_WRITE"],
        ] {
            args.push(principal.clone());
            args.extend([resource, pattern, name, operation].map(str::to_owned));
        }
    }
    args.push(mallory);
    args.extend(["GROUP", "LITERAL", "*", "ALL"].map(str::to_owned));
    let mut command = jvm_command(broker.directory(), source.to_string_lossy().as_ref())?;
    command.args(&args);
    run_to_end(
        command,
        &broker.directory().join("acls.log"),
        Deadline::secs(60),
    )
    .context("create the secured broker's acls")
}
