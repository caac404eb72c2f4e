//! The notify domain service (notify-service).
//!
//! # Layout
//! - [`domain`]: the pure notification decider: values, commands, events,
//!   state, rejections. No I/O.
//! - [`wire`]: the field mapping to the Avro records of `foldline-contracts`,
//!   declared to the platform as [`NotifyWire`].
//! - [`projection`]: `notification_by_id`, `notifications_by_recipient` and
//!   the latency samples the latency route folds into histograms.
//! - [`follow_ups`]: the pure reaction (a queued notification is delivered).
//! - [`providers`]: the configured provider chains and their adapters
//!   (HTTP provider APIs, the local sink).
//! - [`delivery`]: one attempt through a chain of breakers, and what it
//!   records; [`retry`]: the `notify.retry` consumer.
//! - [`hooks`]: the order notices (confirmed, rejected, refunded): process
//!   managers over the orders and payments logs, notify's read models of
//!   orders and users, and their relays.
//! - [`latency`]: HdrHistograms against the 150 ms P99 SLA.
//! - [`routes`]: the HTTP routes.
//!
//! What delivery guarantees, and why: `src/design.md`.

pub mod delivery;
pub mod domain;
pub mod follow_ups;
pub mod hooks;
pub mod latency;
pub mod projection;
pub mod providers;
pub mod retry;
pub mod routes;
pub mod wire;

#[cfg(test)]
mod replay_tests;

use std::sync::Arc;

use foldline_contracts::topology::TopicKind;
use foldline_gateway::EdgeDeclaration;
use foldline_platform::dlq::DeadLetters;
use foldline_platform::kafka;
use foldline_platform::outbox::{self, Outbox, Reactions};
use foldline_platform::service::{DomainTopics, RoleContext, RoleFuture, ServiceError};
use foldline_platform::store::Migration;
use foldline_platform::DomainService;

pub use crate::follow_ups::NotifyFollowUps;
use crate::hooks::read_models::{Contacts, OrderCustomers};
use crate::hooks::{OrderNotices, RefundNotices};
pub use crate::projection::NotifyProjection;
pub use crate::wire::NotifyWire;

/// The domain's name in `topology/topology.toml`.
pub const DOMAIN: &str = "notify";

/// The CQL tables of this domain, for `foldline migrate`.
pub const CQL_MIGRATIONS: &[Migration] = &[
    Migration {
        id: "0007_notify",
        cql: include_str!("../../../schemas/cql/0007_notify.cql"),
    },
    Migration {
        id: "0011_notify_notices",
        cql: include_str!("../../../schemas/cql/0011_notify_notices.cql"),
    },
];
const DELIVERY_WORKER: &str = "delivery worker";

/// The notify processor, projections and delivery worker, and the order
/// notices' read models, process managers and relays, runnable by name.
pub fn service() -> DomainService {
    DomainService::new::<NotifyWire>(DOMAIN)
        .with_projection::<NotifyProjection>()
        .with_projection::<Outbox<NotifyFollowUps>>()
        .with_record_projection::<OrderCustomers>()
        .with_record_projection::<Contacts>()
        .with_record_projection::<Reactions<OrderNotices>>()
        .with_record_projection::<Reactions<RefundNotices>>()
        .with_worker(DELIVERY_WORKER, run_delivery)
        .with_worker(hooks::relay::ORDERS_RELAY, hooks::relay::run_orders_relay)
        .with_worker(
            hooks::relay::PAYMENTS_RELAY,
            hooks::relay::run_payments_relay,
        )
}

/// The notify routes and how clients name a notification.
pub fn edge() -> EdgeDeclaration {
    EdgeDeclaration {
        domain: DOMAIN,
        noun: "notification",
        collection: "/v1/notifications",
        routes: routes::router,
        personal_data: false,
    }
}

fn start_error(reason: impl ToString) -> ServiceError {
    ServiceError::WorkerStart {
        worker: DELIVERY_WORKER,
        reason: reason.to_string(),
    }
}

