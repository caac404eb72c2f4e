//! Two processors share the command partitions; one, the group's leader,
//! is frozen with SIGSTOP mid-stream. After its session timeout the broker
//! drops it from the group and the rebalance hands every partition to the
//! survivor; commands keep completing. Then the frozen one wakes (SIGCONT)
//! as a zombie that still believes it owns its partitions, with commands
//! already fetched, and may write stale decisions before it learns it was
//! dropped and rejoins. Every acknowledged command still takes effect
//! exactly once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldline_contracts::envelope::headers;
use foldline_testcontainers::replay::{read_topic, RawRecord};
use foldline_testcontainers::wait::POLL_INTERVAL;
use foldline_testcontainers::{Deadline, Deployment, FoldlineProcess, ReplayedRecord};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::support::{
    check_invariants, check_no_aborted_record_folded, retry_until_acknowledged, send_all,
    spawn_gateway, spawn_processor, wait_settled, Mode, Sent,
};

const ASSIGNED: &str = "partitions assigned";

/// The last "partitions assigned" line of `process`'s log.
fn last_assignment(process: &FoldlineProcess) -> Option<String> {
    process
        .log_text()
        .lines()
        .rev()
        .find(|line| line.contains(ASSIGNED))
        .map(str::to_owned)
}

fn places(prefix: &str, range: std::ops::Range<usize>, customers: &[String]) -> Vec<Sent> {
    range
        .map(|index| Sent::place(prefix, index, &customers[index % customers.len()]))
        .collect()
}

fn cancels_of(prefix: &str, placed: &[Sent]) -> Vec<Sent> {
    placed
        .iter()
        .filter_map(|command| command.order_id.as_deref())
        .map(|order_id| Sent::cancel(prefix, order_id))
        .collect()
}

/// `record` as a writer that decided its command again would have written
/// it: the same bytes with another command id (same length, so the Avro
/// encoding stays valid).
fn with_command_id(record: &RawRecord, command_id: &str) -> RawRecord {
    let original = String::from_utf8_lossy(
        record
            .header(headers::COMMAND_ID)
            .expect("a command-id header"),
    )
    .into_owned();
    assert_eq!(original.len(), command_id.len());
    let swap = |bytes: &[u8]| -> Vec<u8> {
        let mut bytes = bytes.to_vec();
        let needle = original.as_bytes();
        let mut index = 0;
        while index + needle.len() <= bytes.len() {
            if &bytes[index..index + needle.len()] == needle {
                bytes[index..index + needle.len()].copy_from_slice(command_id.as_bytes());
                index += needle.len();
            } else {
                index += 1;
            }
        }
        bytes
    };
    RawRecord {
        payload: record.payload.as_deref().map(swap),
        headers: record
            .headers
            .iter()
            .map(|(key, value)| (key.clone(), value.as_deref().map(swap)))
            .collect(),
        ..record.clone()
    }
}

/// Appends what zombies write behind the owners' backs to `orders.events`:
/// a placement and a cancel decided again under fresh command ids against
/// versions their orders have left (stale decisions), and a byte copy of a
/// settled record (a command decided twice). Returns the stale decisions'
/// command ids and the copied record's.
async fn forge_zombie_writes(deployment: &Deployment) -> (Vec<String>, String) {
    let topic = deployment.topic("orders.events");
    let records = read_topic(deployment.bootstrap_servers(), &topic)
        .await
        .expect("read orders.events");
    let of_type = |record_type: &str| {
        records
            .iter()
            .find(|record| record.header(headers::RECORD_TYPE) == Some(record_type.as_bytes()))
            .unwrap_or_else(|| panic!("no {record_type} in {topic}"))
            .clone()
    };
    let placed = of_type("foldline.orders.OrderPlaced");
    let cancelled = of_type("foldline.orders.OrderCancelled");
    let stale_ids = vec![
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    ];
    let copied_id = String::from_utf8_lossy(
        cancelled
            .header(headers::COMMAND_ID)
            .expect("a command-id header"),
    )
    .into_owned();
    let forged = [
        with_command_id(&placed, &stale_ids[0]),
        with_command_id(&cancelled, &stale_ids[1]),
        cancelled.clone(),
    ];
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", deployment.bootstrap_servers())
        .create()
        .expect("a producer");
    for record in &forged {
        let mut record_headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            record_headers = record_headers.insert(Header {
                key: key.as_str(),
                value: value.as_deref(),
            });
        }
        let mut message = FutureRecord::<[u8], [u8]>::to(&topic)
            .partition(record.partition)
            .headers(record_headers);
        if let Some(key) = &record.key {
            message = message.key(key.as_slice());
        }
        if let Some(payload) = &record.payload {
            message = message.payload(payload.as_slice());
        }
        producer
            .send(message, Duration::from_secs(30))
            .await
            .map_err(|(error, _)| error)
            .expect("append a forged record");
    }
    (stale_ids, copied_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_processor_waking_as_a_zombie_changes_nothing_idempotent() {
    zombie(Mode::Idempotent).await;
}

/// The transactional mode adds: the zombie is fenced (the group refuses its
/// offsets by generation, KIP-447, so its transaction aborts), and none of
/// its writes is ever served to a `read_committed` reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_processor_waking_as_a_zombie_changes_nothing_transactional() {
    zombie(Mode::Transactional).await;
}

