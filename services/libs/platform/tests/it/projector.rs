//! The projector resumes where its store says, whatever the group offset
//! says: ahead of the rows, behind them, or left over from a wiped store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use foldline_contracts::orders::OrderShipped;
use foldline_contracts::record::WireError;
use foldline_platform::codec::Decoded;
use foldline_platform::projector::{
    self, CurrentRows, Projection, ProjectionError, ProjectorError, ProjectorOptions, Watermarks,
};
use foldline_platform::shutdown;
use foldline_platform::store::{RowKey, Store, StoredRow};

use crate::support::{increment, incremented, Fixture, Running, INCREMENTED};

const TABLE: &str = "projected";
const PROJECTOR: &str = "rows-projector";

/// One row per record, and a note of every record it was asked to project.
#[derive(Debug, Default)]
struct Rows {
    projected: Mutex<Vec<i64>>,
}

fn row_key(partition: i32, offset: i64) -> RowKey {
    RowKey::new(TABLE, partition.to_be_bytes(), offset.to_be_bytes())
}

impl Projection for Rows {
    type Record = OrderShipped;

    fn parse_record(&self, decoded: Decoded) -> Result<OrderShipped, WireError> {
        foldline_contracts::record::read_avro(&decoded.record_name, &decoded.value)
    }

    fn rows_to_read(&self, _record: &OrderShipped) -> Vec<RowKey> {
        Vec::new()
    }

    fn project(
        &self,
        record: &OrderShipped,
        partition: i32,
        offset: i64,
        _current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        self.projected.lock().expect("projected").push(offset);
        Ok(vec![(
            row_key(partition, offset),
            StoredRow {
                position: offset,
                value: record.metadata.command_id.clone().into_bytes(),
            },
        )])
    }
}

impl Rows {
    fn take(&self) -> Vec<i64> {
        std::mem::take(&mut *self.projected.lock().expect("projected"))
    }
}

fn spawn<P: Projection>(
    fixture: &Fixture,
    rows: &Arc<P>,
    store: &Store,
) -> (Running<ProjectorError>, Watermarks) {
    let (handle, watermarks) = projector::watermarks();
    let (trigger, shutdown) = shutdown::channel();
    let options = ProjectorOptions {
        name: PROJECTOR.to_owned(),
        client_id: "rows-projector".to_owned(),
        topic: fixture.topics.events.clone(),
        dlq: fixture.topics.dlq.clone(),
        max_batch: 4,
    };
    let (kafka, codec, store, rows) = (
        fixture.kafka.clone(),
        fixture.codec.clone(),
        store.clone(),
        Arc::clone(rows),
    );
    let task = tokio::spawn(async move {
        projector::run(rows, options, &kafka, codec, store, handle, shutdown).await
    });
    (Running { trigger, task }, watermarks)
}

/// Appends events at the next offsets of partition 0.
async fn append(fixture: &Fixture, seeds: std::ops::Range<u128>) {
    for seed in seeds {
        let event = incremented(0, &increment("c-1", seed));
        let bytes = fixture
            .codec
            .encode(&fixture.topics.events, INCREMENTED, &event)
            .await
            .expect("encode");
        fixture
            .produce(&fixture.topics.events, 0, "c-1", &bytes)
            .await;
    }
}

/// Runs a projector on `store` until it has projected through `last`;
/// returns the offsets it projected.
async fn project_through(
    fixture: &Fixture,
    rows: &Arc<Rows>,
    store: &Store,
    last: i64,
) -> Vec<i64> {
    let (running, watermarks) = spawn(fixture, rows, store);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    assert!(
        watermarks.wait_for(0, last, deadline).await,
        "the projector never reached offset {last}"
    );
    running.stop().await;
    rows.take()
}

