//! The notify domain on the real broker, against fake provider servers on
//! loopback: the primary SMS provider fails, then stalls, then recovers
//! (its breaker opens, traffic moves to the backup and returns), poison
//! goes to `notify.dlq` while the partition keeps flowing, and the process
//! running the delivery worker is killed with -9 mid-stream. Every
//! notification is counted at the fakes: none lost, none sent twice beyond
//! what `services/notify/src/design.md` allows.
//!
//! A second test makes the primary slow (every call accepted, late): the
//! slow calls open its breaker, traffic moves to the backup and returns
//! once the primary is fast again, each message delivered once.
//!
//! The primary fake honours `Idempotency-Key`; the backup does not, so a
//! second delivery would show there.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use foldline_testcontainers::wait::poll_until;
use foldline_testcontainers::{
    Api, Behaviour, CommandOptions, Deadline, Deployment, FakeProvider, FoldlineProcess,
    REFUSED_RECIPIENT,
};
use serde_json::json;
use tokio::task::JoinSet;

use crate::notices_support::{
    dead_letters_until, delivered_by, header_text, latency, poison_every_partition, quick_retries,
    report_latency, wait_status,
};
use crate::support::binary;

const CONCURRENCY: usize = 8;

fn provider_env(primary: &FakeProvider, backup: &FakeProvider) -> Vec<(String, String)> {
    [
        (
            "FOLDLINE__NOTIFY__SMS_PROVIDERS",
            format!("primary={},backup={}", primary.url(), backup.url()),
        ),
        // Long enough that a healthy fake answers in time on a loaded box
        // (a timed-out call that was accepted is a second delivery through
        // the backup); the stall phase's calls hang for 60 s either way.
        ("FOLDLINE__NOTIFY__PROVIDER_TIMEOUT_MS", "2000".to_owned()),
        // Slowness off (at the timeout): this test's healthy phases expect
        // the primary, however loaded the box (the slow-call test below
        // turns it on).
        ("FOLDLINE__NOTIFY__BREAKER_SLOW_CALL_MS", "2000".to_owned()),
        (
            "FOLDLINE__NOTIFY__BREAKER_CONSECUTIVE_FAILURES",
            "2".to_owned(),
        ),
        ("FOLDLINE__NOTIFY__BREAKER_OPEN_WAIT_MS", "1000".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .chain(quick_retries())
    .collect()
}

async fn spawn_front(deployment: &Deployment, env: &[(String, String)]) -> FoldlineProcess {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    deployment
        .spawn_ready_with(
            "front",
            &["registry", "gateway", "notify-projector"],
            "store-front",
            &env,
            Deadline::secs(60),
        )
        .await
        .expect("the front process becomes ready")
}

/// Queues one SMS per key (each request retried until the gateway takes
/// it: the gateway dies with the front process); returns the notification
/// ids, in key order.
async fn send_all(api: &Api, keys: Vec<String>, recipient: &str) -> Vec<String> {
    send_all_on(api, "sms", keys, recipient).await
}

async fn send_all_on(api: &Api, channel: &str, keys: Vec<String>, recipient: &str) -> Vec<String> {
    let mut requests = JoinSet::new();
    let mut ids = BTreeMap::new();
    for (index, key) in keys.into_iter().enumerate() {
        if requests.len() >= CONCURRENCY {
            let (index, id) = requests.join_next().await.unwrap().unwrap();
            ids.insert(index, id);
        }
        let (api, recipient, channel) = (api.clone(), recipient.to_owned(), channel.to_owned());
        requests.spawn(async move {
            let body = json!({
                "channel": channel,
                "recipient": recipient,
                "template": "order.confirmed",
                "parameters": {"order": key},
            })
            .to_string();
            let id = poll_until(&format!("queue {key}"), Deadline::secs(90), || async {
                let answer = api
                    .command(
                        "/v1/notifications",
                        body.clone(),
                        &CommandOptions::keyed(&key),
                    )
                    .await
                    .map_err(|error| error.to_string())?;
                match answer.status {
                    202 => Ok(answer.str("notification_id").map(str::to_owned)),
                    _ => Err(answer.to_string()),
                }
            })
            .await
            .expect("the gateway queues the notification");
            (index, id)
        });
    }
    while let Some(done) = requests.join_next().await {
        let (index, id) = done.unwrap();
        ids.insert(index, id);
    }
    ids.into_values().collect()
}

/// The front and the notify processor, warmed up with `warm_ups` emails
/// to the local sink: consumer groups joined and schemas registered, so
/// what the test measures next is steady state.
async fn start_warmed_up(
    deployment: &Deployment,
    env: &[(String, String)],
    warm_ups: usize,
) -> (FoldlineProcess, FoldlineProcess, Api) {
    let front = spawn_front(deployment, env).await;
    let processor = deployment
        .spawn("processor", &["notify-processor"], "store-processor")
        .unwrap();
    let api = deployment.api().unwrap();
    let warm_up = send_all_on(
        &api,
        "email",
        keys(deployment.prefix(), "warm-up", warm_ups),
        "ada@example.org",
    )
    .await;
    wait_status(&api, &warm_up, "sent", Deadline::secs(60)).await;
    (front, processor, api)
}

fn keys(prefix: &str, phase: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|index| format!("{prefix}{phase}-{index}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_moves_sms_to_the_backup_and_back_and_nothing_is_lost_or_doubled() {
    let primary = FakeProvider::start(true).await.unwrap();
    let backup = FakeProvider::start(false).await.unwrap();
    let deployment = Deployment::new(binary(), "notify-failover").unwrap();
    let env = provider_env(&primary, &backup);
    let (mut front, _processor, api) = start_warmed_up(&deployment, &env, 5).await;
    let prefix = deployment.prefix().to_owned();
    let recipient = "+447700900123";
    let mut all = Vec::new();

    // The warm-up went to the email sink, read back through the API.
    let sunk = api
        .get("/v1/notifications/sink?recipient=Ada@Example.org")
        .await
        .unwrap();
    assert_eq!(
        sunk.body["items"].as_array().map(Vec::len),
        Some(5),
        "{sunk}"
    );
    let listed = api
        .get("/v1/notifications?recipient=ada@example.org")
        .await
        .unwrap();
    assert_eq!(
        listed.body["items"].as_array().map(Vec::len),
        Some(5),
        "{listed}"
    );
    let refused = api
        .command(
            "/v1/notifications",
            json!({"channel": "sms", "recipient": "not a phone", "template": "x"}).to_string(),
            &CommandOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(refused.status, 422, "{refused}");
    assert!(refused.is_problem(), "{refused}");

    // Healthy: everything through the primary.
    let healthy = send_all(&api, keys(&prefix, "healthy", 20), recipient).await;
    let views = wait_status(&api, &healthy, "sent", Deadline::secs(60)).await;
    assert!(
        views.iter().all(|view| delivered_by(view) == "primary"),
        "{views:?}"
    );
    let healthy_latency = latency(&api).await;
    report_latency("primary healthy", &healthy_latency);
    all.extend(healthy);

    // The primary fails: the breaker opens, the backup takes everything.
    let primary_calls_before = primary.calls();
    let failed_at = Instant::now();
    primary.set(Behaviour::Fail);
    let failing = send_all(&api, keys(&prefix, "failing", 30), recipient).await;
    let views = wait_status(&api, &failing, "sent", Deadline::secs(60)).await;
    assert!(
        views.iter().all(|view| delivered_by(view) == "backup"),
        "{views:?}"
    );
    let primary_calls = primary.calls() - primary_calls_before;
    assert!(
        primary_calls < failing.len(),
        "the open breaker spares the primary: {primary_calls} calls for {} notifications",
        failing.len()
    );
    let failovers: usize = views
        .iter()
        .map(|view| view["failovers"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(
        failovers,
        failing.len(),
        "every move to the backup is in the log"
    );
    let first_backup = backup
        .accepted_since(failed_at)
        .first()
        .map(|(at, _)| at.duration_since(failed_at))
        .expect("the backup took traffic");
    eprintln!(
        "notify failover: primary failing → first backup acceptance {} ms; {primary_calls} primary calls for {} notifications",
        first_backup.as_millis(),
        failing.len()
    );
    all.extend(failing);

    // The primary stalls: calls time out, the breaker keeps it open.
    let stalled_at = Instant::now();
    primary.set(Behaviour::Stall);
    let stalling = send_all(&api, keys(&prefix, "stalling", 20), recipient).await;
    let views = wait_status(&api, &stalling, "sent", Deadline::secs(90)).await;
    assert!(
        views.iter().all(|view| delivered_by(view) == "backup"),
        "{views:?}"
    );
    eprintln!(
        "notify stall: {} notifications through the backup in {} ms",
        stalling.len(),
        stalled_at.elapsed().as_millis()
    );
    all.extend(stalling);
    report_latency("primary degraded", &latency(&api).await);

    // The primary recovers: the half-open breaker's trials succeed and
    // traffic returns.
    let recovered_at = Instant::now();
    primary.set(Behaviour::Accept);
    let mut round = 0;
    let returned = loop {
        let batch = send_all(
            &api,
            keys(&prefix, &format!("recovered-{round}"), 5),
            recipient,
        )
        .await;
        let views = wait_status(&api, &batch, "sent", Deadline::secs(60)).await;
        all.extend(batch);
        if views.iter().any(|view| delivered_by(view) == "primary") {
            break recovered_at.elapsed();
        }
        assert!(round < 40, "traffic never returned to the primary");
        round += 1;
    };
    eprintln!(
        "notify recovery: traffic back on the primary {} ms after it recovered",
        returned.as_millis()
    );

    // Poison: a recipient every provider refuses goes to notify.dlq with its
    // reason; garbage on notify.commands is parked; the partition flows on.
    let poison = send_all(&api, keys(&prefix, "poison", 1), REFUSED_RECIPIENT).await;
    let failed = wait_status(&api, &poison, "failed", Deadline::secs(60)).await;
    assert!(
        failed[0]["last_failure"]
            .as_str()
            .unwrap_or_default()
            .contains("refused"),
        "{failed:?}"
    );
    poison_every_partition(&deployment, &deployment.topic("notify.commands")).await;
    let after_poison = send_all(&api, keys(&prefix, "after-poison", 10), recipient).await;
    wait_status(&api, &after_poison, "sent", Deadline::secs(60)).await;
    all.extend(after_poison);
    let reason = dead_letters_until(&deployment, "two dead letters", |records| {
        let causes: BTreeSet<String> = records
            .iter()
            .map(|record| header_text(record, "dlq-cause"))
            .collect();
        match causes.contains("exhausted") && causes.contains("poison") {
            true => records
                .iter()
                .find(|record| record.header("dlq-cause") == Some(b"exhausted".as_slice()))
                .map(|record| header_text(record, "dlq-error"))
                .ok_or_else(|| "no exhausted letter".to_owned()),
            false => Err(format!("causes so far: {causes:?}")),
        }
    })
    .await;
    assert!(reason.contains("refused"), "{reason}");

    // kill -9 of the process running the delivery worker (and the gateway)
    // mid-stream, while notifications are still being queued and sent.
    let before = primary.accepted().len();
    let sender = {
        let (api, crash_keys) = (api.clone(), keys(&prefix, "crash", 60));
        tokio::spawn(async move { send_all(&api, crash_keys, recipient).await })
    };
    poll_until(
        "some crash-phase deliveries",
        Deadline::secs(60),
        || async { Ok::<_, String>((primary.accepted().len() >= before + 5).then_some(())) },
    )
    .await
    .unwrap();
    front.kill9().unwrap();
    front = spawn_front(&deployment, &env).await;
    let crash = sender.await.unwrap();
    wait_status(&api, &crash, "sent", Deadline::secs(90)).await;
    let crash_window: BTreeSet<String> = crash.iter().cloned().collect();
    all.extend(crash);

    // Counted at the fakes: every notification accepted, none twice beyond
    // the one crash window.
    let (at_primary, at_backup) = (primary.accepted(), backup.accepted());
    let mut lost = Vec::new();
    let mut doubled = Vec::new();
    for id in &all {
        let times =
            at_primary.get(id).copied().unwrap_or(0) + at_backup.get(id).copied().unwrap_or(0);
        match times {
            0 => lost.push(id.clone()),
            1 => {}
            _ => doubled.push(id.clone()),
        }
    }
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(
        at_primary.values().all(|times| *times == 1),
        "the primary honours its key"
    );
    // The one window of `services/notify/src/design.md`: killed after the
    // primary accepted and before the delivery row was written, the
    // attempt runs again. A repeated call to the primary is absorbed by its
    // key; only when that call timed out (a loaded box) and the attempt
    // moved on to the backup, which has no key, is a message delivered
    // twice: once by each provider, and only for a notification of the
    // crash phase.
    let outside_the_window: Vec<&String> = doubled
        .iter()
        .filter(|id| {
            !crash_window.contains(*id)
                || at_primary.get(*id).copied() != Some(1)
                || at_backup.get(*id).copied() != Some(1)
        })
        .collect();
    assert!(
        outside_the_window.is_empty(),
        "sent twice outside the crash window: {outside_the_window:?} (of {doubled:?})"
    );
    let unknown: Vec<_> = at_primary
        .keys()
        .chain(at_backup.keys())
        .filter(|id| !all.contains(id))
        .collect();
    assert!(
        unknown.is_empty(),
        "accepted but never asked for: {unknown:?}"
    );
    eprintln!(
        "notify delivery: {} notifications, primary accepted {}, backup accepted {}, sent twice {}, repeats absorbed by the primary's key {}",
        all.len(),
        at_primary.len(),
        at_backup.len(),
        doubled.len(),
        primary.absorbed_repeats()
    );
    report_latency("final", &latency(&api).await);
    drop(front);
}

/// Sends rounds of `ROUND` texts until one is delivered by `provider`;
/// returns the ids sent and the views of the last round.
async fn rounds_until_delivered_by(
    api: &Api,
    prefix: &str,
    phase: &str,
    recipient: &str,
    provider: &str,
) -> (Vec<String>, Vec<serde_json::Value>) {
    const ROUND: usize = 8;
    const MOST_ROUNDS: usize = 30;
    let mut sent = Vec::new();
    for round in 0..MOST_ROUNDS {
        let batch = send_all(
            api,
            keys(prefix, &format!("{phase}-{round}"), ROUND),
            recipient,
        )
        .await;
        let views = wait_status(api, &batch, "sent", Deadline::secs(90)).await;
        sent.extend(batch);
        if views.iter().any(|view| delivered_by(view) == provider) {
            return (sent, views);
        }
    }
    panic!("{phase}: no text delivered by {provider} in {MOST_ROUNDS} rounds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_primary_loses_its_texts_to_the_backup_and_wins_them_back_once_each() {
    let primary = FakeProvider::start(true).await.unwrap();
    let backup = FakeProvider::start(false).await.unwrap();
    let deployment = Deployment::new(binary(), "notify-slow").unwrap();
    let env: Vec<(String, String)> = [
        (
            "FOLDLINE__NOTIFY__SMS_PROVIDERS",
            format!("primary={},backup={}", primary.url(), backup.url()),
        ),
        // The slow primary answers (accepts) well within the timeout, so
        // no call times out: each text reaches exactly one provider.
        ("FOLDLINE__NOTIFY__PROVIDER_TIMEOUT_MS", "10000".to_owned()),
        // Far below the slow answers, far above a healthy one on a loaded
        // box (a fast trial that came out slow only delays the return).
        ("FOLDLINE__NOTIFY__BREAKER_SLOW_CALL_MS", "500".to_owned()),
        (
            "FOLDLINE__NOTIFY__BREAKER_CONSECUTIVE_FAILURES",
            "2".to_owned(),
        ),
        ("FOLDLINE__NOTIFY__BREAKER_OPEN_WAIT_MS", "1000".to_owned()),
        ("FOLDLINE__NOTIFY__IN_FLIGHT_PER_CHANNEL", "4".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .chain(quick_retries())
    .collect();
    let (front, _processor, api) = start_warmed_up(&deployment, &env, 3).await;
    let prefix = deployment.prefix().to_owned();
    let recipient = "+447700900124";
    let mut all = Vec::new();

    // Slow: every call accepted, 1.5 s late. The slow calls deliver (and
    // are recorded as sent, never sent again); then the open breaker
    // sends the texts to the backup without calling the primary.
    primary.set(Behaviour::Slow(Duration::from_millis(1_500)));
    let (slow, views) = rounds_until_delivered_by(&api, &prefix, "slow", recipient, "backup").await;
    let skipped = views
        .iter()
        .flat_map(|view| view["failovers"].as_array().cloned().unwrap_or_default())
        .filter(|failover| failover["reason"] == "circuit breaker open")
        .count();
    assert!(
        skipped > 0,
        "the open breaker skipped the primary: {views:?}"
    );
    eprintln!(
        "notify slow primary: traffic on the backup after {} texts",
        slow.len()
    );
    all.extend(slow);

    // Fast again: a half-open trial succeeds in time and closes the
    // breaker; traffic returns.
    primary.set(Behaviour::Accept);
    let (recovered, _) =
        rounds_until_delivered_by(&api, &prefix, "fast-again", recipient, "primary").await;
    all.extend(recovered);

    // Counted at the fakes: every text accepted exactly once, by one of
    // them (no call timed out, no process died).
    let (at_primary, at_backup) = (primary.accepted(), backup.accepted());
    for id in &all {
        let times =
            at_primary.get(id).copied().unwrap_or(0) + at_backup.get(id).copied().unwrap_or(0);
        assert_eq!(
            times, 1,
            "{id}: primary {at_primary:?}, backup {at_backup:?}"
        );
    }
    assert_eq!(primary.absorbed_repeats(), 0, "no text was sent twice");
    let unknown: Vec<_> = at_primary
        .keys()
        .chain(at_backup.keys())
        .filter(|id| !all.contains(id))
        .collect();
    assert!(
        unknown.is_empty(),
        "accepted but never asked for: {unknown:?}"
    );
    assert!(!at_backup.is_empty() && !at_primary.is_empty());
    drop(front);
}
