//! A processor whose snapshots describe a history its log does not hold:
//! `orders.events` was deleted and created again, empty (a topic recreated
//! by hand, a migration that did not copy the events). The processor must
//! refuse to fold, exit non-zero and say why, instead of deciding on a
//! partial history.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use foldline_testcontainers::wait::POLL_INTERVAL;
use foldline_testcontainers::{Deadline, Deployment};

use crate::support::{
    binary, retry_until_acknowledged, send_all, spawn_gateway, spawn_processor, wait_settled, Sent,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_whose_log_was_replaced_refuses_to_fold() {
    let deployment = Deployment::new(binary(), "replaced").unwrap();
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

    // The events topic deleted under the running gateway (its projector is
    // subscribed to it); the restarted processor, with its store and so its
    // snapshots, creates it again from the topology, empty.
    deployment
        .delete_topic("orders.events", Deadline::secs(60))
        .await
        .unwrap();
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
    assert!(
        gateway.is_running(),
        "the gateway died when its topic was deleted\n{}",
        gateway.report(40)
    );
}
