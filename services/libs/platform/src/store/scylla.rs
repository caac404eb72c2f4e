//! The CQL store: ScyllaDB (or Apache Cassandra) through the `scylla`
//! driver. Its rules and failure cases are in `design.md` beside this file.
//!
//! A logical table is a CQL table of the same name with the store's one
//! shape (`partition blob, clustering blob, position bigint, value blob`,
//! primary key `((partition), clustering)`), created by the migrations of
//! `schemas/cql/` ([`super::migrations`]); checkpoints live in
//! `projector_checkpoints`. Every statement is prepared once per table and
//! reused, routed token-aware by the driver's default policy, executed at
//! the configured consistency; every `SELECT` is paged.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::TryStreamExt;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{
    DbError, ExecutionError, NewSessionError, NextPageError, NextRowError, PagerExecutionError,
    PrepareError, RequestAttemptError, RequestError,
};
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::response::PagingState;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlValue, Row};

use super::{Checkpoint, RowKey, StoreError, StoredRow, WriteBatch};
use crate::config::{is_cql_identifier, CqlConsistency, CqlSerialConsistency, ScyllaConfig};

/// The CQL table of checkpoints (`migrations`: 0001_platform.cql).
const CHECKPOINTS: &str = "projector_checkpoints";

/// The prepared statements of one row table.
#[derive(Debug)]
struct TableStatements {
    get: PreparedStatement,
    scan_from_start: PreparedStatement,
    scan_after: PreparedStatement,
    /// `USING TIMESTAMP <position>`: the position guard.
    upsert_at_position: PreparedStatement,
    /// Server time: an unconditional overwrite.
    put: PreparedStatement,
    /// A lightweight transaction.
    insert_if_absent: PreparedStatement,
}

#[derive(Debug)]
pub struct ScyllaStore {
    session: Session,
    keyspace: String,
    page_size: i32,
    tables: RwLock<HashMap<&'static str, Arc<TableStatements>>>,
    checkpoint_get: PreparedStatement,
    checkpoint_put: PreparedStatement,
}

pub(crate) fn consistency(level: CqlConsistency) -> Consistency {
    match level {
        CqlConsistency::One => Consistency::One,
        CqlConsistency::Two => Consistency::Two,
        CqlConsistency::Three => Consistency::Three,
        CqlConsistency::Quorum => Consistency::Quorum,
        CqlConsistency::All => Consistency::All,
        CqlConsistency::LocalOne => Consistency::LocalOne,
        CqlConsistency::LocalQuorum => Consistency::LocalQuorum,
        CqlConsistency::EachQuorum => Consistency::EachQuorum,
    }
}

fn serial_consistency(level: CqlSerialConsistency) -> SerialConsistency {
    match level {
        CqlSerialConsistency::Serial => SerialConsistency::Serial,
        CqlSerialConsistency::LocalSerial => SerialConsistency::LocalSerial,
    }
}

/// A session to the cluster with the configured policies, not bound to a
/// keyspace (migrations create it).
pub(crate) async fn connect(config: &ScyllaConfig) -> Result<Session, StoreError> {
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(datacenter) = &config.local_datacenter {
        policy = policy.prefer_datacenter(datacenter.clone());
    }
    let profile = ExecutionProfile::builder()
        .consistency(consistency(config.consistency))
        .serial_consistency(Some(serial_consistency(config.serial_consistency)))
        .request_timeout(Some(Duration::from_millis(config.request_timeout_ms)))
        .load_balancing_policy(policy.build())
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.contact_points)
        .connection_timeout(Duration::from_millis(config.request_timeout_ms))
        .default_execution_profile_handle(profile.into_handle())
        .keyspaces_to_fetch([config.keyspace.clone()]);
    if let (Some(username), Some(password)) = (&config.username, &config.password) {
        builder = builder.user(username, password.expose());
    }
    builder.build().await.map_err(|error| match error {
        NewSessionError::FailedToResolveAnyHostname(_) => StoreError::Unavailable(format!(
            "cannot resolve the cql contact points {:?}: {error}",
            config.contact_points
        )),
        error => StoreError::Unavailable(format!(
            "cannot connect to the cql store at {:?}: {error}",
            config.contact_points
        )),
    })
}

