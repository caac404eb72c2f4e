//! The external-registry path for real: the registry role as its own
//! `foldline run registry` process with basic auth and TLS on (a PKI made
//! with the `openssl` CLI), and the platform's roles in another process
//! pointed at it by configuration only.
//!
//! - A command placed through the gateway settles end to end; every subject
//!   is registered under TopicRecordNameStrategy names; a request without
//!   credentials, or with a wrong password, is answered 401 with a Basic
//!   challenge.
//! - A wrong password, a CA that did not sign the registry's certificate,
//!   an unreachable registry and a schema the registry refuses each stop
//!   start-up with an error naming the cause (never the password).

use std::time::Duration;

use foldline_testcontainers::{
    free_port, place_body, poll_until, server_pki, CommandOptions, Deadline, Deployment,
    FoldlineProcess, ServerPki,
};
use serde_json::Value;

use crate::scylla::as_pairs;
use crate::support::binary;

const USER: &str = "foldline";
const PASSWORD: &str = "registry-secret-0";
const WRONG_PASSWORD: &str = "not-the-registry-secret";
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

pub(crate) fn https_client(ca: &std::path::Path) -> reqwest_registry::Client {
    let ca = std::fs::read(ca).unwrap();
    reqwest_registry::Client::builder()
        .tls_certs_only(reqwest_registry::Certificate::from_pem_bundle(&ca).unwrap())
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .unwrap()
}

/// The registry role behind basic auth and TLS, and what its clients set.
pub(crate) struct SecuredRegistry {
    /// `[registry]` of every process that talks to it.
    pub(crate) client: Vec<(String, String)>,
    /// `[registry_server]` on top of `client`: the registry role's process.
    pub(crate) server: Vec<(String, String)>,
}

impl SecuredRegistry {
    pub(crate) fn new(deployment: &Deployment, pki: &ServerPki) -> SecuredRegistry {
        let url = deployment.registry_url().replacen("http://", "https://", 1);
        let owned = |pairs: &[(&str, String)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(key, value)| ((*key).to_owned(), value.clone()))
                .collect()
        };
        let client = owned(&[
            ("FOLDLINE__REGISTRY__URL", url),
            ("FOLDLINE__REGISTRY__USERNAME", USER.to_owned()),
            ("FOLDLINE__REGISTRY__PASSWORD", PASSWORD.to_owned()),
            ("FOLDLINE__REGISTRY__CA_FILE", pki.ca.display().to_string()),
        ]);
        let mut server = client.clone();
        server.extend(owned(&[
            ("FOLDLINE__REGISTRY_SERVER__USERNAME", USER.to_owned()),
            ("FOLDLINE__REGISTRY_SERVER__PASSWORD", PASSWORD.to_owned()),
            (
                "FOLDLINE__REGISTRY_SERVER__CERTIFICATE_FILE",
                pki.certificate.display().to_string(),
            ),
            (
                "FOLDLINE__REGISTRY_SERVER__KEY_FILE",
                pki.key.display().to_string(),
            ),
        ]));
        SecuredRegistry { client, server }
    }
}

/// Polls the registry's `subjects` over TLS, with the credentials, until it
/// answers 200.
pub(crate) async fn wait_answers(http: &reqwest_registry::Client, subjects_url: &str) {
    poll_until(
        "the registry answers over tls",
        Deadline::secs(90),
        || async {
            match http
                .get(subjects_url)
                .basic_auth(USER, Some(PASSWORD))
                .send()
                .await
            {
                Ok(response) if response.status() == 200 => Ok(Some(())),
                Ok(response) => Err(format!("http {}", response.status())),
                Err(error) => Err(error.to_string()),
            }
        },
    )
    .await
    .unwrap();
}

/// The registry's subjects, read over TLS with the credentials.
pub(crate) async fn subjects(http: &reqwest_registry::Client, subjects_url: &str) -> Vec<String> {
    http.get(subjects_url)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .expect("the registry answers")
        .json()
        .await
        .expect("subjects are a json list")
}

