//! A processor whose snapshots describe a history its log does not hold:
//! the deployment moved to a cluster where `orders.events` starts empty (a
//! migration that did not copy the events, a topic recreated by hand). The
//! processor must refuse to fold, exit non-zero and say why, instead of
//! deciding on a partial history.

use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use foldline_testcontainers::wait::POLL_INTERVAL;
use foldline_testcontainers::{Deadline, Deployment};

use crate::support::{
    binary, retry_until_acknowledged, send_all, spawn_gateway, spawn_processor, wait_settled, Sent,
};

/// Copies the files of the store directory `name` from one deployment to
/// another (the embedded store is one flat directory).
fn copy_store(from: &Path, to: &Path, name: &str) {
    let target = to.join(name);
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(from.join(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_whose_log_was_replaced_refuses_to_fold() {
    let deployment = Deployment::new(binary(), "replaced").unwrap();
    let prefix = deployment.prefix().to_owned();
    let _gateway = spawn_gateway(&deployment).await;
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

    // The same names on a cluster whose orders.events is empty, with the
    // processor's store (and so its snapshots) carried over.
    let moved = Deployment::moved_to_empty_cluster(&deployment, "replaced-moved").unwrap();
    copy_store(deployment.dir(), moved.dir(), "store-processor");
    let _moved_gateway = spawn_gateway(&moved).await;
    let mut restarted = spawn_processor(&moved, "processor", "store-processor");
    let moved_api = moved.api().unwrap();
    let more: Vec<Sent> = (60..72)
        .map(|index| Sent::place(&prefix, index, &customer))
        .collect();
    let mut more = send_all(&moved_api, more, Arc::new(AtomicUsize::new(0))).await;
    retry_until_acknowledged(&moved_api, &mut more, Deadline::secs(30)).await;

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
