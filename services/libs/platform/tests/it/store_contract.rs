//! The store contract: one set of test functions, run against the embedded
//! store (in memory and on disk) and against a real CQL server (Apache
//! Cassandra 5, started by the harness; a server that does not start fails
//! these tests). Whatever a projector, the processor or the gateway relies
//! on is here, so a backend that passes can replace another.
//!
//! The CQL tests share one keyspace, migrated once by the first test (the
//! platform's migrations plus this suite's own table); each test writes
//! under partitions and checkpoint names of its own.

use std::sync::OnceLock;

use foldline_platform::config::{CqlConsistency, ScyllaConfig};
use foldline_platform::store::migrations::{self, Migration};
use foldline_platform::store::{Checkpoint, RowKey, Store, StoreError, StoredRow, WriteBatch};
use foldline_testcontainers::{cassandra, unique_keyspace};

/// The suite's own table, in the store's one row shape.
const CONTRACT_TABLE: &str = "contract_rows";
const CONTRACT_MIGRATION: Migration = Migration {
    id: "9000_contract_rows",
    cql: "CREATE TABLE IF NOT EXISTS contract_rows (partition blob, clustering blob, position bigint, value blob, PRIMARY KEY ((partition), clustering)) WITH CLUSTERING ORDER BY (clustering ASC);",
};
/// Small pages, so a scan of a few rows crosses page boundaries.
const CQL_PAGE_SIZE: u32 = 2;

