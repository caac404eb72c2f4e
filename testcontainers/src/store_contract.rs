//! The store contract: whatever a projector, the processor or the gateway
//! relies on from a [`Store`], as one set of cases that every backend must
//! pass, so a backend that passes can replace another. Written once, run
//! against the embedded store (in memory and on disk) and the harness's CQL
//! server by the platform's tests (`services/libs/platform/tests/it/
//! store_contract.rs`, one test per case and backend), and against the
//! harness's CQL server and a ScyllaDB container by `foldline-containers`
//! ([`run_every_case`]).
//!
//! Each case writes under partitions and checkpoint names of its own
//! ([`unique`]), so cases may share one keyspace, migrated with
//! [`migrations`] (the platform's plus the suite's own table).

use std::future::Future;
use std::pin::Pin;

use foldline_platform::store::migrations::{self, Migration};
use foldline_platform::store::{Checkpoint, RowKey, Store, StoredRow, WriteBatch};

/// The suite's own table, in the store's one row shape.
pub const CONTRACT_TABLE: &str = "contract_rows";
pub const CONTRACT_MIGRATION: Migration = Migration {
    id: "9000_contract_rows",
    cql: "CREATE TABLE IF NOT EXISTS contract_rows (partition blob, clustering blob, position bigint, value blob, PRIMARY KEY ((partition), clustering)) WITH CLUSTERING ORDER BY (clustering ASC);",
};

/// Rows per page of a CQL scan under the contract: small, so a scan of a
/// few rows crosses page boundaries.
pub const CQL_PAGE_SIZE: u32 = 2;

/// What a CQL keyspace under the contract needs: the platform's
/// migrations, then the suite's table.
pub fn migrations() -> Vec<Migration> {
    let mut all = migrations::PLATFORM.to_vec();
    all.push(CONTRACT_MIGRATION);
    all
}

/// One case of the contract, run on a store of the backend under test.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub name: &'static str,
    pub run: fn(Store) -> CaseRun,
}

/// A running case: it panics (an assertion) when the store breaks the contract.
pub type CaseRun = Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        /// Every case of the contract, in the order they run.
        pub const CASES: &[Case] = &[
            $(Case { name: stringify!($name), run: |store| -> CaseRun { Box::pin($name(store)) } }),*
        ];
    };
}

cases!(
    an_older_or_equal_position_never_overwrites_a_newer_row,
    two_writers_racing_converge_on_the_newest_position,
    scans_stay_in_one_partition_in_unsigned_byte_order_with_paging,
    a_batch_writes_every_row_and_its_checkpoints,
    insert_if_absent_keeps_the_first_row,
    racing_inserts_if_absent_agree_on_one_winner,
    put_overwrites_unconditionally,
    empty_values_and_binary_keys_round_trip,
);

/// Runs every case, each on a store from `store` (called once per case),
/// each to its end whatever the others did; fails naming every case that
/// failed with its assertion, under `backend`'s name.
pub async fn run_every_case<F, Fut>(backend: &str, mut store: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Store>>,
{
    let mut failed = Vec::new();
    for case in CASES {
        let store = store().await?;
        // A case of its own task: its panic is its failure, not the run's.
        if let Err(error) = tokio::spawn((case.run)(store)).await {
            failed.push(format!("{}: {}", case.name, panic_message(error)));
        }
    }
    anyhow::ensure!(
        failed.is_empty(),
        "{backend} breaks the store contract in {} of {} cases:\n{}",
        failed.len(),
        CASES.len(),
        failed.join("\n")
    );
    Ok(())
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| {
                payload
                    .downcast_ref::<&str>()
                    .map(|text| (*text).to_owned())
            })
            .unwrap_or_else(|| "a panic without a message".to_owned()),
        Err(error) => error.to_string(),
    }
}

pub fn row(position: i64, value: &str) -> StoredRow {
    StoredRow {
        position,
        value: value.as_bytes().to_vec(),
    }
}

/// A partition no other test (or run) writes.
pub fn unique(name: &str) -> Vec<u8> {
    format!("{name}-{}", uuid::Uuid::new_v4().simple()).into_bytes()
}

pub fn upsert(key: &RowKey, row: StoredRow) -> WriteBatch {
    WriteBatch {
        upserts: vec![(key.clone(), row)],
        checkpoints: vec![],
    }
}

pub async fn an_older_or_equal_position_never_overwrites_a_newer_row(store: Store) {
    let key = RowKey::new(CONTRACT_TABLE, unique("guard"), Vec::new());
    assert_eq!(
        store.get(key.clone()).await.expect("the store answers"),
        None
    );
    store
        .write(upsert(&key, row(5, "v5")))
        .await
        .expect("the store answers");
    store
        .write(upsert(&key, row(3, "v3")))
        .await
        .expect("the store answers");
    assert_eq!(
        store.get(key.clone()).await.expect("the store answers"),
        Some(row(5, "v5"))
    );
    // A replay at the same position carries the same bytes: no change.
    store
        .write(upsert(&key, row(5, "v5")))
        .await
        .expect("the store answers");
    assert_eq!(
        store.get(key.clone()).await.expect("the store answers"),
        Some(row(5, "v5"))
    );
    store
        .write(upsert(&key, row(6, "v6")))
        .await
        .expect("the store answers");
    store
        .write(upsert(&key, row(0, "v0")))
        .await
        .expect("the store answers");
    assert_eq!(
        store.get(key).await.expect("the store answers"),
        Some(row(6, "v6"))
    );
}

