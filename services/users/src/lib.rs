//! The users domain service (user-service).
//!
//! # Layout
//! - [`domain`]: the pure decider of users and email claims: values,
//!   commands, events, state, rejections. No I/O, no plaintext.
//! - [`wire`]: the field mapping to the Avro records of `foldline-contracts`,
//!   declared to the platform as [`UsersWire`].
//! - [`projection`]: `user_by_id` and `user_by_email`, sealed values only.
//! - [`follow_ups`]: what an admitted event obliges next (claim then
//!   register, releases, key destruction) and the relay's I/O that does it.
//! - [`routes`]: the HTTP routes, where plaintext is sealed and opened.
//!
//! Email uniqueness and crypto-shredding are explained in `src/design.md`.

pub mod domain;
pub mod follow_ups;
pub mod projection;
pub mod routes;
pub mod wire;

#[cfg(test)]
mod replay_tests;

use foldline_gateway::EdgeDeclaration;
use foldline_platform::kafka;
use foldline_platform::outbox::{self, Outbox};
use foldline_platform::service::{DomainTopics, RoleContext, RoleFuture, ServiceError};
use foldline_platform::store::Migration;
use foldline_platform::DomainService;

pub use crate::follow_ups::UsersFollowUps;
pub use crate::projection::UsersProjection;
pub use crate::wire::UsersWire;

/// The domain's name in `topology/topology.toml`.
pub const DOMAIN: &str = "users";

/// The CQL tables of this domain's projections, for `foldline migrate`
/// (the outbox and data-key tables it also uses are the platform's).
pub const CQL_MIGRATIONS: &[Migration] = &[Migration {
    id: "0004_users",
    cql: include_str!("../../../schemas/cql/0004_users.cql"),
}];
const RELAY_WORKER: &str = "follow-up relay";

/// The users processor, projections and follow-up relay, runnable by name.
pub fn service() -> DomainService {
    DomainService::new::<UsersWire>(DOMAIN)
        .with_projection::<UsersProjection>()
        .with_projection::<Outbox<UsersFollowUps>>()
        .with_worker(RELAY_WORKER, run_relay)
}

/// The users routes and how clients name a user.
pub fn edge() -> EdgeDeclaration {
    EdgeDeclaration {
        domain: DOMAIN,
        noun: "user",
        collection: "/v1/users",
        routes: routes::router,
        personal_data: true,
    }
}

fn run_relay(domain: &'static str, context: RoleContext) -> RoleFuture {
    Box::pin(async move {
        let topics = DomainTopics::resolve(&context.config, &context.topology, domain)?;
        let producer = kafka::producer_config(&context.config.kafka, "foldline-users-relay")
            .create()
            .map_err(|error| ServiceError::WorkerStart {
                worker: RELAY_WORKER,
                reason: error.to_string(),
            })?;
        let performer = follow_ups::UsersPerformer {
            producer,
            codec: context.codec.clone(),
            commands_topic: topics.commands.clone(),
            store: context.store.clone(),
        };
        outbox::relay::<UsersFollowUps, _>(
            performer,
            context.store,
            topics.partitions,
            context.shutdown,
        )
        .await?;
        Ok(())
    })
}

#[cfg(test)]
mod cql_tests {
    use super::CQL_MIGRATIONS;
    use crate::projection::{USER_BY_EMAIL, USER_BY_ID};

    #[test]
    fn the_cql_migration_creates_every_projection_table() {
        let cql =
            foldline_platform::store::migrations::statements(CQL_MIGRATIONS[0].cql).join("\n");
        for table in [USER_BY_ID, USER_BY_EMAIL] {
            assert!(
                cql.contains(&format!("CREATE TABLE IF NOT EXISTS {table} (")),
                "{table}"
            );
        }
    }
}