fn all_migrations() -> Vec<Migration> {
    let mut all = migrations::PLATFORM.to_vec();
    all.push(CONTRACT_MIGRATION);
    all
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

fn row(position: i64, value: &str) -> StoredRow {
    StoredRow {
        position,
        value: value.as_bytes().to_vec(),
    }
}

/// A partition no other test (or run) writes.
fn unique(name: &str) -> Vec<u8> {
    format!("{name}-{}", uuid::Uuid::new_v4().simple()).into_bytes()
}

fn upsert(key: &RowKey, row: StoredRow) -> WriteBatch {
    WriteBatch {
        upserts: vec![(key.clone(), row)],
        checkpoints: vec![],
    }
}

async fn an_older_or_equal_position_never_overwrites_a_newer_row(store: Store) {
    let key = RowKey::new(CONTRACT_TABLE, unique("guard"), Vec::new());
    assert_eq!(store.get(key.clone()).await.unwrap(), None);
    store.write(upsert(&key, row(5, "v5"))).await.unwrap();
    store.write(upsert(&key, row(3, "v3"))).await.unwrap();
    assert_eq!(store.get(key.clone()).await.unwrap(), Some(row(5, "v5")));
    // A replay at the same position carries the same bytes: no change.
    store.write(upsert(&key, row(5, "v5"))).await.unwrap();
    assert_eq!(store.get(key.clone()).await.unwrap(), Some(row(5, "v5")));
    store.write(upsert(&key, row(6, "v6"))).await.unwrap();
    store.write(upsert(&key, row(0, "v0"))).await.unwrap();
    assert_eq!(store.get(key).await.unwrap(), Some(row(6, "v6")));
}

async fn two_writers_racing_converge_on_the_newest_position(store: Store) {
    // Two projector replicas during a rebalance: each writes the positions
    // it folded, in its own order; the newest wins whoever writes last.
    let key = RowKey::new(CONTRACT_TABLE, unique("race"), Vec::new());
    let writer = |positions: Vec<i64>| {
        let store = store.clone();
        let key = key.clone();
        tokio::spawn(async move {
            for position in positions {
                store
                    .write(upsert(&key, row(position, &format!("at {position}"))))
                    .await
                    .unwrap();
            }
        })
    };
    let old_owner = writer((0..40).collect());
    let new_owner = writer((20..60).rev().collect());
    old_owner.await.unwrap();
    new_owner.await.unwrap();
    assert_eq!(store.get(key).await.unwrap(), Some(row(59, "at 59")));
}

async fn scans_stay_in_one_partition_in_unsigned_byte_order_with_paging(store: Store) {
    let partition = unique("scan");
    let mut neighbour = partition.clone();
    neighbour.push(b'x');
    let clusterings: [&[u8]; 6] = [b"\xff", b"\x00", b"\x80", b"\x7f", b"\x00\x01", b"b"];
    let mut batch = WriteBatch::default();
    for clustering in clusterings {
        batch.upserts.push((
            RowKey::new(CONTRACT_TABLE, partition.clone(), clustering.to_vec()),
            row(1, "in"),
        ));
    }
    batch.upserts.push((
        RowKey::new(CONTRACT_TABLE, neighbour.clone(), b"\x00".to_vec()),
        row(1, "neighbour"),
    ));
    store.write(batch).await.unwrap();

    let everything = store
        .scan(CONTRACT_TABLE, partition.clone(), None, 100)
        .await
        .unwrap();
    let order: Vec<Vec<u8>> = everything.iter().map(|(key, _)| key.clone()).collect();
    let expected: Vec<Vec<u8>> = [&b"\x00"[..], b"\x00\x01", b"b", b"\x7f", b"\x80", b"\xff"]
        .iter()
        .map(|bytes| bytes.to_vec())
        .collect();
    assert_eq!(order, expected, "unsigned byte order, one partition only");
    assert!(everything.iter().all(|(_, row)| row.value == b"in"));

    // Pages: `limit` rows strictly after the cursor, across server pages.
    let first = store
        .scan(CONTRACT_TABLE, partition.clone(), None, 3)
        .await
        .unwrap();
    assert_eq!(first.len(), 3);
    let cursor = first[2].0.clone();
    let rest = store
        .scan(CONTRACT_TABLE, partition.clone(), Some(cursor), 10)
        .await
        .unwrap();
    let rest: Vec<Vec<u8>> = rest.into_iter().map(|(key, _)| key).collect();
    assert_eq!(rest, expected[3..].to_vec());
    assert!(store
        .scan(CONTRACT_TABLE, partition.clone(), None, 0)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .scan(CONTRACT_TABLE, unique("empty"), None, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn a_batch_writes_every_row_and_its_checkpoints(store: Store) {
    let projector = format!("p-{}", uuid::Uuid::new_v4().simple());
    let topic = "orders.events";
    assert_eq!(store.checkpoint(&projector, topic, 0).await.unwrap(), None);
    let keys: Vec<RowKey> = (0..20)
        .map(|index| RowKey::new(CONTRACT_TABLE, unique("batch"), vec![index]))
        .collect();
    let checkpoint = |partition, next_offset| Checkpoint {
        projector: projector.clone(),
        topic: topic.to_owned(),
        partition,
        next_offset,
    };
    store
        .write(WriteBatch {
            upserts: keys
                .iter()
                .enumerate()
                .map(|(offset, key)| (key.clone(), row(offset as i64, "batched")))
                .collect(),
            checkpoints: vec![checkpoint(0, 20), checkpoint(3, 7)],
        })
        .await
        .unwrap();
    for (offset, key) in keys.iter().enumerate() {
        assert_eq!(
            store.get(key.clone()).await.unwrap(),
            Some(row(offset as i64, "batched"))
        );
    }
    assert_eq!(
        store.checkpoint(&projector, topic, 0).await.unwrap(),
        Some(20)
    );
    assert_eq!(
        store.checkpoint(&projector, topic, 3).await.unwrap(),
        Some(7)
    );
    assert_eq!(store.checkpoint(&projector, topic, 1).await.unwrap(), None);
    assert_eq!(
        store
            .checkpoint(&projector, "other.events", 0)
            .await
            .unwrap(),
        None
    );
    // The latest checkpoint write is the checkpoint, forwards or back.
    store
        .write(WriteBatch {
            upserts: vec![],
            checkpoints: vec![checkpoint(0, 25)],
        })
        .await
        .unwrap();
    assert_eq!(
        store.checkpoint(&projector, topic, 0).await.unwrap(),
        Some(25)
    );
    store.write(WriteBatch::default()).await.unwrap();
}

async fn insert_if_absent_keeps_the_first_row(store: Store) {
    let key = RowKey::new(CONTRACT_TABLE, unique("lwt"), Vec::new());
    assert_eq!(
        store
            .insert_if_absent(key.clone(), row(0, "first"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .insert_if_absent(key.clone(), row(0, "second"))
            .await
            .unwrap(),
        Some(row(0, "first"))
    );
    assert_eq!(store.get(key).await.unwrap(), Some(row(0, "first")));
}

async fn racing_inserts_if_absent_agree_on_one_winner(store: Store) {
    let key = RowKey::new(CONTRACT_TABLE, unique("lwt-race"), Vec::new());
    let attempts: Vec<_> = (0..4)
        .map(|attempt| {
            let store = store.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let mine = row(0, &format!("gateway {attempt}"));
                let existing = store.insert_if_absent(key, mine.clone()).await.unwrap();
                existing.unwrap_or(mine)
            })
        })
        .collect();
    let mut seen = Vec::new();
    for attempt in attempts {
        seen.push(attempt.await.unwrap());
    }
    assert!(seen.windows(2).all(|pair| pair[0] == pair[1]), "{seen:?}");
    assert_eq!(store.get(key).await.unwrap(), Some(seen[0].clone()));
}

async fn put_overwrites_unconditionally(store: Store) {
    let key = RowKey::new(CONTRACT_TABLE, unique("put"), 7_i32.to_be_bytes().to_vec());
    store
        .put(key.clone(), row(9, "snapshot at 9"))
        .await
        .unwrap();
    store
        .put(key.clone(), row(4, "snapshot at 4"))
        .await
        .unwrap();
    assert_eq!(store.get(key).await.unwrap(), Some(row(4, "snapshot at 4")));
}

async fn empty_values_and_binary_keys_round_trip(store: Store) {
    let key = RowKey::new(CONTRACT_TABLE, vec![0, 0xff, 0], vec![0xff, 0]);
    let empty = StoredRow {
        position: 2,
        value: Vec::new(),
    };
    store
        .write(upsert(
            &key,
            StoredRow {
                position: 1,
                value: vec![0; 3],
            },
        ))
        .await
        .unwrap();
    store.write(upsert(&key, empty.clone())).await.unwrap();
    assert_eq!(store.get(key.clone()).await.unwrap(), Some(empty));
    let missing = RowKey::new(CONTRACT_TABLE, unique("missing"), vec![1]);
    assert_eq!(store.get(missing).await.unwrap(), None);
}

/// Declares each contract test once per backend.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod embedded_in_memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(foldline_platform::store::Store::in_memory().unwrap()).await;
                }
            )*
        }
        mod embedded_on_disk {
            $(
                #[tokio::test]
                async fn $name() {
                    let directory = tempfile::tempdir().unwrap();
                    super::$name(
                        foldline_platform::store::Store::open_embedded(directory.path()).unwrap(),
                    )
                    .await;
                }
            )*
        }
        mod cql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::cql_store().await).await;
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
