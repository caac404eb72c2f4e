//! The events topic replaced under a processor's snapshots (deleted and
//! created again, as after a botched migration): the snapshots describe a
//! history the log no longer holds. The processor must refuse to fold,
//! exit non-zero and say why, instead of deciding on a partial history.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use foldline_testcontainers::wait::POLL_INTERVAL;
use foldline_testcontainers::{Deadline, Deployment};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use crate::support::{
    binary, retry_until_acknowledged, send_all, spawn_gateway, spawn_processor, wait_settled, Sent,
};

/// Deletes `topic` and creates it again, empty, with `partitions`.
async fn replace_topic(bootstrap_servers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .create()
        .expect("an admin client");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let deleted = admin
        .delete_topics(&[topic], &options)
        .await
        .expect("delete topics");
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    let deadline = Deadline::secs(30);
    loop {
        let created = admin
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &options,
            )
            .await
            .expect("create topics");
        if created.iter().all(Result::is_ok) {
            return;
        }
        // The deletion may still be settling.
        assert!(
            !deadline.passed(),
            "cannot create {topic} again: {created:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_whose_log_was_replaced_refuses_to_fold() {
    // Deleting a topic on tansu 0.6.0 makes other topics vanish from its
    // metadata: this test gets a broker of its own.
    let deployment = Deployment::isolated(binary(), "replaced").unwrap();
    let prefix = deployment.prefix().to_owned();
    let mut gateway = spawn_gateway(&deployment).await;
    let mut processor = spawn_processor(&deployment, "processor", "store-processor");
    let api = deployment.api().unwrap();
    let customer = uuid::Uuid::new_v4().to_string();

    // Enough placements that every partition snapshots (every 5 commands).
    let places: Vec<Sent> = (0..60)
        .map(|index| Sent::place(&prefix, index, &customer))
        .collect();
    let mut placed = send_all(&api, places, Arc::new(AtomicUsize::new(0))).await;
    retry_until_acknowledged(&api, &mut placed, Deadline::secs(30)).await;
    wait_settled(&deployment, &api, &placed, Deadline::secs(60)).await;
    processor.kill9().unwrap();
    // Nothing may be subscribed to the topic while it is deleted: librdkafka
    // 2.x crashes (SIGSEGV in its metadata cache) when tansu reports a
    // subscribed topic gone.
    gateway.kill9().unwrap();

    replace_topic(
        deployment.bootstrap_servers(),
        &deployment.topic("orders.events"),
        6,
    )
    .await;

    let _gateway = spawn_gateway(&deployment).await;

    let mut restarted = spawn_processor(&deployment, "processor", "store-processor");
    let more: Vec<Sent> = (60..72)
        .map(|index| Sent::place(&prefix, index, &customer))
        .collect();
    let mut more = send_all(&api, more, Arc::new(AtomicUsize::new(0))).await;
    retry_until_acknowledged(&api, &mut more, Deadline::secs(30)).await;

    let deadline = Deadline::secs(60);
    let status = loop {
        if let Some(status) = restarted.exit_status() {
            break status;
        }
        assert!(
            !deadline.passed(),
            "the processor kept running on a replaced log\n{}",
            restarted.report(40)
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    assert!(!status.success(), "{status}");
    let log = restarted.log_text();
    assert!(
        log.contains("error: run the orders command processor: the snapshot of")
            && log.contains("the log was replaced"),
        "{}",
        restarted.report(20)
    );
}
