//! The in-memory store: one ordered map of rows behind one lock, keyed as
//! the redb store keys them (`embedded.rs`: length-prefixed table, then
//! partition, then clustering key), so a partition's rows are contiguous
//! and in clustering order.
//!
//! Why not redb's in-memory backend, which this replaced: the embedded
//! default folds every event through several projectors, and a redb write
//! transaction (page allocation, checksums, commit) on a blocking thread
//! cost a fifth of the platform's CPU in the profile of issue 7. A batch
//! here is a few map operations under the write lock, so every call runs
//! inline on the caller's task; the lock is never held across an await.
//! One map rather than a map per partition: most partitions hold one row
//! (an order by its id), and a map node each would cost more than the row.
//!
//! Atomicity: a [`WriteBatch`] is applied under one write lock, so a reader
//! sees all of it or none of it, as with the redb store.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::embedded::{encode_key, partition_range};
use super::{RowKey, StoreError, StoredRow, WriteBatch};

/// A projector's place in one topic partition.
type CheckpointKey = (String, String, i32);

#[derive(Debug, Default)]
struct Tables {
    rows: BTreeMap<Vec<u8>, StoredRow>,
    checkpoints: HashMap<CheckpointKey, i64>,
}

#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: RwLock<Tables>,
}

/// Only a panic while the lock was held poisons it, and this module does not
/// panic under the lock; if one ever did, a batch may be half applied.
fn poisoned() -> StoreError {
    StoreError::Corrupt("the in-memory store was poisoned by a panic mid-write".to_owned())
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, Tables>, StoreError> {
        self.tables.read().map_err(|_| poisoned())
    }

    fn write_lock(&self) -> Result<RwLockWriteGuard<'_, Tables>, StoreError> {
        self.tables.write().map_err(|_| poisoned())
    }

    pub fn get(&self, key: &RowKey) -> Result<Option<StoredRow>, StoreError> {
        Ok(self.read()?.rows.get(&encode_key(key)).cloned())
    }

    /// Rows of one partition in clustering order, strictly after `after`.
    pub fn scan(
        &self,
        table: &'static str,
        partition: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, StoredRow)>, StoreError> {
        let (prefix, start, end) = partition_range(table, partition, after);
        let tables = self.read()?;
        let rows = match end {
            Some(end) => tables.rows.range(start..end),
            None => tables.rows.range(start..),
        };
        Ok(rows
            .take(limit)
            .map(|(key, row)| (key[prefix.len()..].to_vec(), row.clone()))
            .collect())
    }

    /// Applies the batch atomically; each upsert only if its position is
    /// newer than the row's.
    pub fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tables = self.write_lock()?;
        for (key, row) in &batch.upserts {
            match tables.rows.entry(encode_key(key)) {
                Entry::Occupied(existing) if existing.get().position >= row.position => {}
                Entry::Occupied(mut existing) => {
                    existing.insert(row.clone());
                }
                Entry::Vacant(vacant) => {
                    vacant.insert(row.clone());
                }
            }
        }
        for checkpoint in &batch.checkpoints {
            tables.checkpoints.insert(
                (
                    checkpoint.projector.clone(),
                    checkpoint.topic.clone(),
                    checkpoint.partition,
                ),
                checkpoint.next_offset,
            );
        }
        Ok(())
    }

    /// Inserts unless a row exists; returns the existing row if there was one.
    pub fn insert_if_absent(
        &self,
        key: &RowKey,
        row: &StoredRow,
    ) -> Result<Option<StoredRow>, StoreError> {
        let mut tables = self.write_lock()?;
        let key = encode_key(key);
        if let Some(existing) = tables.rows.get(&key) {
            return Ok(Some(existing.clone()));
        }
        tables.rows.insert(key, row.clone());
        Ok(None)
    }

    /// Overwrites unconditionally.
    pub fn put(&self, key: &RowKey, row: &StoredRow) -> Result<(), StoreError> {
        self.write_lock()?.rows.insert(encode_key(key), row.clone());
        Ok(())
    }

    pub fn checkpoint(
        &self,
        projector: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .read()?
            .checkpoints
            .get(&(projector.to_owned(), topic.to_owned(), partition))
            .copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(position: i64, value: &str) -> StoredRow {
        StoredRow {
            position,
            value: value.as_bytes().to_vec(),
        }
    }

    fn upsert(store: &MemoryStore, key: &RowKey, stored: StoredRow) {
        store
            .write(&WriteBatch {
                upserts: vec![(key.clone(), stored)],
                checkpoints: vec![],
            })
            .expect("write");
    }

    #[test]
    fn given_a_newer_row_when_an_older_or_equal_position_is_written_then_the_newer_row_stays() {
        let store = MemoryStore::new();
        let key = RowKey::new("order_by_id", b"o1".to_vec(), Vec::new());
        upsert(&store, &key, row(5, "v5"));
        upsert(&store, &key, row(3, "v3"));
        upsert(&store, &key, row(5, "other"));
        assert_eq!(store.get(&key).expect("get"), Some(row(5, "v5")));
        upsert(&store, &key, row(6, "v6"));
        assert_eq!(store.get(&key).expect("get"), Some(row(6, "v6")));
    }

    #[test]
    fn a_scan_stays_inside_its_table_and_partition_even_when_another_shares_a_prefix() {
        let store = MemoryStore::new();
        for (table, partition, clustering) in [
            ("t", "a", "2"),
            ("t", "a", "1"),
            ("t", "ab", "0"),
            ("u", "a", "9"),
        ] {
            let key = RowKey::new(
                table,
                partition.as_bytes().to_vec(),
                clustering.as_bytes().to_vec(),
            );
            upsert(&store, &key, row(1, clustering));
        }
        let rows = store.scan("t", b"a", None, 10).expect("scan");
        let clustering: Vec<_> = rows.iter().map(|(key, _)| key.as_slice()).collect();
        assert_eq!(clustering, vec![b"1".as_slice(), b"2".as_slice()]);
        assert_eq!(
            store.scan("t", b"a", Some(b"1"), 10).expect("scan").len(),
            1
        );
        assert!(store.scan("t", b"zz", None, 10).expect("scan").is_empty());
    }
}
