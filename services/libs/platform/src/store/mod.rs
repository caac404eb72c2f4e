//! The projection store: Scylla-shaped (a row is addressed by table,
//! partition key and clustering key; a partition is scanned in clustering
//! order), with idempotent, position-guarded upserts.
//!
//! Every row records the log position (offset in its aggregate's events
//! partition) it reflects. A write carrying an older or equal position never
//! overwrites a newer one, so replaying the log, redelivery and concurrent
//! projector instances all converge on the same bytes.
//!
//! Implementations: [`memory`] (maps in memory, the embedded default's),
//! [`embedded`] (redb on disk) and [`scylla`] (ScyllaDB or Cassandra over CQL: a table is a CQL table with
//! the same keys, guarded with `USING TIMESTAMP <position>`; its schema
//! comes from [`migrations`]). Both pass one contract suite
//! (`tests/it/store_contract.rs`); the rules and failure cases of the CQL
//! store are in `design.md` beside this file.

pub mod embedded;
pub mod memory;
pub mod migrations;
pub mod scylla;

use std::path::Path;
use std::sync::Arc;

pub use embedded::EmbeddedStore;
pub use memory::MemoryStore;
pub use migrations::Migration;
pub use scylla::ScyllaStore;

use crate::cache::RowCache;
use crate::config::ScyllaConfig;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    /// The store refused the request as sent (a missing table, a schema
    /// not migrated, missing rights): retrying cannot help.
    #[error("store refused the request: {0}")]
    Rejected(String),
}

impl StoreError {
    /// Whether retrying can succeed. Projectors retry these with backoff and
    /// never skip the record.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// A row's address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RowKey {
    pub table: &'static str,
    pub partition: Vec<u8>,
    pub clustering: Vec<u8>,
}

impl RowKey {
    pub fn new(
        table: &'static str,
        partition: impl Into<Vec<u8>>,
        clustering: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            table,
            partition: partition.into(),
            clustering: clustering.into(),
        }
    }
}

/// A row's content and the log position it reflects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRow {
    pub position: i64,
    pub value: Vec<u8>,
}

/// Where a projector is in one partition of one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub projector: String,
    pub topic: String,
    pub partition: i32,
    /// The next offset to read.
    pub next_offset: i64,
}

/// Writes applied together: in the embedded store, atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub upserts: Vec<(RowKey, StoredRow)>,
    pub checkpoints: Vec<Checkpoint>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.checkpoints.is_empty()
    }
}

/// The store a process was configured with. An enum rather than a trait
/// object: the set of backends is closed and chosen by configuration.
#[derive(Clone, Debug)]
pub enum Store {
    /// In memory: every call is a few map operations under a lock, run
    /// inline on the caller's task (no hop to a blocking thread).
    Memory(Arc<MemoryStore>),
    Embedded(Arc<EmbeddedStore>),
    Scylla(Arc<ScyllaStore>),
    /// A store behind a Redis cache of hot rows ([`Store::get_cached`]).
    Cached(Arc<CachedStore>),
}

/// A store and the cache of some of its tables (`crate::cache`).
#[derive(Debug)]
pub struct CachedStore {
    store: Store,
    cache: RowCache,
}

impl Store {
    pub fn open_embedded(directory: &Path) -> Result<Store, StoreError> {
        Ok(Store::Embedded(Arc::new(EmbeddedStore::open(directory)?)))
    }

    pub fn in_memory() -> Store {
        Store::Memory(Arc::new(MemoryStore::new()))
    }

    /// Connects to the CQL store. With `migrate_on_start` it first applies
    /// pending `migrations` under the migration lock; otherwise a keyspace
    /// with pending migrations is refused (run `foldline migrate`).
    pub async fn connect_scylla(
        config: &ScyllaConfig,
        migrations: &[Migration],
    ) -> Result<Store, StoreError> {
        let session = scylla::connect(config).await?;
        if config.migrate_on_start {
            migrations::migrate_on(&session, config, migrations).await?;
        } else {
            let pending = migrations::pending(&session, config, migrations)
                .await
                .map_err(|error| match error {
                    StoreError::Unavailable(reason) => StoreError::Unavailable(format!(
                        "{reason} (has keyspace {} been created? run `foldline migrate`)",
                        config.keyspace
                    )),
                    other => other,
                })?;
            if !pending.is_empty() {
                return Err(StoreError::Rejected(format!(
                    "keyspace {} has pending migrations {pending:?}: run `foldline migrate`",
                    config.keyspace
                )));
            }
        }
        Ok(Store::Scylla(Arc::new(
            ScyllaStore::on_session(session, config).await?,
        )))
    }

