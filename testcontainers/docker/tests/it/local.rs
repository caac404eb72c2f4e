//! The scenarios on the harness's servers: what `.ci/run` exercises.

use foldline_containers::local::LocalServers;
use foldline_containers::scenarios;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_flow_runs_on_the_harness_servers() -> anyhow::Result<()> {
    let servers = LocalServers::start()?;
    scenarios::core_flow(&servers.endpoints).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_contract_holds_on_the_harness_cql_server() -> anyhow::Result<()> {
    let servers = LocalServers::start()?;
    scenarios::store_contract(&servers.endpoints).await
}
