//! The broker dies under a running platform, first: the process rides the
//! outage out (a command sent during it does not settle, and the process
//! is still running after it), then gets SIGTERM while its clients can
//! reach nobody to commit to or leave the group with. It must stop within
//! its drain deadline, and cleanly (exit status 0): an orchestrator's grace
//! period is finite, a pod that hangs on stop blocks a rollout, and one
//! that exits non-zero on an ordinary stop pages someone.
//!
//! The broker's return (kill -9 and restart on the same data, the platform
//! recovering unrestarted) is `broker_crash.rs` on the transactions branch,
//! which brings the harness's broker restart.

use foldline_testcontainers::{place_body, CommandOptions, Deadline, Deployment};

use crate::support::{binary, spawn_platform};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_rides_out_a_broker_outage_and_stops_cleanly_on_sigterm_during_it() {
    // The broker is killed: a broker of its own.
    let deployment = Deployment::isolated(binary(), "outage").unwrap();
    let mut platform = spawn_platform(&deployment).await;
    let api = deployment.api().unwrap();
    let placed = api
        .place_order(
            &place_body(
                &uuid::Uuid::new_v4().to_string(),
                "EUR",
                &[("SKU-1", 1, 100)],
            ),
            &CommandOptions::waiting(10),
        )
        .await
        .unwrap();
    assert_eq!(placed.status, 201, "{placed}");
    let order_id = placed.str("id").unwrap().to_owned();

    // The broker dies first.
    deployment.broker().stop().unwrap();
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

    // SIGTERM in the middle of the outage.
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
}
