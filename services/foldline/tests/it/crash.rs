//! kill -9 of the command processor in the middle of a command stream; a
//! fresh processor on the same store restores from its snapshots and the
//! log. Every acknowledged command takes effect exactly once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use foldline_testcontainers::{Deadline, Deployment};

use crate::support::{
    binary, check_invariants, retry_until_acknowledged, send_all, spawn_gateway, spawn_processor,
    wait_settled, Kind, Sent,
};

const FIRST_PLACES: usize = 100;
const SECOND_PLACES: usize = 100;

/// Polls `counter` until it reaches `target`.
async fn wait_count(counter: &AtomicUsize, target: usize, deadline: Deadline, what: &str) {
    while counter.load(Ordering::SeqCst) < target {
        assert!(
            !deadline.passed(),
            "{what}: {} of {target} after {:?}",
            counter.load(Ordering::SeqCst),
            deadline.budget()
        );
        tokio::time::sleep(foldline_testcontainers::wait::POLL_INTERVAL).await;
    }
}

/// How the first processor goes away mid-stream.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// SIGKILL: no shutdown path runs.
    Kill,
    /// SIGTERM: the processor drains, commits what it finished, and exits;
    /// a batch it was interrupted in must be read again by its successor.
    Terminate,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_killed_mid_stream_loses_and_duplicates_nothing() {
    stop_mid_stream(Stop::Kill, "crash").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_stopped_mid_stream_loses_and_duplicates_nothing() {
    stop_mid_stream(Stop::Terminate, "sigterm").await;
}

async fn stop_mid_stream(stop: Stop, name: &str) {
    let started = Instant::now();
    let deployment = Deployment::new(binary(), name).unwrap();
    let prefix = deployment.prefix().to_owned();
    let _gateway = spawn_gateway(&deployment).await;
    let mut processor = spawn_processor(&deployment, "processor", "store-processor");
    let api = deployment.api().unwrap();
    let customers: Vec<String> = (0..10).map(|_| uuid::Uuid::new_v4().to_string()).collect();

    // First half of the placements; wait until the processor is deciding.
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let first: Vec<Sent> = (0..FIRST_PLACES)
        .map(|index| Sent::place(&prefix, index, &customers[index % customers.len()]))
        .collect();
    let mut commands = send_all(&api, first, Arc::clone(&acknowledged)).await;
    let probe: Vec<Sent> = commands
        .iter()
        .filter(|command| command.acknowledged())
        .take(10)
        .cloned()
        .collect();
    assert!(
        !probe.is_empty(),
        "no placement acknowledged: {:?}",
        commands[0].errors
    );
    wait_settled(&deployment, &api, &probe, Deadline::secs(60)).await;

    // The second half streams while the processor is killed and replaced.
    let second: Vec<Sent> = (FIRST_PLACES..FIRST_PLACES + SECOND_PLACES)
        .map(|index| Sent::place(&prefix, index, &customers[index % customers.len()]))
        .collect();
    let second_acknowledged = Arc::new(AtomicUsize::new(0));
    let stream = {
        let api = api.clone();
        let counter = Arc::clone(&second_acknowledged);
        tokio::spawn(async move { send_all(&api, second, counter).await })
    };
    wait_count(
        &second_acknowledged,
        20,
        Deadline::secs(60),
        "placements acknowledged before the kill",
    )
    .await;
    match stop {
        Stop::Kill => processor.kill9().unwrap(),
        Stop::Terminate => {
            let status = processor.terminate(Deadline::secs(30)).await.unwrap();
            assert!(status.success(), "{status}\n{}", processor.report(40));
        }
    }
    eprintln!(
        "{stop:?}: the processor stopped after {:?}",
        started.elapsed()
    );
    // The gateway keeps accepting with no processor alive.
    wait_count(
        &second_acknowledged,
        50,
        Deadline::secs(60),
        "placements acknowledged while no processor runs",
    )
    .await;
    let mut restarted = spawn_processor(&deployment, "processor", "store-processor");
    commands.extend(stream.await.unwrap());

    // Cancel every second acknowledged order.
    let cancels: Vec<Sent> = commands
        .iter()
        .filter(|command| command.kind == Kind::Place)
        .filter_map(|command| command.order_id.clone())
        .step_by(2)
        .map(|order_id| Sent::cancel(&prefix, &order_id))
        .collect();
    commands.extend(send_all(&api, cancels, Arc::new(AtomicUsize::new(0))).await);

    // Whatever got an error is retried with its key.
    let errored = commands
        .iter()
        .filter(|command| !command.errors.is_empty())
        .count();
    retry_until_acknowledged(&api, &mut commands, Deadline::secs(30)).await;
    eprintln!(
        "{} commands acknowledged ({errored} needed a retry) after {:?}",
        commands.len(),
        started.elapsed()
    );

    let outcomes = wait_settled(&deployment, &api, &commands, Deadline::secs(60)).await;
    assert!(restarted.is_running(), "{}", restarted.report(60));
    let replay = deployment.replay().await.unwrap();
    check_invariants(&api, &replay, &commands, &outcomes).await;

    // The replacement restored from the snapshots its predecessor wrote,
    // not only from the log start.
    let restores: Vec<String> = restarted
        .log_text()
        .lines()
        .filter(|line| line.contains("restored partition"))
        .map(str::to_owned)
        .collect();
    assert!(!restores.is_empty(), "{}", restarted.report(60));
    assert!(
        restores.iter().any(|line| line
            .split_whitespace()
            .any(|field| field.starts_with("from=") && field != "from=0")),
        "no partition restored from a snapshot: {restores:#?}"
    );
    eprintln!("{stop:?} test took {:?}", started.elapsed());
}
