//! kill -9 of the broker itself in the middle of a command stream, and its
//! restart on the same data: every produce is acks=all, so whatever the
//! gateway acknowledged (202 after the command was acknowledged by the
//! broker) survives, and every acknowledged command takes effect exactly
//! once once the broker is back, in both modes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use foldline_testcontainers::wait::POLL_INTERVAL;
use foldline_testcontainers::{Deadline, Deployment};

use crate::support::{
    binary, check_invariants, check_no_aborted_record_folded, retry_until_acknowledged, send_all,
    spawn_gateway, spawn_processor, wait_settled, Mode, Sent,
};

const WAVE: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_mid_stream_loses_nothing_idempotent() {
    broker_crash(Mode::Idempotent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_mid_stream_loses_nothing_transactional() {
    broker_crash(Mode::Transactional).await;
}

async fn wait_count(counter: &AtomicUsize, target: usize, deadline: Deadline, what: &str) {
    while counter.load(Ordering::SeqCst) < target {
        assert!(
            !deadline.passed(),
            "{what}: {} of {target} after {:?}",
            counter.load(Ordering::SeqCst),
            deadline.budget()
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn broker_crash(mode: Mode) {
    let started = Instant::now();
    // The broker is killed: a broker of its own.
    let deployment = mode.on(Deployment::isolated(binary(), &mode.name("broker-crash")).unwrap());
    let prefix = deployment.prefix().to_owned();
    let _gateway = spawn_gateway(&deployment).await;
    let processor = spawn_processor(&deployment, "processor", "store-processor");
    let api = deployment.api().unwrap();
    let customer = uuid::Uuid::new_v4().to_string();
    let place = move |index: usize| Sent::place(&prefix, index, &customer);

    let mut commands = send_all(
        &api,
        (0..20).map(&place).collect(),
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    retry_until_acknowledged(&api, &mut commands, Deadline::secs(30)).await;
    wait_settled(&deployment, &api, &commands, Deadline::secs(60)).await;

    let streaming = Arc::new(AtomicBool::new(true));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let stream = {
        let (api, streaming, acknowledged, place) = (
            api.clone(),
            Arc::clone(&streaming),
            Arc::clone(&acknowledged),
            place.clone(),
        );
        tokio::spawn(async move {
            let mut sent = Vec::new();
            for wave in 0..64 {
                if !streaming.load(Ordering::SeqCst) {
                    break;
                }
                let first = 20 + wave * WAVE;
                let wave: Vec<Sent> = (first..first + WAVE).map(&place).collect();
                sent.extend(send_all(&api, wave, Arc::clone(&acknowledged)).await);
            }
            sent
        })
    };
    wait_count(
        &acknowledged,
        20,
        Deadline::secs(60),
        "acknowledged before the crash",
    )
    .await;
    let broker = deployment.broker();
    let restart = Instant::now();
    tokio::task::spawn_blocking(move || broker.kill9_and_restart())
        .await
        .unwrap()
        .unwrap();
    eprintln!(
        "{mode:?}: the broker was back after {:?}",
        restart.elapsed()
    );
    let before = acknowledged.load(Ordering::SeqCst);
    wait_count(
        &acknowledged,
        before + 20,
        Deadline::secs(90),
        "acknowledged after the restart",
    )
    .await;
    streaming.store(false, Ordering::SeqCst);
    commands.extend(stream.await.unwrap());
    let errored = commands
        .iter()
        .filter(|command| !command.errors.is_empty())
        .count();
    retry_until_acknowledged(&api, &mut commands, Deadline::secs(60)).await;
    eprintln!(
        "{} commands acknowledged ({errored} needed a retry) after {:?}",
        commands.len(),
        started.elapsed()
    );
    let outcomes = wait_settled(&deployment, &api, &commands, Deadline::secs(120)).await;
    let mut processor = processor;
    assert!(processor.is_running(), "{}", processor.report(60));
    let replay = deployment.replay().await.unwrap();
    check_invariants(&api, &replay, &commands, &outcomes).await;
    check_no_aborted_record_folded(&deployment, &replay).await;
    eprintln!("{mode:?} broker crash test took {:?}", started.elapsed());
}
