//! The store contract (its cases are in the harness,
//! `foldline_testcontainers::store_contract`, shared with
//! `foldline-containers`), run here once per case against the embedded
//! store (in memory and on disk) and against a real CQL server (Apache
//! Cassandra 5, started by the harness; a server that does not start fails
//! these tests); then what only the CQL store has: its schema, migrations
//! and their lock.
//!
//! The CQL tests share one keyspace, migrated once by the first test (the
//! platform's migrations plus the suite's own table); each case writes
//! under partitions and checkpoint names of its own.

use std::sync::OnceLock;

use foldline_platform::config::{CqlConsistency, ScyllaConfig};
use foldline_platform::store::migrations::{self, Migration};
use foldline_platform::store::{RowKey, Store, StoreError};
use foldline_testcontainers::store_contract::{
    row, unique, upsert, CONTRACT_MIGRATION, CONTRACT_TABLE, CQL_PAGE_SIZE,
};
use foldline_testcontainers::{cassandra, unique_keyspace};

fn all_migrations() -> Vec<Migration> {
    foldline_testcontainers::store_contract::migrations()
}

/// The configuration of the suite's keyspace on the harness's server:
/// single node, so consistency ONE.
fn cql_config() -> ScyllaConfig {
    static KEYSPACE: OnceLock<String> = OnceLock::new();
    let server = cassandra().expect("the cql server starts");
    ScyllaConfig {
        contact_points: vec![server.contact_point().to_owned()],
        keyspace: KEYSPACE.get_or_init(|| unique_keyspace("contract")).clone(),
        consistency: CqlConsistency::One,
        replication_factor: 1,
        page_size: CQL_PAGE_SIZE,
        ..ScyllaConfig::default()
    }
}

/// Migrates the suite's keyspace once (on a runtime of its own: each test
/// has its own runtime, and a session lives on the runtime that made it).
fn migrated_cql_config() -> ScyllaConfig {
    static MIGRATED: OnceLock<Result<(), String>> = OnceLock::new();
    let config = cql_config();
    let outcome = MIGRATED.get_or_init(|| {
        let config = config.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            runtime
                .block_on(migrations::migrate(&config, &all_migrations()))
                .map(|_| ())
                .map_err(|error| error.to_string())
        })
        .join()
        .unwrap_or_else(|_| Err("the migration thread panicked".to_owned()))
    });
    if let Err(error) = outcome {
        panic!("cannot migrate the contract keyspace: {error}");
    }
    config
}

async fn cql_store() -> Store {
    Store::connect_scylla(&migrated_cql_config(), &all_migrations())
        .await
        .expect("connect to the migrated cql store")
}

/// Declares each contract case as a test once per backend, and checks that
/// the list names every shared case.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        #[test]
        fn every_shared_case_runs_on_every_backend_here() {
            let declared = [$(stringify!($name)),*];
            let shared: Vec<&str> = foldline_testcontainers::store_contract::CASES
                .iter()
                .map(|case| case.name)
                .collect();
            assert_eq!(declared.to_vec(), shared, "declare every case of the harness's store contract below");
        }
        mod embedded_in_memory {
            use foldline_testcontainers::store_contract as contract;
            $(
                #[tokio::test]
                async fn $name() {
                    contract::$name(foldline_platform::store::Store::in_memory()).await;
                }
            )*
        }
        mod embedded_on_disk {
            use foldline_testcontainers::store_contract as contract;
            $(
                #[tokio::test]
                async fn $name() {
                    let directory = tempfile::tempdir().unwrap();
                    contract::$name(
                        foldline_platform::store::Store::open_embedded(directory.path()).unwrap(),
                    )
                    .await;
                }
            )*
        }
        mod cql {
            use foldline_testcontainers::store_contract as contract;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    contract::$name(super::cql_store().await).await;
                }
            )*
        }
    };
}

