//! Admission: past `gateway.max_unsettled_commands` a command is refused
//! with 503, `Retry-After` and a problem body before it is produced, and
//! every command admitted settles once a processor runs.

use foldline_testcontainers::wait::poll_until;
use foldline_testcontainers::{place_body, CommandOptions, Deadline, Deployment};

use crate::support::{binary, spawn_processor};

const BOUND: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_bound_commands_are_refused_and_every_admitted_one_settles() {
    let deployment = Deployment::new(binary(), "admission").unwrap();
    // No processor yet: nothing settles, so the bound fills and stays full.
    let _gateway = deployment
        .spawn_ready_with(
            "gateway",
            &["registry", "gateway", "orders-projector"],
            "store-gateway",
            &[("FOLDLINE__GATEWAY__MAX_UNSETTLED_COMMANDS", "4")],
            Deadline::secs(60),
        )
        .await
        .expect("the gateway process becomes ready");
    let api = deployment.api().unwrap();
    let customer = uuid::Uuid::new_v4().to_string();
    let body = place_body(&customer, "EUR", &[("SKU-1", 1, 500)]);
    let prefix = deployment.prefix().to_owned();

    let mut admitted = Vec::new();
    for index in 0..BOUND {
        let key = format!("{prefix}admitted-{index}");
        let accepted = api
            .place_order(&body, &CommandOptions::keyed(&key))
            .await
            .unwrap();
        assert_eq!(accepted.status, 202, "{accepted}");
        admitted.push(accepted.str("command_id").unwrap().to_owned());
        if index == 0 {
            // A retry of an unsettled command keeps its slot rather than
            // taking one: the bound still admits BOUND distinct commands.
            let retried = api
                .place_order(&body, &CommandOptions::keyed(&key))
                .await
                .unwrap();
            assert_eq!(retried.status, 202, "{retried}");
            assert_eq!(retried.str("command_id"), Some(admitted[0].as_str()));
        }
    }
    for wait in [None, Some(5)] {
        let key = format!("{prefix}refused-{wait:?}");
        let options = CommandOptions {
            idempotency_key: Some(&key),
            wait_seconds: wait,
        };
        let refused = api.place_order(&body, &options).await.unwrap();
        assert_eq!(refused.status, 503, "{refused}");
        assert!(refused.is_problem(), "{refused}");
        assert_eq!(refused.code(), Some("overloaded"), "{refused}");
        assert_eq!(refused.header("retry-after"), Some("1"), "{refused}");
    }
    // Reads are not commands: they are never refused by admission.
    let read = api
        .get("/v1/orders/00000000-0000-7000-8000-000000000000")
        .await
        .unwrap();
    assert_eq!(read.status, 404, "{read}");

    let _processor = spawn_processor(&deployment, "processor", "store-processor");
    for command_id in &admitted {
        poll_until(
            "an admitted command to settle",
            Deadline::secs(60),
            || async {
                let status = api
                    .command_status(command_id)
                    .await
                    .map_err(|error| error.to_string())?;
                match status.str("status") {
                    Some("pending") => Err(status.to_string()),
                    Some(_) => Ok(Some(())),
                    None => Err(status.to_string()),
                }
            },
        )
        .await
        .unwrap();
    }
    // Settled commands gave their slots back: the gateway admits again.
    poll_until("the gateway to admit again", Deadline::secs(30), || async {
        let key = format!("{prefix}after");
        let placed = api
            .place_order(&body, &CommandOptions::keyed_waiting(&key, 20))
            .await
            .map_err(|error| error.to_string())?;
        match placed.status {
            201 => Ok(Some(())),
            _ => Err(placed.to_string()),
        }
    })
    .await
    .unwrap();
}
