//! The same scenarios on containers, where a Docker engine answers.

use foldline_containers::containers::{self, Containers};
use foldline_containers::scenarios;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: cargo test -p foldline-containers --features docker -- --ignored"]
async fn a_docker_engine_answers_a_ping() -> anyhow::Result<()> {
    containers::ping().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: cargo test -p foldline-containers --features docker -- --ignored"]
async fn the_scenarios_run_on_kafka_scylladb_and_redis_containers() -> anyhow::Result<()> {
    let containers = Containers::start().await?;
    let endpoints = &containers.endpoints;
    // Both scenarios run whatever the first did; the failure names each.
    let contract = scenarios::store_contract(endpoints).await;
    let flow = scenarios::core_flow(endpoints).await;
    let failures: Vec<String> = [("the store contract", contract), ("the core flow", flow)]
        .into_iter()
        .filter_map(|(scenario, outcome)| {
            outcome.err().map(|error| format!("{scenario}: {error:#}"))
        })
        .collect();
    anyhow::ensure!(
        failures.is_empty(),
        "on containers ({endpoints:?}):\n{}",
        failures.join("\n")
    );
    Ok(())
}