/// Waits for `process` to stop and returns its log, which must say
/// everything in `expected` and never `secret`.
async fn refused_start(mut process: FoldlineProcess, expected: &[&str], secret: &str) {
    let status = process.wait_exit(Deadline::secs(90)).await.unwrap();
    assert!(!status.success(), "{}", process.report(40));
    let log = process.log_text();
    for needle in expected {
        assert!(
            log.contains(needle),
            "{needle:?} missing:\n{}",
            process.report(40)
        );
    }
    assert!(!log.contains(secret), "{}", process.report(40));
    // One clear report, not a loop of retries.
    assert!(log.lines().count() < 80, "{}", process.report(80));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_runs_against_a_registry_process_with_basic_auth_and_tls() {
    let deployment = Deployment::new(binary(), "registry-tls").unwrap();
    let pki = server_pki(&deployment.dir().join("pki")).unwrap();
    let url = deployment.registry_url().replacen("http://", "https://", 1);
    let untrusted_ca = pki.untrusted_ca.display().to_string();
    let secured = SecuredRegistry::new(&deployment, &pki);
    let client = as_pairs(&secured.client);
    let server = as_pairs(&secured.server);
    // The registry role alone; its own client (it registers the declared
    // schemas too) reaches it through the same TLS and credentials.
    let _registry = deployment
        .spawn_with("registry", &["registry"], "store-registry", &server)
        .unwrap();
    let http = https_client(&pki.ca);
    let subjects_url = format!("{url}/subjects");
    let events_subject = format!(
        "{}-foldline.orders.OrderPlaced",
        deployment.topic("orders.events")
    );
    wait_answers(&http, &subjects_url).await;

    // Confluent's refusal: 401 with a Basic challenge, with no or wrong
    // credentials, on every route.
    for password in [None, Some(WRONG_PASSWORD)] {
        let mut request = http.get(&subjects_url);
        if let Some(password) = password {
            request = request.basic_auth(USER, Some(password));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{password:?}");
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.starts_with("Basic realm="), "{challenge}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error_code"], 401, "{body}");
    }

    // The platform's roles in their own process, pointed at it by config.
    let platform = deployment
        .spawn_ready_with(
            "platform",
            &["gateway", "orders"],
            "store",
            &client,
            Deadline::secs(90),
        )
        .await
        .unwrap();
    let api = deployment.api().unwrap();
    let placed = api
        .place_order(
            &place_body(
                &uuid::Uuid::new_v4().to_string(),
                "EUR",
                &[("SKU-1", 2, 1250)],
            ),
            &CommandOptions::waiting(20),
        )
        .await
        .unwrap();
    assert_eq!(placed.status, 201, "{placed}\n{}", platform.report(40));
    let fetched = api.order(placed.str("id").unwrap()).await.unwrap();
    assert_eq!(fetched.status, 200, "{fetched}");
    let subjects = subjects(&http, &subjects_url).await;
    assert!(subjects.contains(&events_subject), "{subjects:?}");

    // A schema the registry refuses: an earlier, incompatible version of a
    // subject of another prefix's topic.
    let refused_prefix = format!("{}refused-", deployment.prefix());
    let refused_subject = format!("{refused_prefix}orders.events-foldline.orders.OrderPlaced");
    let incompatible = r#"{"type":"record","name":"OrderPlaced","namespace":"foldline.orders","fields":[{"name":"unrelated","type":"int"}]}"#;
    let registered = http
        .post(format!("{url}/subjects/{refused_subject}/versions"))
        .basic_auth(USER, Some(PASSWORD))
        .header("content-type", CONTENT_TYPE)
        .body(serde_json::json!({ "schema": incompatible }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 200);

    // Each refusal in its own process, all at once.
    let unreachable = format!("https://127.0.0.1:{}", free_port().unwrap());
    let spawn = |name: &str, overrides: &[(&str, &str)]| {
        let env = [client.as_slice(), overrides].concat();
        deployment
            .spawn_with(name, &["orders-processor"], &format!("store-{name}"), &env)
            .unwrap()
    };
    let wrong_password = spawn(
        "wrong-password",
        &[("FOLDLINE__REGISTRY__PASSWORD", WRONG_PASSWORD)],
    );
    let unknown_ca = spawn(
        "unknown-ca",
        &[("FOLDLINE__REGISTRY__CA_FILE", &untrusted_ca)],
    );
    let down = spawn(
        "unreachable",
        &[
            ("FOLDLINE__REGISTRY__URL", &unreachable),
            ("FOLDLINE__REGISTRY__STARTUP_TIMEOUT_MS", "2000"),
        ],
    );
    let refused = spawn(
        "refused-schema",
        &[
            ("FOLDLINE__KAFKA__TOPIC_PREFIX", &refused_prefix),
            ("FOLDLINE__KAFKA__CREATE_TOPICS", "false"),
        ],
    );
    refused_start(
        wrong_password,
        &[&format!(
            "the schema registry at {url} refused the credentials (http 401)"
        )],
        WRONG_PASSWORD,
    )
    .await;
    refused_start(
        unknown_ca,
        &[
            &format!("the tls handshake with the schema registry at {url} failed"),
            "certificate verify failed",
        ],
        PASSWORD,
    )
    .await;
    refused_start(
        down,
        &[&format!(
            "the schema registry at {unreachable} did not answer within 2s"
        )],
        PASSWORD,
    )
    .await;
    refused_start(
        refused,
        &[
            &format!("the schema registry refused schema {refused_subject} (http 409)"),
            "incompatible with an earlier schema",
        ],
        PASSWORD,
    )
    .await;
}
