//! The embedded store: redb on disk, one table of composite keys.
//!
//! Key layout: `len(table) table len(partition) partition clustering`, with
//! u32 big-endian lengths, so a partition's rows are contiguous and ordered
//! by clustering bytes (as in a CQL partition). Value layout: 8-byte
//! big-endian position, then the row bytes.

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};

use super::{RowKey, StoreError, StoredRow, WriteBatch};

const ROWS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("rows");
const CHECKPOINTS_TABLE: &str = "_checkpoints";

#[derive(Debug)]
pub struct EmbeddedStore {
    database: Database,
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

pub(super) fn partition_prefix(table: &str, partition: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + table.len() + partition.len());
    key.extend_from_slice(&(table.len() as u32).to_be_bytes());
    key.extend_from_slice(table.as_bytes());
    key.extend_from_slice(&(partition.len() as u32).to_be_bytes());
    key.extend_from_slice(partition);
    key
}

pub(super) fn encode_key(key: &RowKey) -> Vec<u8> {
    let mut bytes = partition_prefix(key.table, &key.partition);
    bytes.extend_from_slice(&key.clustering);
    bytes
}

fn encode_row(row: &StoredRow) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + row.value.len());
    bytes.extend_from_slice(&row.position.to_be_bytes());
    bytes.extend_from_slice(&row.value);
    bytes
}

fn decode_row(bytes: &[u8]) -> Result<StoredRow, StoreError> {
    let (position, value) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| StoreError::Corrupt("row shorter than its position".to_owned()))?;
    Ok(StoredRow {
        position: i64::from_be_bytes(*position),
        value: value.to_vec(),
    })
}

fn checkpoint_key(projector: &str, topic: &str, partition: i32) -> RowKey {
    RowKey::new(
        CHECKPOINTS_TABLE,
        format!("{projector}\u{0}{topic}").into_bytes(),
        partition.to_be_bytes().to_vec(),
    )
}

/// The keys of a partition's rows strictly after clustering key `after`:
/// the partition's prefix (cut from a key, it leaves the clustering key),
/// the first key of the range, and the key the range ends before (`None`:
/// no end).
pub(super) fn partition_range(
    table: &str,
    partition: &[u8],
    after: Option<&[u8]>,
) -> (Vec<u8>, Vec<u8>, Option<Vec<u8>>) {
    let prefix = partition_prefix(table, partition);
    let start = match after {
        Some(after) => {
            let mut start = prefix.clone();
            start.extend_from_slice(after);
            // Strictly after: the next byte string in order.
            start.push(0);
            start
        }
        None => prefix.clone(),
    };
    let end = prefix_end(&prefix);
    (prefix, start, end)
}