/// Errors the server gives for a request that can never succeed as sent:
/// a missing table, a bad statement, missing rights. Everything else
/// (timeouts, unavailable replicas, broken connections, overload) may pass.
fn is_permanent(error: &DbError) -> bool {
    matches!(
        error,
        DbError::SyntaxError
            | DbError::Invalid
            | DbError::AlreadyExists { .. }
            | DbError::Unauthorized
            | DbError::ConfigError
            | DbError::AuthenticationError
    )
}

fn attempt_error(error: &RequestAttemptError) -> Option<&DbError> {
    match error {
        RequestAttemptError::DbError(error, _) => Some(error),
        _ => None,
    }
}

fn prepare_db_error(error: &PrepareError) -> Option<&DbError> {
    match error {
        PrepareError::AllAttemptsFailed { first_attempt } => attempt_error(first_attempt),
        _ => None,
    }
}

fn execution_db_error(error: &ExecutionError) -> Option<&DbError> {
    match error {
        ExecutionError::LastAttemptError(error) => attempt_error(error),
        ExecutionError::PrepareError(error) => prepare_db_error(error),
        _ => None,
    }
}

fn next_page_db_error(error: &NextPageError) -> Option<&DbError> {
    match error {
        NextPageError::RequestFailure(RequestError::LastAttemptError(error)) => {
            attempt_error(error)
        }
        _ => None,
    }
}

fn classify(action: &str, db_error: Option<&DbError>, error: impl std::fmt::Display) -> StoreError {
    match db_error {
        Some(db_error) if is_permanent(db_error) => StoreError::Rejected(format!(
            "cannot {action}: {error} (is the schema migrated? run `foldline migrate`)"
        )),
        _ => StoreError::Unavailable(format!("cannot {action}: {error}")),
    }
}

fn execution(action: &str, error: ExecutionError) -> StoreError {
    classify(action, execution_db_error(&error), &error)
}

fn prepare(action: &str, error: PrepareError) -> StoreError {
    classify(action, prepare_db_error(&error), &error)
}

fn pager(action: &str, error: PagerExecutionError) -> StoreError {
    let db_error = match &error {
        PagerExecutionError::PrepareError(error) => prepare_db_error(error),
        PagerExecutionError::NextPageError(error) => next_page_db_error(error),
        _ => None,
    };
    classify(action, db_error, &error)
}

fn next_row(action: &str, error: NextRowError) -> StoreError {
    match error {
        NextRowError::NextPageError(error) => classify(action, next_page_db_error(&error), &error),
        error => StoreError::Corrupt(format!("cannot {action}: {error}")),
    }
}

fn corrupt(action: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("cannot {action}: {error}"))
}

/// Table names become CQL identifiers unquoted: only what CQL accepts.
fn cql_table(table: &str) -> Result<&str, StoreError> {
    match is_cql_identifier(table) {
        true => Ok(table),
        false => Err(StoreError::Rejected(format!(
            "table {table:?} is not a cql table name (lowercase letters, digits, underscores)"
        ))),
    }
}

fn clustering_of(key: &RowKey) -> &[u8] {
    &key.clustering
}

fn position_timestamp(position: i64) -> Result<i64, StoreError> {
    // A negative write timestamp is legal CQL but would sort before every
    // unguarded write; positions are offsets, never negative.
    match position >= 0 {
        true => Ok(position),
        false => Err(StoreError::Rejected(format!(
            "row position {position} is negative: positions are log offsets"
        ))),
    }
}

impl ScyllaStore {
    /// Connects, checks the keyspace's migrations are applied, and prepares
    /// the checkpoint statements. Row tables are prepared on first use.
    pub async fn connect(config: &ScyllaConfig) -> Result<ScyllaStore, StoreError> {
        let session = connect(config).await?;
        Self::on_session(session, config).await
    }

