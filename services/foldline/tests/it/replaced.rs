//! A processor whose snapshots describe a history its log does not hold:
//! `orders.events` was deleted and created again (a topic recreated by
//! hand, a migration that did not copy the events). The processor must
//! refuse to fold, exit non-zero and say why, instead of deciding on
//! another history. Two cases: the new log is shorter than the snapshots
//! (it is empty: the snapshot is ahead of the log's end), and the new log
//! is longer (another history was written into it first: only the
//! snapshot's fingerprint, the event id of its last folded record, tells
//! the logs apart).

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use foldline_testcontainers::wait::POLL_INTERVAL;
use foldline_testcontainers::{Api, Deadline, Deployment, FoldlineProcess};

use crate::support::{
    binary, retry_until_acknowledged, send_all, spawn_gateway, spawn_processor, wait_settled, Sent,
};

/// Places orders `range` and waits until they settled.
async fn place_settled(
    deployment: &Deployment,
    api: &Api,
    customer: &str,
    range: std::ops::Range<usize>,
) {
    let places: Vec<Sent> = range
        .map(|index| Sent::place(deployment.prefix(), index, customer))
        .collect();
    let mut placed = send_all(api, places, Arc::new(AtomicUsize::new(0))).await;
    retry_until_acknowledged(api, &mut placed, Deadline::secs(30)).await;
    wait_settled(deployment, api, &placed, Deadline::secs(90)).await;
}

/// Sends more placements (the restarted processor's first batches need
/// their partitions' state) and waits until `restarted` exits; returns its
/// log, checking it failed.
async fn refuses_to_fold(
    deployment: &Deployment,
    api: &Api,
    customer: &str,
    restarted: &mut FoldlineProcess,
) -> String {
    let more: Vec<Sent> = (1000..1012)
        .map(|index| Sent::place(deployment.prefix(), index, customer))
        .collect();
    let mut more = send_all(api, more, Arc::new(AtomicUsize::new(0))).await;
    retry_until_acknowledged(api, &mut more, Deadline::secs(30)).await;
    // A restore waits up to 30 s for an end behind its snapshot to catch up.
    let deadline = Deadline::secs(120);
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
    restarted.log_text()
}

/// What the events topic is replaced by.
#[derive(Clone, Copy, Debug)]
enum Replacement {
    /// Recreated empty by the restarted processor (from the topology).
    Shorter,
    /// Recreated and written to by another replica first: longer on every
    /// partition than the snapshots (~50 records a partition against ~10),
    /// so the offsets check alone would let the fold go on.
    Longer,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_whose_log_was_replaced_refuses_to_fold() {
    replaced(Replacement::Shorter, "but the log's stable end stays at").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_whose_log_was_replaced_by_a_longer_one_refuses_to_fold() {
    replaced(Replacement::Longer, "but the log holds").await;
}

/// The processor snapshots, is killed, its events topic replaced; restarted
/// on its snapshots it must stop with the error that says `refusal`.
async fn replaced(replacement: Replacement, refusal: &str) {
    let name = match replacement {
        Replacement::Shorter => "replaced",
        Replacement::Longer => "replaced-longer",
    };
    let deployment = Deployment::new(binary(), name).unwrap();
    let mut gateway = spawn_gateway(&deployment).await;
    let mut processor = spawn_processor(&deployment, "processor", "store-processor");
    let api = deployment.api().unwrap();
    let customer = uuid::Uuid::new_v4().to_string();

    // Enough placements that every partition snapshots (every 5 commands).
    place_settled(&deployment, &api, &customer, 0..60).await;
    processor.kill9().unwrap();

    // The events topic deleted under the running gateway (its projector is
    // subscribed to it); a processor creates it again from the topology.
    deployment
        .delete_topic("orders.events", Deadline::secs(60))
        .await
        .unwrap();
    if let Replacement::Longer = replacement {
        // A replica without the first one's snapshots writes another history.
        let mut other = spawn_processor(&deployment, "other", "store-other");
        place_settled(&deployment, &api, &customer, 100..400).await;
        other.kill9().unwrap();
    }
    let mut restarted = spawn_processor(&deployment, "processor", "store-processor");
    let log = refuses_to_fold(&deployment, &api, &customer, &mut restarted).await;
    if let Replacement::Shorter = replacement {
        assert!(
            log.contains("the log's stable end is behind the snapshot: waiting for it"),
            "{}",
            restarted.report(20)
        );
    }
    assert!(
        log.contains("error: run the orders command processor: the snapshot of")
            && log.contains(refusal)
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
