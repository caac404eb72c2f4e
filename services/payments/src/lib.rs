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
//!
//! The effect step (calling the payment provider outside `decide`) is
//! explained in `src/design.md`.

pub mod domain;
pub mod projection;
pub mod routes;
pub mod wire;

use foldline_gateway::EdgeDeclaration;
use foldline_platform::store::Migration;
use foldline_platform::DomainService;

pub use crate::projection::PaymentsProjection;
pub use crate::wire::PaymentsWire;

/// The domain's name in `topology/topology.toml`.
pub const DOMAIN: &str = "payments";

/// The CQL tables of this domain's projections, for `foldline migrate`
/// (the outbox tables it also uses are the platform's).
pub const CQL_MIGRATIONS: &[Migration] = &[Migration {
    id: "0005_payments",
    cql: include_str!("../../../schemas/cql/0005_payments.cql"),
}];

/// The payments processor and projections, runnable by name.
pub fn service() -> DomainService {
    DomainService::new::<PaymentsWire>(DOMAIN).with_projection::<PaymentsProjection>()
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