    pub(crate) async fn on_session(
        session: Session,
        config: &ScyllaConfig,
    ) -> Result<ScyllaStore, StoreError> {
        let keyspace = config.keyspace.clone();
        let checkpoint_get = session
            .prepare(format!(
                "SELECT next_offset FROM {keyspace}.{CHECKPOINTS} WHERE projector = ? AND topic = ? AND partition = ?"
            ))
            .await
            .map_err(|error| prepare("prepare the checkpoint read", error))?;
        let checkpoint_put = session
            .prepare(format!(
                "INSERT INTO {keyspace}.{CHECKPOINTS} (projector, topic, partition, next_offset) VALUES (?, ?, ?, ?)"
            ))
            .await
            .map_err(|error| prepare("prepare the checkpoint write", error))?;
        Ok(ScyllaStore {
            session,
            keyspace,
            page_size: i32::try_from(config.page_size).unwrap_or(i32::MAX),
            tables: RwLock::new(HashMap::new()),
            checkpoint_get,
            checkpoint_put,
        })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    async fn table(&self, table: &'static str) -> Result<Arc<TableStatements>, StoreError> {
        if let Some(statements) = self
            .tables
            .read()
            .map_err(|_| StoreError::Unavailable("the statement cache is poisoned".to_owned()))?
            .get(table)
        {
            return Ok(Arc::clone(statements));
        }
        let name = cql_table(table)?;
        let qualified = format!("{}.{name}", self.keyspace);
        let prepare_one = |text: String| {
            let action = format!("prepare a statement on {qualified}");
            async move {
                self.session
                    .prepare(text)
                    .await
                    .map_err(|error| prepare(&action, error))
            }
        };
        let columns = "partition, clustering, position, value";
        let mut scan_from_start = prepare_one(format!(
            "SELECT clustering, position, value FROM {qualified} WHERE partition = ? LIMIT ?"
        ))
        .await?;
        let mut scan_after = prepare_one(format!(
            "SELECT clustering, position, value FROM {qualified} WHERE partition = ? AND clustering > ? LIMIT ?"
        ))
        .await?;
        scan_from_start.set_page_size(self.page_size);
        scan_after.set_page_size(self.page_size);
        let mut upsert_at_position = prepare_one(format!(
            "INSERT INTO {qualified} ({columns}) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
        ))
        .await?;
        // Replaying a timestamped upsert changes nothing: safe to retry.
        upsert_at_position.set_is_idempotent(true);
        let statements = Arc::new(TableStatements {
            get: prepare_one(format!(
                "SELECT position, value FROM {qualified} WHERE partition = ? AND clustering = ?"
            ))
            .await?,
            scan_from_start,
            scan_after,
            upsert_at_position,
            put: prepare_one(format!(
                "INSERT INTO {qualified} ({columns}) VALUES (?, ?, ?, ?)"
            ))
            .await?,
            insert_if_absent: prepare_one(format!(
                "INSERT INTO {qualified} ({columns}) VALUES (?, ?, ?, ?) IF NOT EXISTS"
            ))
            .await?,
        });
        self.tables
            .write()
            .map_err(|_| StoreError::Unavailable("the statement cache is poisoned".to_owned()))?
            .insert(table, Arc::clone(&statements));
        Ok(statements)
    }

    pub async fn get(&self, key: &RowKey) -> Result<Option<StoredRow>, StoreError> {
        let statements = self.table(key.table).await?;
        let action = format!("read a row of {}", key.table);
        let (result, _) = self
            .session
            .execute_single_page(
                &statements.get,
                (&key.partition, clustering_of(key)),
                PagingState::start(),
            )
            .await
            .map_err(|error| execution(&action, error))?;
        let rows = result
            .into_rows_result()
            .map_err(|error| corrupt(&action, error))?;
        let row = rows
            .maybe_first_row::<(i64, Vec<u8>)>()
            .map_err(|error| corrupt(&action, error))?;
        Ok(row.map(|(position, value)| StoredRow { position, value }))
    }

    pub async fn scan(
        &self,
        table: &'static str,
        partition: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, StoredRow)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let statements = self.table(table).await?;
        let action = format!("scan a partition of {table}");
        let cql_limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let pager = match after {
            None => {
                self.session
                    .execute_iter(statements.scan_from_start.clone(), (partition, cql_limit))
                    .await
            }
            Some(after) => {
                self.session
                    .execute_iter(statements.scan_after.clone(), (partition, after, cql_limit))
                    .await
            }
        }
        .map_err(|error| pager(&action, error))?;
        let mut stream = pager
            .rows_stream::<(Vec<u8>, i64, Vec<u8>)>()
            .map_err(|error| corrupt(&action, error))?;
        let mut rows = Vec::with_capacity(limit.min(self.page_size as usize));
        while rows.len() < limit {
            match stream
                .try_next()
                .await
                .map_err(|error| next_row(&action, error))?
            {
                Some((clustering, position, value)) => {
                    rows.push((clustering, StoredRow { position, value }))
                }
                None => break,
            }
        }
        Ok(rows)
    }

