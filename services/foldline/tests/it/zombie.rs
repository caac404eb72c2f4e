//! A processor frozen with SIGSTOP mid-stream: the group gives its
//! partitions to the other processor after the session timeout, commands
//! keep completing; then the frozen one wakes as a zombie that still
//! believes it owns its partitions and may write stale decisions. Every
//! acknowledged command still takes effect exactly once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use foldline_testcontainers::wait::POLL_INTERVAL;
use foldline_testcontainers::{Deadline, Deployment};

use crate::support::{
    binary, check_invariants, retry_until_acknowledged, send_all, wait_settled, Sent,
    SNAPSHOT_OFTEN,
};

const ASSIGNED: &str = "partitions assigned";

fn places(prefix: &str, range: std::ops::Range<usize>, customers: &[String]) -> Vec<Sent> {
    range
        .map(|index| Sent::place(prefix, index, &customers[index % customers.len()]))
        .collect()
}

fn cancels_of(prefix: &str, placed: &[Sent]) -> Vec<Sent> {
    placed
        .iter()
        .filter_map(|command| command.order_id.as_deref())
        .map(|order_id| Sent::cancel(prefix, order_id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_processor_waking_as_a_zombie_changes_nothing() {
    let started = Instant::now();
    let deployment = Deployment::new(binary(), "zombie").unwrap();
    let prefix = deployment.prefix().to_owned();
    let _gateway = deployment
        .spawn_ready(
            "gateway",
            &["registry", "gateway", "orders-projector"],
            "store-gateway",
            Deadline::secs(60),
        )
        .await
        .unwrap();
    let mut first = deployment
        .spawn_with(
            "processor-1",
            &["orders-processor"],
            "store-processor-1",
            SNAPSHOT_OFTEN,
        )
        .unwrap();
    first
        .wait_for_log(ASSIGNED, 1, Deadline::secs(60))
        .await
        .unwrap();
    let mut second = deployment
        .spawn_with(
            "processor-2",
            &["orders-processor"],
            "store-processor-2",
            SNAPSHOT_OFTEN,
        )
        .unwrap();
    second
        .wait_for_log(ASSIGNED, 1, Deadline::secs(60))
        .await
        .unwrap();
    let api = deployment.api().unwrap();
    let customers: Vec<String> = (0..10).map(|_| uuid::Uuid::new_v4().to_string()).collect();

    // Phase 1: both processors own partitions and decide.
    let mut phase_one = send_all(
        &api,
        places(&prefix, 0..40, &customers),
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    retry_until_acknowledged(&api, &mut phase_one, Deadline::secs(30)).await;
    wait_settled(&deployment, &api, &phase_one, Deadline::secs(60)).await;
    eprintln!("phase 1 settled after {:?}", started.elapsed());

    // Phase 2: freeze processor 1 in the middle of a stream.
    let assigned_before = second.log_count(ASSIGNED);
    let mut phase_two = places(&prefix, 40..100, &customers);
    phase_two.extend(cancels_of(&prefix, &phase_one));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let stream = {
        let api = api.clone();
        let counter = Arc::clone(&acknowledged);
        tokio::spawn(async move { send_all(&api, phase_two, counter).await })
    };
    let deadline = Deadline::secs(30);
    while acknowledged.load(Ordering::SeqCst) < 15 {
        assert!(
            !deadline.passed(),
            "the phase 2 stream does not get acknowledged"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    first.pause().unwrap();
    let paused_at = Instant::now();
    let mut phase_two = stream.await.unwrap();
    retry_until_acknowledged(&api, &mut phase_two, Deadline::secs(30)).await;
    // Completing needs the group to hand processor 1's partitions over.
    wait_settled(&deployment, &api, &phase_two, Deadline::secs(60)).await;
    eprintln!(
        "phase 2 settled {:?} after the freeze (processor 2 assignments: {} -> {})",
        paused_at.elapsed(),
        assigned_before,
        second.log_count(ASSIGNED)
    );
    assert!(
        second.log_count(ASSIGNED) > assigned_before,
        "processor 2 never took over processor 1's partitions\n{}",
        second.report(40)
    );

    // Phase 3: wake the zombie while more commands flow.
    let mut phase_three = places(&prefix, 100..140, &customers);
    phase_three.extend(cancels_of(
        &prefix,
        &phase_two
            .iter()
            .filter(|command| command.kind == crate::support::Kind::Place)
            .cloned()
            .collect::<Vec<_>>(),
    ));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let stream = {
        let api = api.clone();
        let counter = Arc::clone(&acknowledged);
        tokio::spawn(async move { send_all(&api, phase_three, counter).await })
    };
    let deadline = Deadline::secs(30);
    while acknowledged.load(Ordering::SeqCst) < 10 {
        assert!(
            !deadline.passed(),
            "the phase 3 stream does not get acknowledged"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    first.resume().unwrap();
    let mut phase_three = stream.await.unwrap();
    retry_until_acknowledged(&api, &mut phase_three, Deadline::secs(30)).await;
    wait_settled(&deployment, &api, &phase_three, Deadline::secs(60)).await;
    eprintln!("phase 3 settled after {:?}", started.elapsed());

    let mut commands = phase_one;
    commands.extend(phase_two);
    commands.extend(phase_three);
    let outcomes = wait_settled(&deployment, &api, &commands, Deadline::secs(30)).await;
    assert!(
        first.is_running(),
        "the woken processor died\n{}",
        first.report(60)
    );
    assert!(
        second.is_running(),
        "processor 2 died\n{}",
        second.report(60)
    );
    let replay = deployment.replay().await.unwrap();
    let stale = replay
        .records
        .iter()
        .filter(|record| !record.admitted)
        .count();
    eprintln!(
        "orders.events holds {} records, {stale} of them not admitted (duplicates or stale decisions)",
        replay.records.len()
    );
    check_invariants(&api, &replay, &commands, &outcomes).await;
    eprintln!("zombie test took {:?}", started.elapsed());
}
