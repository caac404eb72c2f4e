//! The processor loop against the mock cluster, with the counter domain:
//! redelivery, undecidable commands, foreign writes, partitions moving to
//! a new member.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use foldline_contracts::envelope::CommandOutcome;
use foldline_contracts::orders::ShipOrder;
use foldline_platform::dlq::headers as dlq;
use foldline_platform::store::Store;
use foldline_testcontainers::{poll_until, Deadline, RawRecord};

use crate::support::{increment, incremented, Fixture, INCREMENTED, UNDECLARED_RECORD, UNMAPPABLE};

fn header(record: &RawRecord, name: &str) -> String {
    String::from_utf8_lossy(record.header(name).unwrap_or_default()).into_owned()
}

fn of<'o>(
    outcomes: &'o [(Vec<u8>, CommandOutcome)],
    command: &ShipOrder,
) -> Vec<&'o (Vec<u8>, CommandOutcome)> {
    outcomes
        .iter()
        .filter(|(_, outcome)| outcome.command_id == command.metadata.command_id)
        .collect()
}

/// Waits until `command` has `count` outcomes; returns them.
async fn await_outcome_count(
    fixture: &Fixture,
    command: &ShipOrder,
    count: usize,
) -> Vec<(Vec<u8>, CommandOutcome)> {
    poll_until("the command's outcomes", Deadline::secs(60), || async {
        let outcomes = fixture.outcomes().await;
        let found: Vec<_> = of(&outcomes, command).into_iter().cloned().collect();
        if found.len() >= count {
            Ok(Some(found))
        } else {
            Err(format!("{} of {count} outcomes", found.len()))
        }
    })
    .await
    .expect("outcomes arrive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_command_is_settled_once_and_answered_identically() {
    let fixture = Fixture::start(1).await;
    let processor = fixture.spawn_processor("redelivery", "first", Store::in_memory());
    let command = increment("c-1", 1);
    fixture.send_command(0, &command).await;
    fixture.send_command(0, &command).await;
    let twice = await_outcome_count(&fixture, &command, 2).await;
    processor.stop().await;

    // Once more to a successor with no snapshot: only the log can tell it
    // the command is settled.
    fixture.send_command(0, &command).await;
    let successor = fixture.spawn_processor("redelivery", "successor", Store::in_memory());
    let thrice = await_outcome_count(&fixture, &command, 3).await;
    successor.stop().await;

    assert_eq!(twice[..], thrice[..2]);
    for (bytes, outcome) in &thrice {
        assert_eq!(bytes, &thrice[0].0, "every answer is byte-identical");
        assert_eq!(outcome.status, CommandOutcome::ACCEPTED);
        assert_eq!((outcome.aggregate_version, outcome.event_offset), (1, 0));
    }
    let (log, records) = fixture.fold_events(0).await;
    assert_eq!(records.len(), 1, "one command, one event");
    assert_eq!(
        log.settled(&command.metadata.command_id),
        Some(&thrice[0].1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_that_cannot_be_encoded_is_parked_and_the_partition_moves_on() {
    let fixture = Fixture::start(1).await;
    let processor = fixture.spawn_processor("undecidable", "processor", Store::in_memory());
    let unmappable = increment(&format!("{UNMAPPABLE}1"), 10);
    let undeclared = increment(&format!("{UNDECLARED_RECORD}1"), 11);
    let fine = increment("c-1", 12);
    let mut offsets = Vec::new();
    for command in [&unmappable, &undeclared, &fine] {
        offsets.push(fixture.send_command(0, command).await);
    }
    // The command behind the undecidable ones settles: nothing spins.
    let outcomes = fixture
        .await_outcomes(
            std::slice::from_ref(&fine.metadata.command_id),
            Deadline::secs(60),
        )
        .await;
    processor.stop().await;

    // Parked before the batch's outcomes are published, once each.
    let parked = fixture.read(&fixture.topics.dlq).await;
    assert_eq!(parked.len(), 2, "{parked:?}");
    let commands = fixture.read(&fixture.topics.commands).await;
    for ((letter, command), (offset, reason)) in parked.iter().zip([&unmappable, &undeclared]).zip(
        offsets
            .iter()
            .zip(["does not map to avro", "no schema is declared"]),
    ) {
        assert_eq!(header(letter, dlq::CAUSE), "undecidable");
        assert!(header(letter, dlq::ERROR).contains(reason), "{letter:?}");
        assert_eq!(header(letter, dlq::TOPIC), fixture.topics.commands);
        assert_eq!(header(letter, dlq::PARTITION), "0");
        assert_eq!(header(letter, dlq::OFFSET), offset.to_string());
        assert_eq!(letter.key.as_deref(), Some(command.order_id.as_bytes()));
        let original = commands
            .iter()
            .find(|record| record.offset == *offset)
            .expect("the original command");
        assert_eq!(letter.payload, original.payload, "replayable as it came");
    }
    // No record in the log and no outcome: for every reader the
    // undecidable commands never happened, and they are not settled.
    assert!(of(&outcomes, &unmappable).is_empty());
    assert!(of(&outcomes, &undeclared).is_empty());
    let (log, records) = fixture.fold_events(0).await;
    assert_eq!(records.len(), 1);
    let settled = log.settled(&fine.metadata.command_id).expect("settled");
    assert_eq!((settled.event_offset, settled.aggregate_version), (0, 1));
    assert!(log.settled(&unmappable.metadata.command_id).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_foreign_write_the_processor_publishes_the_logs_fold() {
    let fixture = Fixture::start(1).await;
    let processor = fixture.spawn_processor("foreign", "processor", Store::in_memory());
    let first = increment("c-1", 1);
    fixture.send_command(0, &first).await;
    await_outcome_count(&fixture, &first, 1).await;

    // Between two batches, someone else appends a valid decision (against
    // version 1) to the partition: the processor's state is one behind.
    let foreign = increment("c-1", 2);
    let bytes = fixture
        .codec
        .encode(
            &fixture.topics.events,
            INCREMENTED,
            &incremented(1, &foreign),
        )
        .await
        .expect("encode");
    let foreign_offset = fixture
        .produce(&fixture.topics.events, 0, &foreign.order_id, &bytes)
        .await;
    assert_eq!(foreign_offset, 1);

    let second = increment("c-1", 3);
    fixture.send_command(0, &second).await;
    let answered = await_outcome_count(&fixture, &second, 1).await;
    processor.stop().await;

    let (log, records) = fixture.fold_events(0).await;
    let settled = log.settled(&second.metadata.command_id).expect("settled");
    assert_eq!(&answered[0].1, settled, "the outcome is the log's fold");
    // Its first append (decided against version 1, landed at 2) is void:
    // the gate ignores it, and the redecision against version 2 counts.
    assert_eq!((settled.aggregate_version, settled.event_offset), (3, 3));
    assert_eq!(records.len(), 4);
    assert_eq!(log.aggregate("c-1").version, 3);
    assert!(log.settled(&foreign.metadata.command_id).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_moving_to_a_new_member_settle_every_command_once() {
    const PARTITIONS: i32 = 4;
    const COUNTERS: u128 = 8;
    let fixture = Fixture::start(PARTITIONS).await;
    let group = "moving";
    let (store_a, store_b) = (Store::in_memory(), Store::in_memory());
    let sent: Mutex<Vec<(i32, ShipOrder)>> = Mutex::new(Vec::new());
    // Counter `n` lives on partition `n % PARTITIONS`.
    let send = |seed: u128| {
        let counter = seed % COUNTERS;
        let partition = (counter % PARTITIONS as u128) as i32;
        send_recorded(
            &fixture,
            &sent,
            partition,
            increment(&format!("c-{counter}"), seed),
        )
    };

    let a = fixture.spawn_processor(group, "member-a", store_a.clone());
    for seed in 1..=40 {
        send(seed).await;
    }
    poll_until("the first member at work", Deadline::secs(60), || async {
        let published = fixture.outcomes().await.len();
        Ok((published >= 8).then_some(()))
    })
    .await
    .expect("the first member settles commands");

    // B joins while A still works through its queue: the group revokes
    // A's partitions mid-stream. Keep commands coming until B has settled
    // some of its own (it snapshots every settled batch).
    let b = fixture.spawn_processor(group, "member-b", store_b.clone());
    let next_seed = Mutex::new(41);
    poll_until("the second member at work", Deadline::secs(90), || async {
        for _ in 0..PARTITIONS {
            let seed = {
                let mut next = next_seed.lock().expect("seed");
                *next += 1;
                *next - 1
            };
            send(seed).await;
        }
        let snapshots = snapshots(&store_b, group, &fixture.topics.events).await;
        Ok((!snapshots.is_empty()).then_some(()))
    })
    .await
    .expect("the second member settles commands");

    let sent = sent.into_inner().expect("sent");
    let ids: Vec<String> = sent
        .iter()
        .map(|(_, command)| command.metadata.command_id.clone())
        .collect();
    let outcomes = fixture.await_outcomes(&ids, Deadline::secs(120)).await;
    a.stop().await;
    b.stop().await;
    assert!(!snapshots(&store_a, group, &fixture.topics.events)
        .await
        .is_empty());

    let mut logs = BTreeMap::new();
    let mut appended: HashMap<String, usize> = HashMap::new();
    for partition in 0..PARTITIONS {
        let (log, records) = fixture.fold_events(partition).await;
        for record in &records {
            let command_id = String::from_utf8_lossy(
                record
                    .header(foldline_contracts::envelope::headers::COMMAND_ID)
                    .unwrap_or_default(),
            )
            .into_owned();
            *appended.entry(command_id).or_default() += 1;
        }
        logs.insert(partition, log);
    }
    let mut per_counter: HashMap<String, u64> = HashMap::new();
    for (partition, command) in &sent {
        let id = &command.metadata.command_id;
        assert_eq!(appended.get(id), Some(&1), "{id} appended once");
        let settled = logs[partition].settled(id).expect("settled in the log");
        for (_, outcome) in of(&outcomes, command) {
            assert_eq!(outcome, settled, "every answer is the log's");
        }
        *per_counter.entry(command.order_id.clone()).or_default() += 1;
    }
    assert_eq!(appended.len(), sent.len(), "nothing but these commands");
    for (counter, count) in per_counter {
        let partition = sent
            .iter()
            .find(|(_, command)| command.order_id == counter)
            .map(|(partition, _)| *partition)
            .expect("a partition");
        assert_eq!(
            logs[&partition].aggregate(&counter).version,
            count,
            "{counter}"
        );
    }
}

async fn send_recorded(
    fixture: &Fixture,
    sent: &Mutex<Vec<(i32, ShipOrder)>>,
    partition: i32,
    command: ShipOrder,
) {
    fixture.send_command(partition, &command).await;
    sent.lock().expect("sent").push((partition, command));
}

/// The snapshots a member wrote: it settled commands of those partitions.
/// (The table and key layout are the processor's, restated here.)
async fn snapshots(store: &Store, group: &str, events: &str) -> Vec<Vec<u8>> {
    store
        .scan(
            "processor_snapshots",
            format!("{group}\u{0}{events}").into_bytes(),
            None,
            100,
        )
        .await
        .expect("scan")
        .into_iter()
        .map(|(partition, _)| partition)
        .collect()
}
