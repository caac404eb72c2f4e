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
    FoldlineProcess,
};
use serde_json::Value;

use crate::support::binary;

const USER: &str = "foldline";
const PASSWORD: &str = "registry-secret-0";
const WRONG_PASSWORD: &str = "not-the-registry-secret";
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

fn https_client(ca: &std::path::Path) -> reqwest_registry::Client {
    let ca = std::fs::read(ca).unwrap();
    reqwest_registry::Client::builder()
        .tls_certs_only(reqwest_registry::Certificate::from_pem_bundle(&ca).unwrap())
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .unwrap()
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
    let (ca, untrusted_ca) = (
        pki.ca.display().to_string(),
        pki.untrusted_ca.display().to_string(),
    );
    let (certificate, key) = (
        pki.certificate.display().to_string(),
        pki.key.display().to_string(),
    );
    let client: Vec<(&str, &str)> = vec![
        ("FOLDLINE__REGISTRY__URL", &url),
        ("FOLDLINE__REGISTRY__USERNAME", USER),
        ("FOLDLINE__REGISTRY__PASSWORD", PASSWORD),
        ("FOLDLINE__REGISTRY__CA_FILE", &ca),
    ];
    // The registry role alone; its own client (it registers the declared
    // schemas too) reaches it through the same TLS and credentials.
    let server = [
        client.as_slice(),
        &[
            ("FOLDLINE__REGISTRY_SERVER__USERNAME", USER),
            ("FOLDLINE__REGISTRY_SERVER__PASSWORD", PASSWORD),
            ("FOLDLINE__REGISTRY_SERVER__CERTIFICATE_FILE", &certificate),
            ("FOLDLINE__REGISTRY_SERVER__KEY_FILE", &key),
        ],
    ]
    .concat();
    let _registry = deployment
        .spawn_with("registry", &["registry"], "store-registry", &server)
        .unwrap();
    let http = https_client(&pki.ca);
    let subjects_url = format!("{url}/subjects");
    let events_subject = format!(
        "{}-foldline.orders.OrderPlaced",
        deployment.topic("orders.events")
    );
    poll_until(
        "the registry answers over tls",
        Deadline::secs(90),
        || async {
            match http
                .get(&subjects_url)
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
    let subjects: Vec<String> = http
        .get(&subjects_url)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