contract!(
    an_older_or_equal_position_never_overwrites_a_newer_row,
    two_writers_racing_converge_on_the_newest_position,
    scans_stay_in_one_partition_in_unsigned_byte_order_with_paging,
    a_batch_writes_every_row_and_its_checkpoints,
    insert_if_absent_keeps_the_first_row,
    racing_inserts_if_absent_agree_on_one_winner,
    put_overwrites_unconditionally,
    empty_values_and_binary_keys_round_trip,
);

// What only the CQL store has: a schema, migrations and their lock.

fn fresh_keyspace_config() -> ScyllaConfig {
    ScyllaConfig {
        keyspace: unique_keyspace("migrate"),
        ..cql_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cql_a_keyspace_with_pending_migrations_is_refused_until_migrated() {
    let config = fresh_keyspace_config();
    let refused = Store::connect_scylla(&config, &all_migrations())
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("foldline migrate"),
        "{refused}"
    );
    migrations::migrate(&config, migrations::PLATFORM)
        .await
        .unwrap();
    let refused = Store::connect_scylla(&config, &all_migrations())
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::Rejected(reason) if reason.contains("9000_contract_rows")),
        "{refused}"
    );
    let report = migrations::migrate(&config, &all_migrations())
        .await
        .unwrap();
    assert_eq!(report.applied, vec!["9000_contract_rows"]);
    let platform: Vec<&str> = migrations::PLATFORM
        .iter()
        .map(|migration| migration.id)
        .collect();
    assert_eq!(report.already_applied, platform);
    Store::connect_scylla(&config, &all_migrations())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cql_replicas_migrating_together_apply_each_migration_once() {
    let config = ScyllaConfig {
        migrate_on_start: true,
        ..fresh_keyspace_config()
    };
    let migrations = all_migrations();
    let (first, second) = tokio::join!(
        migrations::migrate(&config, &migrations),
        migrations::migrate(&config, &migrations)
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    let mut applied = first.applied.clone();
    applied.extend(second.applied.iter());
    applied.sort_unstable();
    let mut expected: Vec<&str> = migrations::PLATFORM
        .iter()
        .map(|migration| migration.id)
        .collect();
    expected.push("9000_contract_rows");
    assert_eq!(applied, expected);
    // And a replica starting with migrate_on_start finds nothing to do.
    let store = Store::connect_scylla(&config, &migrations).await.unwrap();
    let key = RowKey::new(CONTRACT_TABLE, unique("after-migrate"), Vec::new());
    store.write(upsert(&key, row(1, "ok"))).await.unwrap();
    assert_eq!(store.get(key).await.unwrap(), Some(row(1, "ok")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cql_an_edited_migration_is_refused() {
    let config = fresh_keyspace_config();
    migrations::migrate(&config, &all_migrations())
        .await
        .unwrap();
    let edited = Migration {
        cql: "CREATE TABLE IF NOT EXISTS contract_rows (partition blob PRIMARY KEY);",
        ..CONTRACT_MIGRATION
    };
    let mut changed = migrations::PLATFORM.to_vec();
    changed.push(edited);
    let error = migrations::migrate(&config, &changed).await.unwrap_err();
    assert!(
        error.to_string().contains("changed after it was applied"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cql_a_table_without_a_migration_is_a_permanent_error() {
    let store = cql_store().await;
    let error = store
        .get(RowKey::new("never_migrated", b"p".to_vec(), Vec::new()))
        .await
        .unwrap_err();
    assert!(!error.is_transient(), "{error}");
    assert!(error.to_string().contains("foldline migrate"), "{error}");
    let error = store
        .get(RowKey::new("Not-A-Table", b"p".to_vec(), Vec::new()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Rejected(_)), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cql_an_unreachable_server_is_a_transient_error_naming_it() {
    let config = ScyllaConfig {
        contact_points: vec![format!(
            "127.0.0.1:{}",
            foldline_testcontainers::free_port().unwrap()
        )],
        request_timeout_ms: 2_000,
        ..cql_config()
    };
    let error = Store::connect_scylla(&config, &all_migrations())
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(
        error.to_string().contains(&config.contact_points[0]),
        "{error}"
    );
}
