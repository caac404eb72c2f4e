//! SIGTERM during a broker outage: the clients cannot reach anyone to
//! commit to or leave the group with, and the process must still stop
//! within its drain deadline (an orchestrator's grace period is finite, and
//! a pod that hangs on stop blocks a rollout).

use foldline_testcontainers::{place_body, CommandOptions, Deadline, Deployment};

use crate::support::{binary, spawn_platform};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_stops_on_sigterm_while_the_broker_is_down() {
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

    // The broker dies while the process is stopping: requests in flight
    // (the final commits, leaving the groups) never get an answer.
    platform.send_terminate().unwrap();
    deployment.broker().stop().unwrap();
    // Drain deadline (15 s) plus the runtime's (2 s), with room to spare.
    let status = platform.wait_exit(Deadline::secs(40)).await;
    assert!(status.is_ok(), "{status:?}\n{}", platform.report(40));
}
