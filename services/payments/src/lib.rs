//! The payments domain service (payment-service).
//!
//! # Layout
//! - [`domain`]: the pure payment decider: values, commands, events,
//!   state, rejections. No I/O.
//! - [`wire`]: the field mapping to the Avro records of `foldline-contracts`,
//!   declared to the platform as [`PaymentsWire`].
//! - [`projection`]: `payment_by_id` and `payments_by_order`.
//! - [`routes`]: the HTTP routes (read a payment, an order's payments,
//!   request a refund).
//! - [`provider`]: the payment provider port, its HTTP adapter and the
//!   provider simulator.
//! - [`worker`]: the effect step: provider calls as outbox follow-ups,
//!   their answers recorded back as commands.
//!
//! The effect step (calling the payment provider outside `decide`) is
//! explained in `src/design.md`.

pub mod domain;
pub mod projection;
pub mod provider;
pub mod routes;
pub mod wire;
pub mod worker;

#[cfg(test)]
mod replay_tests;

use foldline_gateway::EdgeDeclaration;
use foldline_platform::kafka;
use foldline_platform::outbox::{self, Outbox};
use foldline_platform::service::{DomainTopics, RoleContext, RoleFuture, ServiceError};
use foldline_platform::store::Migration;
use foldline_platform::DomainService;

pub use crate::projection::PaymentsProjection;
pub use crate::wire::PaymentsWire;
pub use crate::worker::ProviderCalls;

/// The domain's name in `topology/topology.toml`.
pub const DOMAIN: &str = "payments";

/// The CQL tables of this domain's projections, for `foldline migrate`
/// (the outbox tables it also uses are the platform's).
pub const CQL_MIGRATIONS: &[Migration] = &[Migration {
    id: "0005_payments",
    cql: include_str!("../../../schemas/cql/0005_payments.cql"),
}];

const PROVIDER_WORKER: &str = "provider worker";

/// The payments processor, projections and provider worker, runnable by
/// name.
pub fn service() -> DomainService {
    DomainService::new::<PaymentsWire>(DOMAIN)
        .with_projection::<PaymentsProjection>()
        .with_projection::<Outbox<ProviderCalls>>()
        .with_worker(PROVIDER_WORKER, run_provider_worker)
}

fn run_provider_worker(domain: &'static str, context: RoleContext) -> RoleFuture {
    Box::pin(async move {
        let topics = DomainTopics::resolve(&context.config, &context.topology, domain)?;
        let start_error = |reason: String| ServiceError::WorkerStart {
            worker: PROVIDER_WORKER,
            reason,
        };
        let producer =
            kafka::producer_config(&context.config.kafka, "foldline-payments-provider-worker")
                .create()
                .map_err(|error| start_error(error.to_string()))?;
        let config = context.config.payments.provider.clone();
        let provider = provider::http::HttpProvider::new(&config)
            .map_err(|error| start_error(error.to_string()))?;
        let worker = worker::ProviderWorker {
            provider,
            config,
            producer,
            codec: context.codec.clone(),
            commands_topic: topics.commands.clone(),
        };
        outbox::relay::<ProviderCalls, _>(
            worker,
            context.store,
            topics.partitions,
            context.shutdown,
        )
        .await?;
        Ok(())
    })
}

/// The payments routes and how clients name a payment.
pub fn edge() -> EdgeDeclaration {
    EdgeDeclaration {
        domain: DOMAIN,
        noun: "payment",
        collection: "/v1/payments",
        routes: routes::router,
        personal_data: false,
    }
}

#[cfg(test)]
mod cql_tests {
    use super::CQL_MIGRATIONS;
    use crate::projection::{PAYMENTS_BY_ORDER, PAYMENT_BY_ID};

    #[test]
    fn the_cql_migration_creates_every_projection_table() {
        let cql =
            foldline_platform::store::migrations::statements(CQL_MIGRATIONS[0].cql).join("\n");
        for table in [PAYMENT_BY_ID, PAYMENTS_BY_ORDER] {
            assert!(
                cql.contains(&format!("CREATE TABLE IF NOT EXISTS {table} (")),
                "{table}"
            );
        }
    }
}
