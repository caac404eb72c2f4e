//! The orders domain service.
//!
//! # Layout
//! - [`domain`]: the pure Order decider: values, commands, events, state,
//!   rejections. No I/O.
//! - [`wire`]: the field mapping between domain types and the Avro records
//!   of `foldline-contracts`, declared to the platform as [`OrdersWire`].
//! - [`projection`]: the read models (`order_by_id`, `orders_by_customer`)
//!   as a pure projection of admitted events, and their row formats.
//! - [`routes`]: the HTTP routes.
//!
//! Everything generic (deciding and stamping records, the gate, the
//! outcome table, running loops, the command flow over HTTP) is the
//! platform's and the gateway's; [`service`] and [`edge`] are this domain's
//! whole declaration.

pub mod domain;
pub mod projection;
pub mod routes;
pub mod saga;
pub mod wire;

#[cfg(test)]
mod replay_tests;

use foldline_contracts::payments::PaymentsEventRecord;
use foldline_gateway::EdgeDeclaration;
use foldline_platform::outbox::Reactions;
use foldline_platform::store::Migration;
use foldline_platform::timeline::{RecordTimeline, Timeline, TimelineSource};
use foldline_platform::DomainService;

use crate::saga::customers::Customers;
use crate::saga::{OrdersSaga, PaymentDeadlines, PaymentsSaga};

pub use crate::projection::OrdersProjection;
pub use crate::wire::OrdersWire;

/// The domain's name in `topology/topology.toml`.
pub const DOMAIN: &str = "orders";

/// The CQL tables of the orders projections (`schemas/cql/`), applied by
/// `foldline migrate` after the platform's.
pub const CQL_MIGRATIONS: &[Migration] = &[
    Migration {
        id: "0002_orders",
        cql: include_str!("../../../schemas/cql/0002_orders.cql"),
    },
    Migration {
        id: "0009_orders_saga",
        cql: include_str!("../../../schemas/cql/0009_orders_saga.cql"),
    },
];

/// The payments events an order's timeline lists beside its own.
#[derive(Debug)]
pub struct PaymentsTimeline;

impl TimelineSource for PaymentsTimeline {
    type Events = PaymentsEventRecord;
    const DOMAIN: &'static str = "payments";
    const PROJECTION: &'static str = "timeline_payments";
}

/// The orders processor and projections, and the saga's process managers
/// and relays, runnable by name.
pub fn service() -> DomainService {
    DomainService::new::<OrdersWire>(DOMAIN)
        .with_projection::<OrdersProjection>()
        .with_projection::<Timeline<OrdersWire>>()
        .with_record_projection::<RecordTimeline<PaymentsTimeline>>()
        .with_record_projection::<Customers>()
        .with_record_projection::<Reactions<OrdersSaga>>()
        .with_record_projection::<Reactions<PaymentsSaga>>()
        .with_record_projection::<Reactions<PaymentDeadlines>>()
        .with_worker(saga::relay::ORDERS_RELAY, saga::relay::run_orders_relay)
        .with_worker(
            saga::relay::DEADLINES_RELAY,
            saga::relay::run_deadlines_relay,
        )
        .with_worker(saga::relay::PAYMENTS_RELAY, saga::relay::run_payments_relay)
}

/// The orders routes and how clients name an order.
pub fn edge() -> EdgeDeclaration {
    EdgeDeclaration {
        domain: DOMAIN,
        noun: "order",
        collection: "/v1/orders",
        routes: routes::router,
        personal_data: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::{ORDERS_BY_CUSTOMER, ORDER_BY_ID};

    #[test]
    fn every_table_the_projection_writes_has_a_cql_migration() {
        let cql = CQL_MIGRATIONS
            .iter()
            .flat_map(|migration| foldline_platform::store::migrations::statements(migration.cql))
            .collect::<Vec<_>>()
            .join("\n");
        for table in [
            ORDER_BY_ID,
            ORDERS_BY_CUSTOMER,
            crate::saga::customers::CUSTOMERS,
        ] {
            assert!(
                cql.contains(&format!("CREATE TABLE IF NOT EXISTS {table} (")),
                "{table}"
            );
        }
    }
}