/// The outbox relay (first attempts) and the retry consumer (later ones),
/// sharing one set of provider breakers.
fn run_delivery(domain: &'static str, context: RoleContext) -> RoleFuture {
    Box::pin(async move {
        let topics = DomainTopics::resolve(&context.config, &context.topology, domain)?;
        let declared = context.topology.domain(domain)?;
        let retry_topic = context.config.prefixed(&declared.topic(TopicKind::Retry));
        let retry_group = declared
            .retry_group()
            .map(|group| context.config.prefixed(&group.name))
            .ok_or_else(|| start_error("the topology declares no retry group for notify"))?;
        let notify = &context.config.notify;
        let chains = delivery::ProviderChains::new(notify, &context.store).map_err(start_error)?;
        let producer: rdkafka::producer::FutureProducer =
            kafka::producer_config(&context.config.kafka, "foldline-notify-delivery")
                .create()
                .map_err(start_error)?;
        let deliverer = Arc::new(delivery::Deliverer {
            chains: Arc::new(chains),
            schedule: delivery::RetrySchedule::new(notify),
            store: context.store.clone(),
            producer: producer.clone(),
            codec: context.codec.clone(),
            commands_topic: topics.commands.clone(),
            retry_topic,
        });
        let dead_letters = DeadLetters::new(producer, topics.dlq.clone(), retry_group.clone());
        let consumer_config = kafka::group_consumer_config(
            &context.config.kafka,
            "foldline-notify-retry",
            &retry_group,
        );
        // Enough first attempts in flight per partition to fill every
        // channel's places: a slow channel holds its own places, not the
        // others' (the channel limits are in the chains).
        let in_flight = notify
            .in_flight_per_channel
            .saturating_mul(domain::Channel::ALL.len());
        let in_flight = std::num::NonZeroUsize::new(in_flight)
            .ok_or_else(|| start_error("notify.in_flight_per_channel must be at least 1"))?;
        let relay = outbox::relay_in_flight::<NotifyFollowUps, _>(
            delivery::FirstAttempts(Arc::clone(&deliverer)),
            context.store.clone(),
            topics.partitions,
            in_flight,
            context.shutdown.clone(),
        );
        let retries = retry::run(
            deliverer,
            consumer_config,
            dead_letters,
            context.shutdown.clone(),
        );
        let (relayed, retried) = tokio::join!(relay, retries);
        relayed?;
        retried.map_err(start_error)?;
        Ok(())
    })
}

#[cfg(test)]
mod cql_tests {
    use super::CQL_MIGRATIONS;
    use crate::delivery::NOTIFY_DELIVERIES;
    use crate::hooks::read_models::{NOTIFY_CONTACTS, NOTIFY_ORDER_CUSTOMERS};
    use crate::hooks::relay::NOTIFY_ORDER_NOTICES;
    use crate::projection::{
        NOTIFICATIONS_BY_RECIPIENT, NOTIFICATION_BY_ID, NOTIFY_LATENCY_PROVIDERS,
        NOTIFY_LATENCY_SAMPLES,
    };
    use crate::providers::NOTIFICATION_SINK;

    #[test]
    fn the_cql_migration_creates_every_table() {
        let cql = CQL_MIGRATIONS
            .iter()
            .flat_map(|migration| foldline_platform::store::migrations::statements(migration.cql))
            .collect::<Vec<_>>()
            .join("\n");
        for table in [
            NOTIFICATION_BY_ID,
            NOTIFICATIONS_BY_RECIPIENT,
            NOTIFY_LATENCY_SAMPLES,
            NOTIFY_LATENCY_PROVIDERS,
            NOTIFY_DELIVERIES,
            NOTIFICATION_SINK,
            NOTIFY_ORDER_CUSTOMERS,
            NOTIFY_CONTACTS,
            NOTIFY_ORDER_NOTICES,
        ] {
            assert!(
                cql.contains(&format!("CREATE TABLE IF NOT EXISTS {table} (")),
                "{table}"
            );
        }
    }
}
