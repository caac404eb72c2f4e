//! The broker dies under a running platform, first: the process rides the
//! outage out (a command sent during it does not settle, reads are still
//! served, and the process is still running after it). Then the broker
//! comes back (kill -9 keeps its data; the same broker restarts on the
//! same ports) and the platform recovers **without a restart**: the same
//! process (same pid) settles a new command, and the client's retry of the
//! command sent during the outage, with its `Idempotency-Key` and
//! `Prefer: wait`, settles it exactly once. Finally the broker dies again
//! and the process gets SIGTERM while its clients can reach nobody to
//! commit to or leave the group with: it must stop within its drain
//! deadline, and cleanly (exit status 0): an orchestrator's grace period is
//! finite, a pod that hangs on stop blocks a rollout, and one that exits
//! non-zero on an ordinary stop pages someone.

use std::time::{Duration, Instant};

use foldline_testcontainers::{
    place_body, ApiResponse, CommandOptions, Deadline, Deployment, FoldlineProcess,
};

use crate::support::{binary, spawn_platform};

/// Sends `send` until it answers `status`, within `deadline`: the client
/// retrying while the platform reconnects (each attempt asks
/// `Prefer: wait`, so an attempt that answers at all is slow, not spinning).
async fn until_status<F, Fut>(what: &str, status: u16, deadline: Deadline, send: F) -> ApiResponse
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ApiResponse>>,
{
    let mut answers = Vec::new();
    loop {
        match send().await {
            Ok(response) if response.status == status => return response,
            Ok(response) => answers.push(response.to_string()),
            Err(error) => answers.push(format!("{error:#}")),
        }
        assert!(
            !deadline.passed(),
            "{what}: no {status} within {:?}; the last answers: {:?}",
            deadline.budget(),
            &answers[answers.len().saturating_sub(3)..]
        );
        // A client's backoff between retries, not a wait for state.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_rides_out_a_broker_outage_recovers_unrestarted_and_stops_cleanly_during_another()
{
    let started = Instant::now();
    // The broker is killed: a broker of its own.
    let deployment = Deployment::isolated(binary(), "outage").unwrap();
    let mut platform = spawn_platform(&deployment).await;
    let pid = platform.pid();
    let api = deployment.api().unwrap();
    let customer = uuid::Uuid::new_v4().to_string();
    let placed = api
        .place_order(
            &place_body(&customer, "EUR", &[("SKU-1", 1, 100)]),
            &CommandOptions::waiting(20),
        )
        .await
        .unwrap();
    assert_eq!(placed.status, 201, "{placed}");
    let order_id = placed.str("id").unwrap().to_owned();

    // The broker dies first (kill -9: its data stays for the restart).
    let broker = deployment.broker();
    tokio::task::spawn_blocking(move || broker.kill9())
        .await
        .unwrap()
        .unwrap();
    assert!(!deployment.broker().is_running());
    // A command during the outage cannot settle; the process lives on.
    let key = format!("{}outage-cancel", deployment.prefix());
    let during = api
        .cancel_order(
            &order_id,
            "during the outage",
            &CommandOptions::keyed_waiting(&key, 2),
        )
        .await;
    if let Ok(response) = &during {
        assert_ne!(response.status, 200, "settled with no broker: {response}");
    }
    let read = api.order(&order_id).await.unwrap();
    assert_eq!(read.str("status"), Some("placed"), "{read}");
    assert!(
        platform.is_running(),
        "the outage stopped the process\n{}",
        platform.report(40)
    );

    // The broker comes back; the platform recovers by itself.
    let restart = Instant::now();
    let broker = deployment.broker();
    tokio::task::spawn_blocking(move || broker.restart())
        .await
        .unwrap()
        .unwrap();
    eprintln!("the broker was back after {:?}", restart.elapsed());
    let place_key = format!("{}after-the-outage", deployment.prefix());
    let body = place_body(&customer, "EUR", &[("SKU-2", 2, 250)]);
    let place_options = CommandOptions::keyed_waiting(&place_key, 5);
    let after = until_status(
        "a new placement after the restart",
        201,
        Deadline::secs(90),
        || api.place_order(&body, &place_options),
    )
    .await;
    eprintln!(
        "a new placement settled {:?} after the restart",
        restart.elapsed()
    );
    assert_eq!(after.str("status"), Some("placed"), "{after}");
    assert_eq!(
        after.body.get("total").and_then(serde_json::Value::as_i64),
        Some(500),
        "{after}"
    );
    // The client's retry of the outage's command, with its key: settled,
    // once (version 2: one cancellation on top of the placement).
    let cancel_options = CommandOptions::keyed_waiting(&key, 5);
    let cancelled = until_status(
        "the retried cancel after the restart",
        200,
        Deadline::secs(60),
        || api.cancel_order(&order_id, "during the outage", &cancel_options),
    )
    .await;
    eprintln!(
        "the retried cancel settled {:?} after the restart",
        restart.elapsed()
    );
    assert_eq!(cancelled.str("status"), Some("cancelled"), "{cancelled}");
    assert_eq!(
        cancelled
            .body
            .get("version")
            .and_then(serde_json::Value::as_u64),
        Some(2),
        "{cancelled}"
    );
    let again = api
        .cancel_order(&order_id, "during the outage", &cancel_options)
        .await
        .unwrap();
    assert_eq!(
        (
            again.status,
            again
                .body
                .get("version")
                .and_then(serde_json::Value::as_u64)
        ),
        (200, Some(2)),
        "a second retry with the key answers the same settled cancel: {again}"
    );
    assert!(
        platform.is_running() && platform.pid() == pid,
        "the platform was restarted or died\n{}",
        platform.report(40)
    );
    assert_eq!(
        platform.log_count("command processor started"),
        1,
        "the processor role restarted inside the process\n{}",
        platform.report(40)
    );

    // The broker dies again; SIGTERM in the middle of that outage.
    let broker = deployment.broker();
    tokio::task::spawn_blocking(move || broker.kill9())
        .await
        .unwrap()
        .unwrap();
    let terminated = Instant::now();
    platform.send_terminate().unwrap();
    // Drain deadline (15 s) plus the runtime's (2 s), with room to spare.
    match platform.wait_exit(Deadline::secs(40)).await {
        Ok(status) => assert!(
            status.success(),
            "SIGTERM during the outage: {status}\n{}",
            platform.report(40)
        ),
        Err(error) => panic!("{error:#}\n{}", platform.report(40)),
    }
    eprintln!(
        "outage test took {:?} (SIGTERM to exit: {:?})",
        started.elapsed(),
        terminated.elapsed()
    );
}

/// A stop signal while the roles are still starting ends the process with
/// exit 0 (a pod deleted mid-rollout is not a crash): here start-up waits on
/// a "broker" that accepts connections and never answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_during_start_up_exits_cleanly() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a silent listener");
    let address = silent.local_addr().expect("its address");
    let directory = tempfile::tempdir().expect("a working directory");
    let mut process = FoldlineProcess::spawn(
        std::path::Path::new(binary()),
        "starting",
        &["orders-processor"],
        &[(
            "FOLDLINE__KAFKA__BOOTSTRAP_SERVERS".to_owned(),
            address.to_string(),
        )],
        directory.path(),
        directory.path().join("starting.log"),
    )
    .expect("spawn foldline");
    process
        .wait_for_log("connecting to kafka", 1, Deadline::secs(60))
        .await
        .expect("start-up reaches the brokers");
    process.send_terminate().expect("SIGTERM");
    let status = process
        .wait_exit(Deadline::secs(30))
        .await
        .expect("the process exits");
    assert!(status.success(), "{status:?}\n{}", process.report(30));
    assert_eq!(
        process.log_count("stopped on request during start-up"),
        1,
        "{}",
        process.report(30)
    );
}
