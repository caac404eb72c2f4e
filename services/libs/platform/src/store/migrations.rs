//! CQL schema migrations: the `.cql` files of `schemas/cql/`, applied in
//! id order by `foldline migrate` (or at start-up with
//! `store.scylla.migrate_on_start`), each once, under a lock.
//!
//! - The keyspace and two bookkeeping tables (`schema_migrations`: what was
//!   applied, with the file's checksum; `schema_migration_lock`: one row)
//!   are created first with `IF NOT EXISTS`.
//! - The lock is a lightweight transaction (`INSERT … IF NOT EXISTS USING
//!   TTL`), so of two replicas starting together one migrates and the other
//!   waits, then finds nothing pending. Concurrent schema changes are what
//!   CQL clusters handle worst; the TTL frees the lock of a migrator that
//!   died holding it.
//! - A migration already applied whose file changed since is an error: a
//!   migration is never edited, a new one is added.

use std::time::Duration;

use futures::TryStreamExt;
use scylla::client::session::Session;
use sha2::{Digest, Sha256};

use super::scylla::connect;
use super::StoreError;
use crate::config::ScyllaConfig;

/// One migration file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migration {
    /// Sorts in application order, e.g. `0001_platform`.
    pub id: &'static str,
    pub cql: &'static str,
}

/// The platform's tables: gate, checkpoints, snapshots, gateway records.
pub const PLATFORM: &[Migration] = &[
    Migration {
        id: "0001_platform",
        cql: include_str!("../../../../../schemas/cql/0001_platform.cql"),
    },
    Migration {
        id: "0003_platform_outbox",
        cql: include_str!("../../../../../schemas/cql/0003_platform_outbox.cql"),
    },
    Migration {
        id: "0008_platform_timeline",
        cql: include_str!("../../../../../schemas/cql/0008_platform_timeline.cql"),
    },
];

/// How long a migrator waits for another one's lock.
const LOCK_WAIT: Duration = Duration::from_secs(120);
/// A dead migrator's lock expires after this.
const LOCK_TTL_SECONDS: u32 = 300;
const LOCK_POLL: Duration = Duration::from_millis(500);

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<&'static str>,
    pub already_applied: Vec<&'static str>,
}

/// The statements of a file: `--` comments dropped, split at `;`.
pub fn statements(cql: &str) -> Vec<String> {
    let without_comments: String = cql
        .lines()
        .map(|line| match line.find("--") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|statement| !statement.is_empty())
        .map(str::to_owned)
        .collect()
}

fn checksum(cql: &str) -> String {
    Sha256::digest(cql.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn failed(action: &str, error: impl std::fmt::Display) -> StoreError {
    // Schema statements fail for good (syntax, rights) or for now (no
    // quorum); the operator reruns either way, so one kind serves.
    StoreError::Unavailable(format!("cannot {action}: {error}"))
}

fn sorted(migrations: &[Migration]) -> Result<Vec<Migration>, StoreError> {
    let mut sorted = migrations.to_vec();
    sorted.sort_by_key(|migration| migration.id);
    for pair in sorted.windows(2) {
        if pair[0].id == pair[1].id {
            return Err(StoreError::Rejected(format!(
                "two migrations share the id {}",
                pair[0].id
            )));
        }
    }
    Ok(sorted)
}

async fn run(session: &Session, action: &str, statement: String) -> Result<(), StoreError> {
    session
        .query_unpaged(statement, ())
        .await
        .map_err(|error| failed(action, error))?;
    Ok(())
}

async fn bookkeeping(session: &Session, config: &ScyllaConfig) -> Result<(), StoreError> {
    let keyspace = &config.keyspace;
    run(
        session,
        "create the keyspace",
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {{'class': 'NetworkTopologyStrategy', 'replication_factor': {}}}",
            config.replication_factor
        ),
    )
    .await?;
    run(
        session,
        "create the migrations table",
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations (id text PRIMARY KEY, checksum text, applied_at timestamp)"
        ),
    )
    .await?;
    run(
        session,
        "create the migration lock table",
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.schema_migration_lock (name text PRIMARY KEY, owner uuid)"
        ),
    )
    .await
}

/// Which migrations are recorded as applied, with their checksums.
async fn applied(session: &Session, keyspace: &str) -> Result<Vec<(String, String)>, StoreError> {
    let action = "read the applied migrations";
    let pager = session
        .query_iter(
            format!("SELECT id, checksum FROM {keyspace}.schema_migrations"),
            (),
        )
        .await
        .map_err(|error| failed(action, error))?;
    pager
        .rows_stream::<(String, String)>()
        .map_err(|error| failed(action, error))?
        .try_collect()
        .await
        .map_err(|error| failed(action, error))
}

/// The migrations not applied yet, in order; an error when an applied one
/// changed since.
async fn pending_in(
    session: &Session,
    keyspace: &str,
    migrations: &[Migration],
) -> Result<(Vec<Migration>, Vec<&'static str>), StoreError> {
    let applied = applied(session, keyspace).await?;
    let mut pending = Vec::new();
    let mut done = Vec::new();
    for migration in sorted(migrations)? {
        match applied.iter().find(|(id, _)| id == migration.id) {
            Some((_, recorded)) if *recorded == checksum(migration.cql) => done.push(migration.id),
            Some(_) => {
                return Err(StoreError::Rejected(format!(
                    "migration {} changed after it was applied to keyspace {keyspace}: add a new migration instead",
                    migration.id
                )))
            }
            None => pending.push(migration),
        }
    }
    Ok((pending, done))
}