pub async fn two_writers_racing_converge_on_the_newest_position(store: Store) {
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
                    .expect("the store answers");
            }
        })
    };
    let old_owner = writer((0..40).collect());
    let new_owner = writer((20..60).rev().collect());
    old_owner.await.expect("the store answers");
    new_owner.await.expect("the store answers");
    assert_eq!(
        store.get(key).await.expect("the store answers"),
        Some(row(59, "at 59"))
    );
}

pub async fn scans_stay_in_one_partition_in_unsigned_byte_order_with_paging(store: Store) {
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
    store.write(batch).await.expect("the store answers");

    let everything = store
        .scan(CONTRACT_TABLE, partition.clone(), None, 100)
        .await
        .expect("the store answers");
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
        .expect("the store answers");
    assert_eq!(first.len(), 3);
    let cursor = first[2].0.clone();
    let rest = store
        .scan(CONTRACT_TABLE, partition.clone(), Some(cursor), 10)
        .await
        .expect("the store answers");
    let rest: Vec<Vec<u8>> = rest.into_iter().map(|(key, _)| key).collect();
    assert_eq!(rest, expected[3..].to_vec());
    assert!(store
        .scan(CONTRACT_TABLE, partition.clone(), None, 0)
        .await
        .expect("the store answers")
        .is_empty());
    assert!(store
        .scan(CONTRACT_TABLE, unique("empty"), None, 10)
        .await
        .expect("the store answers")
        .is_empty());
}

pub async fn a_batch_writes_every_row_and_its_checkpoints(store: Store) {
    let projector = format!("p-{}", uuid::Uuid::new_v4().simple());
    let topic = "orders.events";
    assert_eq!(
        store
            .checkpoint(&projector, topic, 0)
            .await
            .expect("the store answers"),
        None
    );
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
        .expect("the store answers");
    for (offset, key) in keys.iter().enumerate() {
        assert_eq!(
            store.get(key.clone()).await.expect("the store answers"),
            Some(row(offset as i64, "batched"))
        );
    }
    assert_eq!(
        store
            .checkpoint(&projector, topic, 0)
            .await
            .expect("the store answers"),
        Some(20)
    );
    assert_eq!(
        store
            .checkpoint(&projector, topic, 3)
            .await
            .expect("the store answers"),
        Some(7)
    );
    assert_eq!(
        store
            .checkpoint(&projector, topic, 1)
            .await
            .expect("the store answers"),
        None
    );
    assert_eq!(
        store
            .checkpoint(&projector, "other.events", 0)
            .await
            .expect("the store answers"),
        None
    );
    // The latest checkpoint write is the checkpoint, forwards or back.
    store
        .write(WriteBatch {
            upserts: vec![],
            checkpoints: vec![checkpoint(0, 25)],
        })
        .await
        .expect("the store answers");
    assert_eq!(
        store
            .checkpoint(&projector, topic, 0)
            .await
            .expect("the store answers"),
        Some(25)
    );
    store
        .write(WriteBatch::default())
        .await
        .expect("the store answers");
}

pub async fn insert_if_absent_keeps_the_first_row(store: Store) {
    let key = RowKey::new(CONTRACT_TABLE, unique("lwt"), Vec::new());
    assert_eq!(
        store
            .insert_if_absent(key.clone(), row(0, "first"))
            .await
            .expect("the store answers"),
        None
    );
    assert_eq!(
        store
            .insert_if_absent(key.clone(), row(0, "second"))
            .await
            .expect("the store answers"),
        Some(row(0, "first"))
    );
    assert_eq!(
        store.get(key).await.expect("the store answers"),
        Some(row(0, "first"))
    );
}

pub async fn racing_inserts_if_absent_agree_on_one_winner(store: Store) {
    let key = RowKey::new(CONTRACT_TABLE, unique("lwt-race"), Vec::new());
    let attempts: Vec<_> = (0..4)
        .map(|attempt| {
            let store = store.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let mine = row(0, &format!("gateway {attempt}"));
                let existing = store
                    .insert_if_absent(key, mine.clone())
                    .await
                    .expect("the store answers");
                existing.unwrap_or(mine)
            })
        })
        .collect();
    let mut seen = Vec::new();
    for attempt in attempts {
        seen.push(attempt.await.expect("the store answers"));
    }
    assert!(seen.windows(2).all(|pair| pair[0] == pair[1]), "{seen:?}");
    assert_eq!(
        store.get(key).await.expect("the store answers"),
        Some(seen[0].clone())
    );
}

pub async fn put_overwrites_unconditionally(store: Store) {
    let key = RowKey::new(CONTRACT_TABLE, unique("put"), 7_i32.to_be_bytes().to_vec());
    store
        .put(key.clone(), row(9, "snapshot at 9"))
        .await
        .expect("the store answers");
    store
        .put(key.clone(), row(4, "snapshot at 4"))
        .await
        .expect("the store answers");
    assert_eq!(
        store.get(key).await.expect("the store answers"),
        Some(row(4, "snapshot at 4"))
    );
}

pub async fn empty_values_and_binary_keys_round_trip(store: Store) {
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
        .expect("the store answers");
    store
        .write(upsert(&key, empty.clone()))
        .await
        .expect("the store answers");
    assert_eq!(
        store.get(key.clone()).await.expect("the store answers"),
        Some(empty)
    );
    let missing = RowKey::new(CONTRACT_TABLE, unique("missing"), vec![1]);
    assert_eq!(store.get(missing).await.expect("the store answers"), None);
}