    /// This store with `cache` in front of [`Store::get_cached`] reads;
    /// every other read bypasses it and every write invalidates it.
    pub fn with_cache(self, cache: RowCache) -> Store {
        Store::Cached(Arc::new(CachedStore { store: self, cache }))
    }

    /// A read that may be answered by the cache: for serving clients only.
    /// Folds (projectors, the processor) read with [`Store::get`], which
    /// always asks the store.
    pub async fn get_cached(&self, key: RowKey) -> Result<Option<StoredRow>, StoreError> {
        let Store::Cached(cached) = self else {
            return self.get(key).await;
        };
        if !cached.cache.caches(key.table) {
            return cached.store.get(key).await;
        }
        if let Some(row) = cached.cache.get(&key).await {
            return Ok(Some(row));
        }
        let row = cached.store.get(key.clone()).await?;
        if let Some(row) = &row {
            cached.cache.fill(&key, row).await;
        }
        Ok(row)
    }

    pub async fn get(&self, key: RowKey) -> Result<Option<StoredRow>, StoreError> {
        match self {
            Store::Cached(cached) => Box::pin(cached.store.get(key)).await,
            Store::Memory(store) => store.get(&key),
            Store::Embedded(store) => {
                let store = Arc::clone(store);
                blocking(move || store.get(&key)).await
            }
            Store::Scylla(store) => store.get(&key).await,
        }
    }

    /// Rows of one partition in clustering order, strictly after `after`.
    pub async fn scan(
        &self,
        table: &'static str,
        partition: Vec<u8>,
        after: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, StoredRow)>, StoreError> {
        match self {
            Store::Memory(store) => store.scan(table, &partition, after.as_deref(), limit),
            Store::Embedded(store) => {
                let store = Arc::clone(store);
                blocking(move || store.scan(table, &partition, after.as_deref(), limit)).await
            }
            Store::Scylla(store) => store.scan(table, &partition, after.as_deref(), limit).await,
            Store::Cached(cached) => {
                Box::pin(cached.store.scan(table, partition, after, limit)).await
            }
        }
    }

    /// Applies the batch; each upsert only if its position is newer.
    pub async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        match self {
            Store::Memory(store) => store.write(&batch),
            Store::Embedded(store) => {
                let store = Arc::clone(store);
                blocking(move || store.write(&batch)).await
            }
            Store::Scylla(store) => store.write(&batch).await,
            // After the store write: a reader filling from the store in
            // between holds an older position, which the marker outranks.
            Store::Cached(cached) => {
                Box::pin(cached.store.write(batch.clone())).await?;
                cached.cache.invalidate(&batch.upserts).await;
                Ok(())
            }
        }
    }

    /// Inserts unless a row exists; returns the existing row if there was one.
    pub async fn insert_if_absent(
        &self,
        key: RowKey,
        row: StoredRow,
    ) -> Result<Option<StoredRow>, StoreError> {
        match self {
            Store::Memory(store) => store.insert_if_absent(&key, &row),
            Store::Embedded(store) => {
                let store = Arc::clone(store);
                blocking(move || store.insert_if_absent(&key, &row)).await
            }
            Store::Scylla(store) => store.insert_if_absent(&key, &row).await,
            Store::Cached(cached) => Box::pin(cached.store.insert_if_absent(key, row)).await,
        }
    }

    /// Overwrites unconditionally (snapshots: newer always replaces older).
    pub async fn put(&self, key: RowKey, row: StoredRow) -> Result<(), StoreError> {
        match self {
            Store::Memory(store) => store.put(&key, &row),
            Store::Embedded(store) => {
                let store = Arc::clone(store);
                blocking(move || store.put(&key, &row)).await
            }
            Store::Scylla(store) => store.put(&key, &row).await,
            Store::Cached(cached) => {
                let invalidated = [(key.clone(), row.clone())];
                Box::pin(cached.store.put(key, row)).await?;
                cached.cache.invalidate(&invalidated).await;
                Ok(())
            }
        }
    }

    pub async fn checkpoint(
        &self,
        projector: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, StoreError> {
        match self {
            Store::Memory(store) => store.checkpoint(projector, topic, partition),
            Store::Embedded(store) => {
                let store = Arc::clone(store);
                let (projector, topic) = (projector.to_owned(), topic.to_owned());
                blocking(move || store.checkpoint(&projector, &topic, partition)).await
            }
            Store::Scylla(store) => store.checkpoint(projector, topic, partition).await,
            Store::Cached(cached) => {
                Box::pin(cached.store.checkpoint(projector, topic, partition)).await
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| StoreError::Unavailable(format!("store task failed: {error}")))?
}
