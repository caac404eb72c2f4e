//! kill -9 (and SIGTERM) of the command processor while commands stream,
//! again and again; each time a fresh processor on the same store (the
//! same replica: its instance id, so its `transactional.id`) restores from
//! its snapshots and the log. Every
//! acknowledged command takes effect exactly once, in both modes; in the
//! transactional mode the kills leave aborted records in the log, and no
//! reader folds any of them.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use foldline_testcontainers::wait::POLL_INTERVAL;
use foldline_testcontainers::{Api, Deadline};

use crate::support::{
    retry_until_acknowledged, send_all, settle_and_check, spawn_gateway, spawn_processor_with,
    wait_settled, Kind, Mode, Sent, Stream,
};

/// A killed member holds its partitions until its session expires: a short
/// session (the broker's minimum is lowered to allow it) keeps 20 cycles
/// quick. A paused but live processor would be kicked out as quickly, which
/// only adds rebalances to a fault test.
const SHORT_SESSION: &[(&str, &str)] =
    &[("FOLDLINE__KAFKA__PROPERTIES__SESSION_TIMEOUT_MS", "2000")];

/// Placements settled before the first stop.
const WARM_UP: usize = 40;

/// How the processor goes away mid-stream.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// SIGKILL: no shutdown path runs; a transaction in flight stays open
    /// until the relaunched replica's `init_transactions` aborts it.
    Kill,
    /// SIGTERM: the processor drains, commits what it finished, and exits;
    /// a batch it was interrupted in must be read again by its successor.
    Terminate,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_killed_again_and_again_loses_and_duplicates_nothing_idempotent() {
    stop_mid_stream(Stop::Kill, 20, Mode::Idempotent, "crash").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_killed_again_and_again_loses_and_duplicates_nothing_transactional() {
    stop_mid_stream(Stop::Kill, 20, Mode::Transactional, "crash").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_stopped_mid_stream_loses_and_duplicates_nothing_idempotent() {
    stop_mid_stream(Stop::Terminate, 1, Mode::Idempotent, "sigterm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_stopped_mid_stream_loses_and_duplicates_nothing_transactional() {
    stop_mid_stream(Stop::Terminate, 1, Mode::Transactional, "sigterm").await;
}

/// Sends `command` until acknowledged, then waits until the log settled it:
/// the processor running now owns its partition and decides.
async fn settle_one(api: &Api, command: &mut Sent, deadline: Deadline) {
    loop {
        if command.acknowledged() || command.attempt(api).await {
            let id = command.command_id.clone().unwrap_or_default();
            if let Ok(response) = api.command_status(&id).await {
                if response.status == 200 && response.str("status") != Some("pending") {
                    return;
                }
            }
        }
        assert!(
            !deadline.passed(),
            "{} not settled within {:?}: {:?}",
            command.idempotency_key,
            deadline.budget(),
            command.errors
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn stop_mid_stream(stop: Stop, cycles: usize, mode: Mode, name: &str) {
    let started = Instant::now();
    let deployment = mode.deployment(name);
    let prefix = deployment.prefix().to_owned();
    let _gateway = spawn_gateway(&deployment).await;
    let mut processor =
        spawn_processor_with(&deployment, "processor", "store-processor", SHORT_SESSION);
    let api = deployment.api().unwrap();
    let customers: Vec<String> = (0..10).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let place = |index: usize| Sent::place(&prefix, index, &customers[index % customers.len()]);

    let mut commands = send_all(
        &api,
        (0..WARM_UP).map(place).collect(),
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    retry_until_acknowledged(&api, &mut commands, Deadline::secs(30)).await;
    wait_settled(&deployment, &api, &commands, Deadline::secs(60)).await;

    // Placements stream in waves until every stop is done.
    let stream = Stream::start(&api, &prefix, &customers, WARM_UP);
    let mut probes = Vec::new();
    for cycle in 0..cycles {
        stream
            .wait_for_more(
                5,
                Deadline::secs(30),
                &format!("cycle {cycle}: acknowledged"),
            )
            .await;
        match stop {
            Stop::Kill => processor.kill9().unwrap(),
            Stop::Terminate => {
                let status = processor.terminate(Deadline::secs(30)).await.unwrap();
                assert!(status.success(), "{status}\n{}", processor.report(40));
            }
        }
        processor =
            spawn_processor_with(&deployment, "processor", "store-processor", SHORT_SESSION);
        // The relaunched replica decides before the next stop.
        let mut probe = place(1_000_000 + cycle);
        settle_one(&api, &mut probe, Deadline::secs(60)).await;
        probes.push(probe);
    }
    eprintln!(
        "{mode:?}: {cycles} × {stop:?} done after {:?}",
        started.elapsed()
    );
    commands.extend(stream.stop().await);
    commands.extend(probes);

    // Cancel every second acknowledged order.
    let cancels: Vec<Sent> = commands
        .iter()
        .filter(|command| command.kind == Kind::Place)
        .filter_map(|command| command.order_id.clone())
        .step_by(2)
        .map(|order_id| Sent::cancel(&prefix, &order_id))
        .collect();
    commands.extend(send_all(&api, cancels, Arc::new(AtomicUsize::new(0))).await);

    let (_, aborted) = settle_and_check(&deployment, &api, &mut commands, Deadline::secs(90)).await;
    assert!(processor.is_running(), "{}", processor.report(60));
    match mode {
        Mode::Idempotent => assert!(
            aborted.events.is_empty() && aborted.outcomes.is_empty(),
            "no transaction, yet records only a read_uncommitted reader sees: {aborted:?}"
        ),
        // Killed 20 times in the middle of a stream: some of those kills
        // left a transaction open, which the relaunch aborted.
        Mode::Transactional if matches!(stop, Stop::Kill) => assert!(
            !aborted.events.is_empty() || !aborted.outcomes.is_empty(),
            "{cycles} kills mid-stream and not one aborted record"
        ),
        Mode::Transactional => {}
    }
    // The last replacement restored from the snapshots its predecessors
    // wrote, not only from the log start.
    let restores: Vec<String> = processor
        .log_text()
        .lines()
        .filter(|line| line.contains("restored partition"))
        .map(str::to_owned)
        .collect();
    assert!(!restores.is_empty(), "{}", processor.report(60));
    assert!(
        restores.iter().any(|line| line
            .split_whitespace()
            .any(|field| field.starts_with("from=") && field != "from=0")),
        "no partition restored from a snapshot: {restores:#?}"
    );
    eprintln!("{mode:?} {stop:?} test took {:?}", started.elapsed());
}