/// The ids of migrations not yet applied (start-up refuses to run on a
/// keyspace with any).
pub async fn pending(
    session: &Session,
    config: &ScyllaConfig,
    migrations: &[Migration],
) -> Result<Vec<&'static str>, StoreError> {
    let (pending, _) = pending_in(session, &config.keyspace, migrations).await?;
    Ok(pending.iter().map(|migration| migration.id).collect())
}

/// Connects and applies what is pending (see the module docs).
pub async fn migrate(
    config: &ScyllaConfig,
    migrations: &[Migration],
) -> Result<MigrationReport, StoreError> {
    let session = connect(config).await?;
    migrate_on(&session, config, migrations).await
}

pub(crate) async fn migrate_on(
    session: &Session,
    config: &ScyllaConfig,
    migrations: &[Migration],
) -> Result<MigrationReport, StoreError> {
    bookkeeping(session, config).await?;
    let owner = uuid::Uuid::new_v4();
    acquire(session, &config.keyspace, owner).await?;
    let result = apply_pending(session, &config.keyspace, migrations).await;
    let released = release(session, &config.keyspace, owner).await;
    let report = result?;
    released?;
    Ok(report)
}

async fn apply_pending(
    session: &Session,
    keyspace: &str,
    migrations: &[Migration],
) -> Result<MigrationReport, StoreError> {
    let (pending, already_applied) = pending_in(session, keyspace, migrations).await?;
    let mut report = MigrationReport {
        applied: Vec::new(),
        already_applied,
    };
    session
        .use_keyspace(keyspace, false)
        .await
        .map_err(|error| failed("use the keyspace", error))?;
    let record = session
        .prepare(format!(
            "INSERT INTO {keyspace}.schema_migrations (id, checksum, applied_at) VALUES (?, ?, toTimestamp(now()))"
        ))
        .await
        .map_err(|error| failed("prepare the migration record", error))?;
    for migration in pending {
        for statement in statements(migration.cql) {
            run(
                session,
                &format!("apply migration {}", migration.id),
                statement,
            )
            .await?;
        }
        session
            .execute_unpaged(&record, (migration.id, checksum(migration.cql)))
            .await
            .map_err(|error| failed("record an applied migration", error))?;
        tracing::info!(migration = migration.id, keyspace, "applied migration");
        report.applied.push(migration.id);
    }
    Ok(report)
}

async fn acquire(session: &Session, keyspace: &str, owner: uuid::Uuid) -> Result<(), StoreError> {
    let take = session
        .prepare(format!(
            "INSERT INTO {keyspace}.schema_migration_lock (name, owner) VALUES ('migrate', ?) IF NOT EXISTS USING TTL {LOCK_TTL_SECONDS}"
        ))
        .await
        .map_err(|error| failed("prepare the migration lock", error))?;
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        let answer = session
            .execute_unpaged(&take, (owner,))
            .await
            .map_err(|error| failed("take the migration lock", error))?
            .into_rows_result()
            .map_err(|error| failed("read the migration lock answer", error))?;
        let (applied,) = answer
            .first_row::<(bool,)>()
            .or_else(|_| {
                answer
                    .first_row::<(bool, Option<String>, Option<uuid::Uuid>)>()
                    .map(|(applied, _, _)| (applied,))
            })
            .map_err(|error| failed("read the migration lock answer", error))?;
        if applied {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "another migrator held the migration lock of keyspace {keyspace} for {}s",
                LOCK_WAIT.as_secs()
            )));
        }
        tracing::info!(keyspace, "another replica is migrating, waiting");
        tokio::time::sleep(LOCK_POLL).await;
    }
}

async fn release(session: &Session, keyspace: &str, owner: uuid::Uuid) -> Result<(), StoreError> {
    session
        .query_unpaged(
            format!(
                "DELETE FROM {keyspace}.schema_migration_lock WHERE name = 'migrate' IF owner = ?"
            ),
            (owner,),
        )
        .await
        .map_err(|error| failed("release the migration lock", error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_semicolons_without_comments() {
        let cql = "-- a table; with a semicolon in a comment\nCREATE TABLE a (x int PRIMARY KEY);\n\n  CREATE TABLE b (y int PRIMARY KEY); -- trailing\n";
        assert_eq!(
            statements(cql),
            vec![
                "CREATE TABLE a (x int PRIMARY KEY)".to_owned(),
                "CREATE TABLE b (y int PRIMARY KEY)".to_owned()
            ]
        );
    }

    #[test]
    fn the_platform_migration_creates_every_platform_table() {
        let cql = PLATFORM
            .iter()
            .flat_map(|migration| statements(migration.cql))
            .collect::<Vec<_>>()
            .join("\n");
        for table in [
            crate::gated::AGGREGATE_VERSIONS,
            crate::gated::COMMAND_OUTCOMES,
            crate::gated::SETTLED_COMMANDS,
            crate::outbox::OUTBOX,
            crate::outbox::OUTBOX_CURSORS,
            crate::timeline::TIMELINE,
            crate::timeline::TIMELINE_AGGREGATES,
            crate::personal_data::DATA_KEYS,
            "processor_snapshots",
            "accepted_commands",
            "idempotency_keys",
            "projector_checkpoints",
        ] {
            assert!(
                cql.contains(&format!("CREATE TABLE IF NOT EXISTS {table} (")),
                "{table}"
            );
        }
    }

    #[test]
    fn duplicate_ids_are_refused_and_order_is_by_id() {
        let first = Migration {
            id: "0001_a",
            cql: "",
        };
        let second = Migration {
            id: "0002_b",
            cql: "",
        };
        assert_eq!(sorted(&[second, first]).unwrap(), vec![first, second]);
        assert!(matches!(
            sorted(&[first, first]),
            Err(StoreError::Rejected(_))
        ));
        assert_ne!(checksum("a"), checksum("b"));
    }
}