/// The smallest byte string greater than every string starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl EmbeddedStore {
    pub fn open(directory: &Path) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(directory).map_err(unavailable)?;
        let database = Database::create(directory.join("foldline.redb")).map_err(unavailable)?;
        let transaction = database.begin_write().map_err(unavailable)?;
        transaction.open_table(ROWS).map_err(unavailable)?;
        transaction.commit().map_err(unavailable)?;
        Ok(EmbeddedStore { database })
    }

    pub fn get(&self, key: &RowKey) -> Result<Option<StoredRow>, StoreError> {
        let transaction = self.database.begin_read().map_err(unavailable)?;
        let table = transaction.open_table(ROWS).map_err(unavailable)?;
        let found = table.get(encode_key(key).as_slice()).map_err(unavailable)?;
        found.map(|bytes| decode_row(bytes.value())).transpose()
    }

    pub fn scan(
        &self,
        table_name: &str,
        partition: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, StoredRow)>, StoreError> {
        let (prefix, start, end) = partition_range(table_name, partition, after);
        let transaction = self.database.begin_read().map_err(unavailable)?;
        let table = transaction.open_table(ROWS).map_err(unavailable)?;
        let range = match end {
            Some(end) => table.range(start.as_slice()..end.as_slice()),
            None => table.range(start.as_slice()..),
        }
        .map_err(unavailable)?;
        let mut rows = Vec::new();
        for entry in range.take(limit) {
            let (key, value) = entry.map_err(unavailable)?;
            let clustering = key.value()[prefix.len()..].to_vec();
            rows.push((clustering, decode_row(value.value())?));
        }
        Ok(rows)
    }

    pub fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let transaction = self.database.begin_write().map_err(unavailable)?;
        {
            let mut table = transaction.open_table(ROWS).map_err(unavailable)?;
            for (key, row) in &batch.upserts {
                let encoded_key = encode_key(key);
                let newer_exists = match table.get(encoded_key.as_slice()).map_err(unavailable)? {
                    Some(existing) => decode_row(existing.value())?.position >= row.position,
                    None => false,
                };
                if !newer_exists {
                    table
                        .insert(encoded_key.as_slice(), encode_row(row).as_slice())
                        .map_err(unavailable)?;
                }
            }
            for checkpoint in &batch.checkpoints {
                let key = checkpoint_key(
                    &checkpoint.projector,
                    &checkpoint.topic,
                    checkpoint.partition,
                );
                let row = StoredRow {
                    position: checkpoint.next_offset,
                    value: Vec::new(),
                };
                table
                    .insert(encode_key(&key).as_slice(), encode_row(&row).as_slice())
                    .map_err(unavailable)?;
            }
        }
        transaction.commit().map_err(unavailable)
    }

    pub fn insert_if_absent(
        &self,
        key: &RowKey,
        row: &StoredRow,
    ) -> Result<Option<StoredRow>, StoreError> {
        let transaction = self.database.begin_write().map_err(unavailable)?;
        let existing = {
            let mut table = transaction.open_table(ROWS).map_err(unavailable)?;
            let encoded_key = encode_key(key);
            let existing = table
                .get(encoded_key.as_slice())
                .map_err(unavailable)?
                .map(|bytes| decode_row(bytes.value()))
                .transpose()?;
            if existing.is_none() {
                table
                    .insert(encoded_key.as_slice(), encode_row(row).as_slice())
                    .map_err(unavailable)?;
            }
            existing
        };
        transaction.commit().map_err(unavailable)?;
        Ok(existing)
    }

    pub fn put(&self, key: &RowKey, row: &StoredRow) -> Result<(), StoreError> {
        let transaction = self.database.begin_write().map_err(unavailable)?;
        {
            let mut table = transaction.open_table(ROWS).map_err(unavailable)?;
            table
                .insert(encode_key(key).as_slice(), encode_row(row).as_slice())
                .map_err(unavailable)?;
        }
        transaction.commit().map_err(unavailable)
    }

    pub fn checkpoint(
        &self,
        projector: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .get(&checkpoint_key(projector, topic, partition))?
            .map(|row| row.position))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Checkpoint;

    fn row(position: i64, value: &str) -> StoredRow {
        StoredRow {
            position,
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn an_older_position_never_overwrites_a_newer_row() {
        let directory = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(directory.path()).unwrap();
        let key = RowKey::new("order_by_id", b"o1".to_vec(), Vec::new());
        let write = |position, value| {
            store
                .write(&WriteBatch {
                    upserts: vec![(key.clone(), row(position, value))],
                    checkpoints: vec![],
                })
                .unwrap()
        };
        write(5, "v5");
        write(3, "v3");
        write(5, "other");
        assert_eq!(store.get(&key).unwrap(), Some(row(5, "v5")));
        write(6, "v6");
        assert_eq!(store.get(&key).unwrap(), Some(row(6, "v6")));
    }

    #[test]
    fn scans_stay_inside_one_partition_in_clustering_order_with_paging() {
        let directory = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(directory.path()).unwrap();
        let mut batch = WriteBatch::default();
        for (partition, clustering) in [("a", "3"), ("a", "1"), ("a", "2"), ("ab", "0"), ("b", "1")]
        {
            batch.upserts.push((
                RowKey::new(
                    "t",
                    partition.as_bytes().to_vec(),
                    clustering.as_bytes().to_vec(),
                ),
                row(1, clustering),
            ));
        }
        store.write(&batch).unwrap();
        let page = store.scan("t", b"a", None, 2).unwrap();
        let clustering: Vec<_> = page.iter().map(|(key, _)| key.clone()).collect();
        assert_eq!(clustering, vec![b"1".to_vec(), b"2".to_vec()]);
        let next = store.scan("t", b"a", Some(b"2"), 10).unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].0, b"3".to_vec());
        assert!(store.scan("t", b"zz", None, 10).unwrap().is_empty());
    }

    #[test]
    fn checkpoints_and_insert_if_absent() {
        let directory = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(directory.path()).unwrap();
        assert_eq!(store.checkpoint("p", "orders.events", 0).unwrap(), None);
        store
            .write(&WriteBatch {
                upserts: vec![],
                checkpoints: vec![Checkpoint {
                    projector: "p".to_owned(),
                    topic: "orders.events".to_owned(),
                    partition: 0,
                    next_offset: 42,
                }],
            })
            .unwrap();
        assert_eq!(store.checkpoint("p", "orders.events", 0).unwrap(), Some(42));
        let key = RowKey::new("idempotency", b"k".to_vec(), Vec::new());
        assert_eq!(
            store.insert_if_absent(&key, &row(0, "first")).unwrap(),
            None
        );
        assert_eq!(
            store.insert_if_absent(&key, &row(0, "second")).unwrap(),
            Some(row(0, "first"))
        );
    }

    #[test]
    fn the_store_survives_reopening_from_disk() {
        let directory = tempfile::tempdir().unwrap();
        let key = RowKey::new("t", b"p".to_vec(), b"c".to_vec());
        {
            let store = EmbeddedStore::open(directory.path()).unwrap();
            store.put(&key, &row(1, "kept")).unwrap();
        }
        let store = EmbeddedStore::open(directory.path()).unwrap();
        assert_eq!(store.get(&key).unwrap(), Some(row(1, "kept")));
    }
}
