//! kill -9 of the broker itself in the middle of a command stream, and its
//! restart on the same data: every produce is acks=all, so whatever the
//! gateway acknowledged (202 after the command was acknowledged by the
//! broker) survives, and every acknowledged command takes effect exactly
//! once once the broker is back, in both modes.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use foldline_testcontainers::{Deadline, Deployment};

use crate::support::{
    binary, retry_until_acknowledged, send_all, settle_and_check, spawn_gateway, spawn_processor,
    wait_settled, Mode, Sent, Stream,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_mid_stream_loses_nothing_idempotent() {
    broker_crash(Mode::Idempotent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_mid_stream_loses_nothing_transactional() {
    broker_crash(Mode::Transactional).await;
}

async fn broker_crash(mode: Mode) {
    let started = Instant::now();
    // The broker is killed: a broker of its own.
    let deployment = mode.on(Deployment::isolated(binary(), &mode.name("broker-crash")).unwrap());
    let prefix = deployment.prefix().to_owned();
    let _gateway = spawn_gateway(&deployment).await;
    let mut processor = spawn_processor(&deployment, "processor", "store-processor");
    let api = deployment.api().unwrap();
    let customer = uuid::Uuid::new_v4().to_string();

    let mut commands = send_all(
        &api,
        (0..20)
            .map(|index| Sent::place(&prefix, index, &customer))
            .collect(),
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    retry_until_acknowledged(&api, &mut commands, Deadline::secs(30)).await;
    wait_settled(&deployment, &api, &commands, Deadline::secs(60)).await;

    let stream = Stream::start(&api, &prefix, std::slice::from_ref(&customer), 20);
    stream
        .wait_for_more(20, Deadline::secs(60), "acknowledged before the crash")
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
    stream
        .wait_for_more(20, Deadline::secs(90), "acknowledged after the restart")
        .await;
    commands.extend(stream.stop().await);
    settle_and_check(&deployment, &api, &mut commands, Deadline::secs(120)).await;
    assert!(processor.is_running(), "{}", processor.report(60));
    eprintln!("{mode:?} broker crash test took {:?}", started.elapsed());
}
