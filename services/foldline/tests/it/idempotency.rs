//! A client retry with the same `Idempotency-Key` re-produces the very same
//! command record: one command id names one command, byte for byte (the
//! first request's issue time and correlation id), so the processor's
//! redecision and every reader see the same decision whichever copy they
//! meet first. The nemesis checker found retries stamped anew.

use foldline_testcontainers::{place_body, CommandOptions, Deployment};

use crate::shared_gateway::assert_identical_copies;
use crate::support::{binary, spawn_gateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_key_reproduces_the_same_command_record() {
    let deployment = Deployment::new(binary(), "idempotency").unwrap();
    // No processor: the copies stay side by side in orders.commands.
    let _gateway = spawn_gateway(&deployment).await;
    let api = deployment.api().unwrap();
    let body = place_body(
        &uuid::Uuid::new_v4().to_string(),
        "EUR",
        &[("SKU-1", 2, 500)],
    );
    let key = format!("{}retried", deployment.prefix());
    let mut answers = Vec::new();
    for _ in 0..3 {
        let answer = api
            .place_order(&body, &CommandOptions::keyed(&key))
            .await
            .unwrap();
        assert_eq!(answer.status, 202, "{answer}");
        answers.push(answer);
    }
    let command_id = answers[0].str("command_id").unwrap().to_owned();
    for answer in &answers {
        assert_eq!(answer.str("command_id"), Some(command_id.as_str()));
        assert_eq!(answer.str("order_id"), answers[0].str("order_id"));
    }
    assert_identical_copies(&deployment, &command_id, 3).await;
}