    /// One logged batch: every upsert at `USING TIMESTAMP <position>`, and
    /// the checkpoints (see design.md for why logged, and why the
    /// checkpoints carry no timestamp).
    pub async fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut statements = Batch::new(BatchType::Logged);
        let mut values: Vec<Vec<CqlValue>> =
            Vec::with_capacity(batch.upserts.len() + batch.checkpoints.len());
        for (key, row) in &batch.upserts {
            let table = self.table(key.table).await?;
            statements.append_statement(table.upsert_at_position.clone());
            values.push(vec![
                CqlValue::Blob(key.partition.clone()),
                CqlValue::Blob(key.clustering.clone()),
                CqlValue::BigInt(row.position),
                CqlValue::Blob(row.value.clone()),
                CqlValue::BigInt(position_timestamp(row.position)?),
            ]);
        }
        for Checkpoint {
            projector,
            topic,
            partition,
            next_offset,
        } in &batch.checkpoints
        {
            statements.append_statement(self.checkpoint_put.clone());
            values.push(vec![
                CqlValue::Text(projector.clone()),
                CqlValue::Text(topic.clone()),
                CqlValue::Int(*partition),
                CqlValue::BigInt(*next_offset),
            ]);
        }
        statements.set_is_idempotent(true);
        self.session
            .batch(&statements, values)
            .await
            .map_err(|error| execution("write a batch of rows", error))?;
        Ok(())
    }

    /// `INSERT … IF NOT EXISTS`: a lightweight transaction, so two
    /// gateways racing on one key agree on the first row.
    pub async fn insert_if_absent(
        &self,
        key: &RowKey,
        row: &StoredRow,
    ) -> Result<Option<StoredRow>, StoreError> {
        let statements = self.table(key.table).await?;
        let action = format!("insert a row of {} if absent", key.table);
        let result = self
            .session
            .execute_unpaged(
                &statements.insert_if_absent,
                (&key.partition, clustering_of(key), row.position, &row.value),
            )
            .await
            .map_err(|error| execution(&action, error))?;
        let rows = result
            .into_rows_result()
            .map_err(|error| corrupt(&action, error))?;
        let specs = rows.column_specs();
        let index = |name: &str| {
            specs
                .get_by_name(name)
                .map(|(index, _)| index)
                .ok_or_else(|| corrupt(&action, format!("the lwt answer has no {name} column")))
        };
        let (applied, position, value) = (index("[applied]")?, index("position"), index("value"));
        let answer = rows
            .single_row::<Row>()
            .map_err(|error| corrupt(&action, error))?;
        let column = |at: usize| answer.columns.get(at).cloned().flatten();
        match column(applied) {
            Some(CqlValue::Boolean(true)) => Ok(None),
            Some(CqlValue::Boolean(false)) => match (column(position?), column(value?)) {
                (Some(CqlValue::BigInt(position)), Some(CqlValue::Blob(value))) => {
                    Ok(Some(StoredRow { position, value }))
                }
                other => Err(corrupt(
                    &action,
                    format!("unexpected existing row {other:?}"),
                )),
            },
            other => Err(corrupt(&action, format!("unexpected [applied] {other:?}"))),
        }
    }

    pub async fn put(&self, key: &RowKey, row: &StoredRow) -> Result<(), StoreError> {
        let statements = self.table(key.table).await?;
        self.session
            .execute_unpaged(
                &statements.put,
                (&key.partition, clustering_of(key), row.position, &row.value),
            )
            .await
            .map_err(|error| execution(&format!("write a row of {}", key.table), error))?;
        Ok(())
    }

    pub async fn checkpoint(
        &self,
        projector: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, StoreError> {
        let action = "read a projector checkpoint";
        let (result, _) = self
            .session
            .execute_single_page(
                &self.checkpoint_get,
                (projector, topic, partition),
                PagingState::start(),
            )
            .await
            .map_err(|error| execution(action, error))?;
        let rows = result
            .into_rows_result()
            .map_err(|error| corrupt(action, error))?;
        Ok(rows
            .maybe_first_row::<(i64,)>()
            .map_err(|error| corrupt(action, error))?
            .map(|(next_offset,)| next_offset))
    }
}