async fn stored_offsets(store: &Store) -> Vec<i64> {
    store
        .scan(TABLE, 0_i32.to_be_bytes().to_vec(), None, 100)
        .await
        .expect("scan")
        .into_iter()
        .map(|(_, row)| row.position)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_checkpoint_decides_where_a_projection_resumes() {
    let fixture = Fixture::start(1).await;
    let rows = Arc::new(Rows::default());
    let store = Store::in_memory();
    let events = fixture.topics.events.clone();

    append(&fixture, 0..5).await;
    assert_eq!(
        project_through(&fixture, &rows, &store, 4).await,
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(
        store
            .checkpoint(PROJECTOR, &events, 0)
            .await
            .expect("checkpoint"),
        Some(5)
    );

    // The group offset runs ahead of the rows (as after restoring the
    // store from an older backup): resuming there would skip 5..8.
    append(&fixture, 5..8).await;
    fixture.commit_group_offset(PROJECTOR, &events, 0, 8).await;
    assert_eq!(
        project_through(&fixture, &rows, &store, 7).await,
        vec![5, 6, 7]
    );

    // The group offset falls behind (reset to the start): nothing the rows
    // already reflect is projected again.
    fixture.commit_group_offset(PROJECTOR, &events, 0, 0).await;
    append(&fixture, 8..9).await;
    assert_eq!(project_through(&fixture, &rows, &store, 8).await, vec![8]);
    assert_eq!(stored_offsets(&store).await, (0..9).collect::<Vec<_>>());

    // A wiped store with the group offset left at the end: no checkpoint,
    // so the projection is rebuilt from the log start, not from the group.
    fixture.commit_group_offset(PROJECTOR, &events, 0, 9).await;
    let wiped = Store::in_memory();
    assert_eq!(
        project_through(&fixture, &rows, &wiped, 8).await,
        (0..9).collect::<Vec<_>>()
    );
    assert_eq!(stored_offsets(&wiped).await, (0..9).collect::<Vec<_>>());
    assert_eq!(
        wiped
            .checkpoint(PROJECTOR, &events, 0)
            .await
            .expect("checkpoint"),
        Some(9)
    );
}

/// Every record reads and bumps one shared row: the rows a batch needs are
/// read up front, so each record after the first must see the batch's own
/// writes over what the store held before it.
#[derive(Debug, Default)]
struct Counter;

fn counter_key() -> RowKey {
    RowKey::new(TABLE, b"counter".to_vec(), Vec::new())
}

impl Projection for Counter {
    type Record = OrderShipped;

    fn parse_record(&self, decoded: Decoded) -> Result<OrderShipped, WireError> {
        foldline_contracts::record::read_avro(&decoded.record_name, &decoded.value)
    }

    fn rows_to_read(&self, _record: &OrderShipped) -> Vec<RowKey> {
        vec![counter_key()]
    }

    fn project(
        &self,
        _record: &OrderShipped,
        _partition: i32,
        offset: i64,
        current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        let count = match current.get(&counter_key()) {
            Some(Some(row)) => u64::from_be_bytes(
                row.value
                    .as_slice()
                    .try_into()
                    .expect("the counter is 8 bytes"),
            ),
            Some(None) => 0,
            None => panic!("the counter was not among the current rows"),
        };
        Ok(vec![(
            counter_key(),
            StoredRow {
                position: offset,
                value: (count + 1).to_be_bytes().to_vec(),
            },
        )])
    }
}

async fn counted(store: &Store) -> (u64, i64) {
    let row = store
        .get(counter_key())
        .await
        .expect("read the counter")
        .expect("the counter exists");
    let count = u64::from_be_bytes(row.value.as_slice().try_into().expect("8 bytes"));
    (count, row.position)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_one_batch_fold_over_each_others_writes_and_the_stored_row() {
    let fixture = Fixture::start(1).await;
    let store = Store::in_memory();
    let counter = Arc::new(Counter);
    let run = |last: i64| {
        let (running, watermarks) = spawn(&fixture, &counter, &store);
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            assert!(
                watermarks.wait_for(0, last, deadline).await,
                "the projector never reached offset {last}"
            );
            running.stop().await;
        }
    };

    // Ten records in batches of at most four: every one counted once.
    append(&fixture, 0..10).await;
    run(9).await;
    assert_eq!(counted(&store).await, (10, 9));

    // A second run starts from the stored row, read before its first batch.
    append(&fixture, 10..13).await;
    run(12).await;
    assert_eq!(counted(&store).await, (13, 12));
}