/// Where the events of the transactions `process` logged as aborted
/// landed (`written=partition:offset,...`), in the lines after `skip`.
fn aborted_writes(process: &FoldlineProcess, skip: usize) -> Vec<(i32, i64)> {
    process
        .log_text()
        .lines()
        .skip(skip)
        .filter(|line| line.contains("transaction aborted") || line.contains("producer unusable"))
        .filter_map(|line| line.split("written=").nth(1))
        .flat_map(|written| {
            written
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .split(',')
                .filter_map(|position| {
                    let (partition, offset) = position.split_once(':')?;
                    Some((partition.parse().ok()?, offset.parse().ok()?))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn zombie(mode: Mode) {
    let started = Instant::now();
    let deployment = mode.deployment("zombie");
    let prefix = deployment.prefix().to_owned();
    let _gateway = spawn_gateway(&deployment).await;
    // Processor 1 joins first (and so leads the group), then processor 2:
    // the rebalance splits the partitions between them.
    let mut first = spawn_processor(&deployment, "processor-1", "store-processor-1");
    first
        .wait_for_log(ASSIGNED, 1, Deadline::secs(60))
        .await
        .unwrap();
    let mut second = spawn_processor(&deployment, "processor-2", "store-processor-2");
    second
        .wait_for_log(ASSIGNED, 1, Deadline::secs(60))
        .await
        .unwrap();
    first
        .wait_for_log(ASSIGNED, 2, Deadline::secs(60))
        .await
        .unwrap();
    for process in [&first, &second] {
        let assigned = last_assignment(process);
        assert!(
            assigned.as_deref().is_some_and(|line| !line.contains("[]")),
            "{} owns no partition after the split: {assigned:?}\n{}",
            process.name(),
            process.report(40)
        );
    }
    let api = deployment.api().unwrap();
    let customers: Vec<String> = (0..10).map(|_| uuid::Uuid::new_v4().to_string()).collect();

    // Phase 1: both processors decide, each on its own partitions.
    let mut phase_one = send_all(
        &api,
        places(&prefix, 0..40, &customers),
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    retry_until_acknowledged(&api, &mut phase_one, Deadline::secs(30)).await;
    wait_settled(&deployment, &api, &phase_one, Deadline::secs(60)).await;
    eprintln!("phase 1 settled after {:?}", started.elapsed());

    // Phase 2: freeze processor 1 in the middle of a stream; the broker's
    // session timeout drops it and processor 2 takes every partition over.
    let mut phase_two = places(&prefix, 40..100, &customers);
    phase_two.extend(cancels_of(&prefix, &phase_one));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let stream = {
        let api = api.clone();
        let counter = Arc::clone(&acknowledged);
        tokio::spawn(async move { send_all(&api, phase_two, counter).await })
    };
    let deadline = Deadline::secs(30);
    while acknowledged.load(Ordering::SeqCst) < 15 {
        assert!(
            !deadline.passed(),
            "the phase 2 stream does not get acknowledged"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    first.pause().unwrap();
    let paused_at = Instant::now();
    let mut phase_two = stream.await.unwrap();
    retry_until_acknowledged(&api, &mut phase_two, Deadline::secs(30)).await;
    // Completing needs the group to hand processor 1's partitions over.
    wait_settled(&deployment, &api, &phase_two, Deadline::secs(60)).await;
    let taken_over = second
        .log_text()
        .lines()
        .any(|line| line.contains(ASSIGNED) && line.contains("[0, 1, 2, 3, 4, 5]"));
    assert!(
        taken_over,
        "processor 2 never owned every partition\n{}",
        second.report(40)
    );
    eprintln!(
        "phase 2 settled {:?} after the freeze, processor 2 owning every partition",
        paused_at.elapsed()
    );

    // Phase 3: wake the zombie while more commands flow.
    let mut phase_three = places(&prefix, 100..140, &customers);
    phase_three.extend(cancels_of(
        &prefix,
        &phase_two
            .iter()
            .filter(|command| command.kind == crate::support::Kind::Place)
            .cloned()
            .collect::<Vec<_>>(),
    ));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let stream = {
        let api = api.clone();
        let counter = Arc::clone(&acknowledged);
        tokio::spawn(async move { send_all(&api, phase_three, counter).await })
    };
    let deadline = Deadline::secs(30);
    while acknowledged.load(Ordering::SeqCst) < 10 {
        assert!(
            !deadline.passed(),
            "the phase 3 stream does not get acknowledged"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let (stale_ids, copied_id) = forge_zombie_writes(&deployment).await;
    let assignments_before_waking = first.log_text().matches(ASSIGNED).count();
    let lines_before_waking = first.log_text().lines().count();
    first.resume().unwrap();
    // Woken, it finds itself dropped from the group and joins again.
    first
        .wait_for_log(ASSIGNED, assignments_before_waking + 1, Deadline::secs(60))
        .await
        .unwrap();
    let mut phase_three = stream.await.unwrap();
    retry_until_acknowledged(&api, &mut phase_three, Deadline::secs(30)).await;
    wait_settled(&deployment, &api, &phase_three, Deadline::secs(60)).await;
    eprintln!("phase 3 settled after {:?}", started.elapsed());

    let mut commands = phase_one;
    commands.extend(phase_two);
    commands.extend(phase_three);
    let outcomes = wait_settled(&deployment, &api, &commands, Deadline::secs(30)).await;
    assert!(
        first.is_running(),
        "the woken processor died\n{}",
        first.report(60)
    );
    assert!(
        second.is_running(),
        "processor 2 died\n{}",
        second.report(60)
    );
    let replay = deployment.replay().await.unwrap();
    let stale = replay
        .records
        .iter()
        .filter(|record| !record.admitted)
        .count();
    eprintln!(
        "orders.events holds {} records, {stale} of them not admitted (duplicates or stale decisions)",
        replay.records.len()
    );
    check_invariants(&api, &replay, &commands, &outcomes).await;
    for stale_id in &stale_ids {
        let forged = replay.records_of(stale_id);
        assert!(
            forged.len() == 1 && !forged[0].admitted,
            "a stale decision was admitted or lost: {forged:?}"
        );
    }
    let copies = replay.records_of(&copied_id);
    assert!(
        copies.len() == 2 && copies.iter().filter(|record| record.admitted).count() == 1,
        "the copy of a settled record counted: {copies:?}"
    );
    let aborted = check_no_aborted_record_folded(&deployment, &replay).await;
    if mode == Mode::Transactional {
        // Only the forged records (written outside any transaction) are
        // visible and not admitted: no zombie write, no duplicate of a
        // resynchronised round ever committed.
        let visible_losers: Vec<&ReplayedRecord> = replay
            .records
            .iter()
            .filter(|record| {
                !record.admitted
                    && !stale_ids.contains(&record.command_id)
                    && record.command_id != copied_id
            })
            .collect();
        assert!(
            visible_losers.is_empty(),
            "records a read_committed reader is served that no gate admits: {visible_losers:#?}"
        );
        let zombie_writes = aborted_writes(&first, lines_before_waking);
        let aborted_events: std::collections::BTreeSet<(i32, i64)> =
            aborted.events.iter().copied().collect();
        let committed: std::collections::BTreeSet<(i32, i64)> = replay
            .records
            .iter()
            .map(|record| (record.partition, record.offset))
            .collect();
        for position in &zombie_writes {
            assert!(
                !committed.contains(position) && aborted_events.contains(position),
                "the zombie's write at {position:?} is served to a read_committed reader"
            );
        }
        let fenced: Vec<String> = first
            .log_text()
            .lines()
            .skip(lines_before_waking)
            .filter(|line| {
                line.contains("transaction aborted") || line.contains("producer unusable")
            })
            .filter_map(|line| line.split("reason=").nth(1))
            .map(|reason| reason.chars().take(160).collect())
            .collect();
        eprintln!(
            "the woken zombie's writes, all aborted: {zombie_writes:?}; its {} failed transactions: {:#?}",
            fenced.len(),
            &fenced[..fenced.len().min(3)]
        );
    }
    for (name, process) in [("the zombie", &first), ("processor 2", &second)] {
        let log = process.log_text();
        eprintln!(
            "{name} saw {} foreign writes and resynchronised {} times",
            log.matches("event landed after a foreign write").count(),
            log.matches("resynchronising from the log").count()
        );
    }
    eprintln!("zombie test took {:?}", started.elapsed());
}
