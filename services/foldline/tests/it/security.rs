//! Kafka security for real, on the secured broker
//! (`foldline_testcontainers::secured`: SASL_SSL with SCRAM and PLAIN,
//! mutual TLS, KRaft's StandardAuthorizer with ACLs), shared by these tests.
//!
//! - The platform authenticated with SCRAM-SHA-512 over SASL_SSL serves a
//!   command end to end; a processor whose principal has no ACL on the
//!   commands topic stops with an error naming the topic and the refusal
//!   (it does not retry in a loop).
//! - A wrong password and an untrusted CA each stop start-up with an error
//!   naming the cause, and the password is never logged.
//! - Mutual TLS (with an encrypted client key), SCRAM-SHA-256 and PLAIN
//!   connect through the platform's own client configurations.

use std::time::Duration;

use foldline_platform::config::Config;
use foldline_platform::kafka::{producer_config, reader_config};
use foldline_platform::kafka_security::{verify_connection, KafkaConnectError};
use foldline_testcontainers::secured::{secured_broker, ALICE, MALLORY};
use foldline_testcontainers::{place_body, CommandOptions, Deadline, Deployment, SaslUser};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::support::{binary, spawn_platform};

/// A secured deployment whose roles connect as `user` with SCRAM-SHA-512.
fn scram_deployment(test_name: &str, user: SaslUser) -> Deployment {
    let secured = secured_broker().unwrap();
    Deployment::secured(binary(), test_name)
        .unwrap()
        .with_role_env(secured.sasl_env("SCRAM-SHA-512", user, &secured.pki().ca))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_over_sasl_ssl_serves_a_command_and_a_principal_without_acls_is_refused() {
    let deployment = scram_deployment("scram", ALICE);
    let _platform = spawn_platform(&deployment).await;
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
    assert_eq!(placed.status, 201, "{placed}");
    assert_eq!(placed.body["total"], 2500, "{placed}");
    let order_id = placed.str("id").expect("an order id");
    let fetched = api.order(order_id).await.unwrap();
    assert_eq!(fetched.status, 200, "{fetched}");
    // What the roles wrote is in the log (read by the harness's super user).
    let replay = deployment.replay().await.unwrap();
    assert_eq!(replay.admitted_count(), 1, "{:?}", replay.records);

    // Mallory authenticates, may join groups, but no ACL lets her at a
    // topic or a transactional id: the processor stops with the refusal,
    // it does not spin. With `kafka.transactions = auto` the refusal comes
    // first from `init_transactions`, at start-up.
    let mallory = [
        ("FOLDLINE__KAFKA__SECURITY__SASL__USERNAME", MALLORY.name),
        (
            "FOLDLINE__KAFKA__SECURITY__SASL__PASSWORD",
            MALLORY.password,
        ),
        ("FOLDLINE__KAFKA__CREATE_TOPICS", "false"),
    ];
    let mut refused = deployment
        .spawn_with("mallory", &["orders-processor"], "store-mallory", &mallory)
        .unwrap();
    let status = refused.wait_exit(Deadline::secs(60)).await.unwrap();
    assert!(!status.success(), "{}", refused.report(30));
    let log = refused.log_text();
    assert!(
        log.contains("cannot initialise kafka transactions")
            && log.contains("Transactional Id authorization failed")
            && log.lines().count() < 60,
        "{}",
        refused.report(60)
    );
    // In the idempotent mode it is the consumer that is refused the topic.
    let idempotent = [
        mallory.as_slice(),
        &[("FOLDLINE__KAFKA__TRANSACTIONS", "off")],
    ]
    .concat();
    let mut refused = deployment
        .spawn_with(
            "mallory-idempotent",
            &["orders-processor"],
            "store-mallory-idempotent",
            &idempotent,
        )
        .unwrap();
    let status = refused.wait_exit(Deadline::secs(60)).await.unwrap();
    assert!(!status.success(), "{}", refused.report(30));
    let log = refused.log_text();
    let commands = deployment.topic("orders.commands");
    assert!(
        log.contains(&format!("kafka refused access to topic {commands}"))
            && log.contains("authorization failed"),
        "{}",
        refused.report(30)
    );
    // One report, not a loop of retries.
    assert!(
        log.matches("consumer error").count() <= 1 && log.lines().count() < 60,
        "{}",
        refused.report(60)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_and_an_untrusted_ca_stop_start_up_naming_the_cause() {
    let secured = secured_broker().unwrap();
    let deployment = scram_deployment("refused", ALICE);
    let wrong_password = "not-alices-password-0";
    let untrusted = secured.pki().untrusted_ca.display().to_string();
    let mut wrong = deployment
        .spawn_with(
            "wrong-password",
            &["orders-processor"],
            "store-wrong",
            &[("FOLDLINE__KAFKA__SECURITY__SASL__PASSWORD", wrong_password)],
        )
        .unwrap();
    let mut untrusting = deployment
        .spawn_with(
            "untrusted-ca",
            &["orders-processor"],
            "store-untrusted",
            &[("FOLDLINE__KAFKA__SECURITY__TLS__CA_LOCATION", &untrusted)],
        )
        .unwrap();
    for (process, expected) in [
        (
            &mut wrong,
            [
                "kafka refused the credentials of user \"alice\" (SCRAM-SHA-512)",
                "Authentication failed",
            ],
        ),
        (
            &mut untrusting,
            [
                "the tls handshake with kafka failed",
                "certificate verify failed",
            ],
        ),
    ] {
        // Well within the probe's 10 s budget: the cause ends it early.
        let status = process.wait_exit(Deadline::secs(30)).await.unwrap();
        assert!(!status.success(), "{}", process.report(30));
        let log = process.log_text();
        for needle in expected {
            assert!(log.contains(needle), "{needle:?}:\n{}", process.report(30));
        }
        assert!(!log.contains(wrong_password), "{}", process.report(30));
        assert!(!log.contains(ALICE.password), "{}", process.report(30));
    }
}

/// A configuration as the binary would load it from `env`.
fn config_of(env: Vec<(String, String)>) -> Config {
    Config::load(None, env).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_scram_sha_256_and_plain_connect_and_a_missing_client_certificate_does_not() {
    let secured = secured_broker().unwrap();
    let ca = &secured.pki().ca;
    for mechanism in ["SCRAM-SHA-256", "PLAIN"] {
        let config = config_of(secured.sasl_env(mechanism, ALICE, ca));
        verify_connection(&config.kafka, Duration::from_secs(20))
            .await
            .unwrap_or_else(|error| panic!("{mechanism}: {error}"));
    }

    // Mutual TLS, through the platform's producer and reader configs: a
    // record goes in and comes back.
    let topic = format!("it{}-mtls", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let config = config_of(secured.mtls_env());
    verify_connection(&config.kafka, Duration::from_secs(20))
        .await
        .unwrap();
    foldline_platform::kafka::create_topics(
        &config.kafka,
        &[foldline_contracts::topology::TopicSpec {
            name: topic.clone(),
            partitions: 1,
            configs: Default::default(),
        }],
    )
    .await
    .unwrap();
    let producer: FutureProducer = producer_config(&config.kafka, "it-mtls").create().unwrap();
    producer
        .send(
            FutureRecord::<str, str>::to(&topic)
                .key("k")
                .payload("over mutual tls"),
            Duration::from_secs(20),
        )
        .await
        .map_err(|(error, _)| error)
        .unwrap();
    let reader: StreamConsumer = reader_config(&config.kafka, "it-mtls").create().unwrap();
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset(&topic, 0, Offset::Beginning)
        .unwrap();
    reader.assign(&partitions).unwrap();
    let record = tokio::time::timeout(Duration::from_secs(30), reader.recv())
        .await
        .expect("the record comes back within 30 s")
        .unwrap();
    assert_eq!(record.payload(), Some(&b"over mutual tls"[..]));

    // The same listener without a client certificate: refused, and said so.
    let mut config = config.clone();
    config.kafka.security.tls.certificate_location = None;
    config.kafka.security.tls.key_location = None;
    config.kafka.security.tls.key_password = None;
    let error = verify_connection(&config.kafka, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, KafkaConnectError::Tls { reason } if reason.contains("bad certificate")),
        "expected a tls failure naming the certificate, got {error}"
    );
}
