//! What the end-to-end tests share: the command stream they fire at the
//! gateway, the waits for outcomes, and the invariants every fault test
//! checks against the replayed log.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use foldline_testcontainers::wait::POLL_INTERVAL;
use foldline_testcontainers::{
    place_body, poll_until, Api, CommandOptions, Deadline, Deployment, FoldlineProcess, Replay,
};
use serde_json::Value;
use tokio::task::JoinSet;

/// The binary under test.
pub(crate) fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_foldline")
}

/// Processors snapshot every few commands, so a restart restores from a
/// snapshot plus the log tail rather than from the log start.
pub(crate) const SNAPSHOT_OFTEN: &[(&str, &str)] = &[
    ("FOLDLINE__PROCESSOR__SNAPSHOT_EVERY_COMMANDS", "5"),
    ("FOLDLINE__PROCESSOR__SNAPSHOT_SCALES_WITH_STATE", "false"),
];

/// Every role in one process (registry, gateway, orders), ready.
pub(crate) async fn spawn_platform(deployment: &Deployment) -> FoldlineProcess {
    deployment
        .spawn_ready(
            "platform",
            &["registry", "gateway", "orders"],
            "store",
            Deadline::secs(60),
        )
        .await
        .expect("the platform process becomes ready")
}

/// The front process of every fault test: registry, gateway and the
/// projector whose store the gateway reads. Ready when it returns.
/// The payment provider simulator as its own process on `port`, with
/// `env` (its knobs: `FOLDLINE__PAYMENTS__SIMULATOR__*`), once it answers.
pub(crate) async fn spawn_simulator(
    deployment: &Deployment,
    env: &[(String, String)],
    port: u16,
) -> FoldlineProcess {
    let mut env = env.to_vec();
    env.push((
        "FOLDLINE__PAYMENTS__SIMULATOR__LISTEN".to_owned(),
        format!("127.0.0.1:{port}"),
    ));
    let pairs: Vec<(&str, &str)> = env
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    let mut simulator = deployment
        .spawn_with("simulator", &["provider-simulator"], "unused", &pairs)
        .unwrap();
    simulator
        .wait_ready(
            &format!("http://127.0.0.1:{port}/healthz"),
            Deadline::secs(60),
        )
        .await
        .expect("the simulator becomes ready");
    simulator
}

pub(crate) async fn spawn_gateway(deployment: &Deployment) -> FoldlineProcess {
    deployment
        .spawn_ready(
            "gateway",
            &["registry", "gateway", "orders-projector"],
            "store-gateway",
            Deadline::secs(60),
        )
        .await
        .expect("the gateway process becomes ready")
}

/// A command processor named `name` (also its `processor.instance_id`, so a
/// relaunch under the same name is the same replica), snapshotting often
/// into `store`.
pub(crate) fn spawn_processor(deployment: &Deployment, name: &str, store: &str) -> FoldlineProcess {
    spawn_processor_with(deployment, name, store, &[])
}

/// [`spawn_processor`] with extra environment variables.
pub(crate) fn spawn_processor_with(
    deployment: &Deployment,
    name: &str,
    store: &str,
    extra_env: &[(&str, &str)],
) -> FoldlineProcess {
    let mut env = SNAPSHOT_OFTEN.to_vec();
    env.push(("FOLDLINE__PROCESSOR__INSTANCE_ID", name));
    env.extend_from_slice(extra_env);
    deployment
        .spawn_with(name, &["orders-processor"], store, &env)
        .expect("spawn a processor process")
}

/// The two `kafka.transactions` modes every fault scenario runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Idempotent producer, offsets committed by the consumer: safe by the
    /// version gate alone.
    Idempotent,
    /// Events, outcomes and offsets in one transaction per round.
    Transactional,
}

impl Mode {
    /// A deployment named `name` (plus the mode) whose processes all run in
    /// this mode.
    pub(crate) fn deployment(self, name: &str) -> Deployment {
        self.on(Deployment::new(binary(), &self.name(name)).unwrap())
    }

    /// `deployment`, its processes running in this mode.
    pub(crate) fn on(self, deployment: Deployment) -> Deployment {
        deployment.with_transactions(match self {
            Mode::Idempotent => "off",
            Mode::Transactional => "on",
        })
    }

    pub(crate) fn name(self, name: &str) -> String {
        match self {
            Mode::Idempotent => format!("{name}-idem"),
            Mode::Transactional => format!("{name}-tx"),
        }
    }
}

/// Requests in flight at once while streaming commands.
pub(crate) const CONCURRENCY: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Place,
    Cancel,
}

/// One command request of a stream and what became of it.
#[derive(Clone, Debug)]
pub(crate) struct Sent {
    pub(crate) kind: Kind,
    pub(crate) idempotency_key: String,
    pub(crate) path: String,
    pub(crate) body: String,
    /// A placement's total, as the client computes it.
    pub(crate) expected_total: Option<i64>,
    /// Known when the gateway acknowledged the request (202).
    pub(crate) command_id: Option<String>,
    /// Known up front for a cancel, on acknowledgement for a placement.
    pub(crate) order_id: Option<String>,
    /// Every failed attempt (transport error or unexpected status).
    pub(crate) errors: Vec<String>,
}

impl Sent {
    /// A placement of 1..=3 × SKU-1 at 12.50 plus one SKU-2 at 0.99.
    pub(crate) fn place(prefix: &str, index: usize, customer_id: &str) -> Sent {
        let quantity = 1 + (index % 3) as i64;
        let body = place_body(
            customer_id,
            "EUR",
            &[("SKU-1", quantity, 1250), ("SKU-2", 1, 99)],
        );
        Sent {
            kind: Kind::Place,
            idempotency_key: format!("{prefix}place-{index}"),
            path: "/v1/orders".to_owned(),
            body: body.to_string(),
            expected_total: Some(quantity * 1250 + 99),
            command_id: None,
            order_id: None,
            errors: Vec::new(),
        }
    }

    pub(crate) fn cancel(prefix: &str, order_id: &str) -> Sent {
        Sent {
            kind: Kind::Cancel,
            idempotency_key: format!("{prefix}cancel-{order_id}"),
            path: format!("/v1/orders/{order_id}/cancel"),
            body: serde_json::json!({"reason": "changed my mind"}).to_string(),
            expected_total: None,
            command_id: None,
            order_id: Some(order_id.to_owned()),
            errors: Vec::new(),
        }
    }

    pub(crate) fn acknowledged(&self) -> bool {
        self.command_id.is_some()
    }

    /// One attempt, without `Prefer: wait`. A 202 records the ids; anything
    /// else is recorded as an error to retry with the same key.
    pub(crate) async fn attempt(&mut self, api: &Api) -> bool {
        let options = CommandOptions::keyed(&self.idempotency_key);
        match api.command(&self.path, self.body.clone(), &options).await {
            Ok(response) if response.status == 202 => {
                let command_id = response.str("command_id").map(str::to_owned);
                let order_id = response.str("order_id").map(str::to_owned);
                let location_ok = match (&command_id, response.location()) {
                    (Some(command_id), Some(location)) => {
                        location == format!("/v1/commands/{command_id}")
                    }
                    _ => false,
                };
                if command_id.is_none() || order_id.is_none() || !location_ok {
                    self.errors.push(format!(
                        "202 without ids or Location: {response} {:?}",
                        response.location()
                    ));
                    return false;
                }
                if let (Some(known), Some(answered)) = (&self.order_id, &order_id) {
                    if known != answered {
                        self.errors.push(format!(
                            "202 names order {answered}, the request was for {known}"
                        ));
                        return false;
                    }
                }
                if let (Some(known), Some(answered)) = (&self.command_id, &command_id) {
                    if known != answered {
                        self.errors.push(format!(
                            "a retry with the same idempotency key got command {answered}, the first got {known}"
                        ));
                        return false;
                    }
                }
                self.command_id = command_id;
                self.order_id = order_id;
                true
            }
            Ok(response) => {
                self.errors.push(response.to_string());
                false
            }
            Err(error) => {
                self.errors.push(format!("{error:#}"));
                false
            }
        }
    }
}

/// Sends every command once, `CONCURRENCY` at a time; `acknowledged` counts
/// the 202s as they come (so another task can act in the middle of the
/// stream). Returns the commands in their original order.
pub(crate) async fn send_all(
    api: &Api,
    commands: Vec<Sent>,
    acknowledged: Arc<AtomicUsize>,
) -> Vec<Sent> {
    let total = commands.len();
    let mut pending = commands.into_iter().enumerate();
    let mut in_flight = JoinSet::new();
    let mut done: Vec<Option<Sent>> = vec![None; total];
    loop {
        while in_flight.len() < CONCURRENCY {
            let Some((index, mut command)) = pending.next() else {
                break;
            };
            let api = api.clone();
            let acknowledged = Arc::clone(&acknowledged);
            in_flight.spawn(async move {
                if command.attempt(&api).await {
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                }
                (index, command)
            });
        }
        let Some(joined) = in_flight.join_next().await else {
            break;
        };
        let (index, command) = joined.expect("a sender task panicked");
        done[index] = Some(command);
    }
    done.into_iter()
        .map(|command| command.expect("every command was sent"))
        .collect()
}

/// Retries every unacknowledged command with its idempotency key until all
/// are acknowledged; fails naming the stubborn ones.
pub(crate) async fn retry_until_acknowledged(api: &Api, commands: &mut [Sent], deadline: Deadline) {
    loop {
        let mut stubborn = Vec::new();
        for command in commands
            .iter_mut()
            .filter(|command| !command.acknowledged())
        {
            if !command.attempt(api).await {
                stubborn.push(command.idempotency_key.clone());
            }
        }
        if stubborn.is_empty() {
            return;
        }
        if deadline.passed() {
            let examples: Vec<String> = commands
                .iter()
                .filter(|command| !command.acknowledged())
                .take(5)
                .map(|command| format!("{}: {:?}", command.idempotency_key, command.errors))
                .collect();
            panic!(
                "{} commands still not acknowledged after {:?} of retries, e.g. {examples:#?}",
                stubborn.len(),
                deadline.budget()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Waits until GET /v1/commands/{id} answers a non-pending status for every
/// acknowledged command; returns those answers by command id.
pub(crate) async fn wait_settled(
    deployment: &Deployment,
    api: &Api,
    commands: &[Sent],
    deadline: Deadline,
) -> HashMap<String, Value> {
    let started = Instant::now();
    let ids: Vec<String> = commands
        .iter()
        .filter_map(|command| command.command_id.clone())
        .collect();
    let mut settled: HashMap<String, Value> = HashMap::new();
    loop {
        let unsettled: Vec<String> = ids
            .iter()
            .filter(|id| !settled.contains_key(*id))
            .cloned()
            .collect();
        let mut answers = JoinSet::new();
        for chunk in unsettled.chunks(unsettled.len().div_ceil(CONCURRENCY).max(1)) {
            let chunk = chunk.to_vec();
            let api = api.clone();
            answers.spawn(async move {
                let mut answered = Vec::new();
                for id in chunk {
                    let answer = api.command_status(&id).await;
                    answered.push((id, answer));
                }
                answered
            });
        }
        let mut still_pending = Vec::new();
        let mut pending_ids = Vec::new();
        while let Some(joined) = answers.join_next().await {
            for (id, answer) in joined.expect("a status poller panicked") {
                match answer {
                    Ok(response)
                        if response.status == 200 && response.str("status") != Some("pending") =>
                    {
                        settled.insert(id, response.body);
                    }
                    Ok(response) => {
                        still_pending.push(format!("{id}: {response}"));
                        pending_ids.push(id);
                    }
                    Err(error) => {
                        still_pending.push(format!("{id}: {error:#}"));
                        pending_ids.push(id);
                    }
                }
            }
        }
        if still_pending.is_empty() {
            eprintln!(
                "{} commands settled after {:?}",
                ids.len(),
                started.elapsed()
            );
            return settled;
        }
        if deadline.passed() {
            pending_ids.truncate(5);
            panic!(
                "after {:?}, {} of {} acknowledged commands are still not settled, e.g. {:#?}\nwhat the broker \
                 holds for them:\n{}",
                deadline.budget(),
                still_pending.len(),
                ids.len(),
                &still_pending[..still_pending.len().min(5)],
                deployment.diagnose_commands(&pending_ids).await
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The invariants of every fault test, checked for every acknowledged
/// command against the replayed log:
/// - exactly one admitted record per command, none admitted twice anywhere;
/// - every placement admitted once as OrderPlaced at version 1, every
///   cancel of a placed order admitted as OrderCancelled at version 2;
/// - the gateway's outcome agrees with the log's settlement;
/// - every order the gateway serves equals the replayed projection, and the
///   projection equals the gate's fold.
pub(crate) async fn check_invariants(
    api: &Api,
    replay: &Replay,
    commands: &[Sent],
    outcomes: &HashMap<String, Value>,
) {
    let mut violations: Vec<String> = Vec::new();
    if !replay.undecodable.is_empty() {
        violations.push(format!(
            "undecodable records in orders.events: {:?}",
            replay.undecodable
        ));
    }
    for (command_id, positions) in replay.admitted_more_than_once() {
        violations.push(format!(
            "command {command_id} admitted more than once, at {positions:?}"
        ));
    }
    // order id -> (total, cancelled?)
    let mut expected_orders: BTreeMap<String, (i64, bool)> = BTreeMap::new();
    for command in commands {
        let (Some(command_id), Some(order_id)) = (&command.command_id, &command.order_id) else {
            violations.push(format!(
                "{} was never acknowledged: {:?}",
                command.idempotency_key, command.errors
            ));
            continue;
        };
        match command.kind {
            Kind::Place => {
                expected_orders
                    .entry(order_id.clone())
                    .or_insert((command.expected_total.unwrap_or_default(), false));
            }
            Kind::Cancel => {
                if let Some(entry) = expected_orders.get_mut(order_id) {
                    entry.1 = true;
                }
            }
        }
        let admissions = replay.admissions(command_id);
        if admissions.len() != 1 {
            violations.push(format!(
                "{} ({command_id}) has {} admitted records: {admissions:?}; all its records: {:?}",
                command.idempotency_key,
                admissions.len(),
                replay.records_of(command_id)
            ));
            continue;
        }
        let admitted = admissions[0];
        let Some(settled) = replay.settled(command_id) else {
            violations.push(format!("{command_id} admitted but not settled"));
            continue;
        };
        let (expected_record, expected_version) = match command.kind {
            Kind::Place => ("foldline.orders.OrderPlaced", 1),
            Kind::Cancel => ("foldline.orders.OrderCancelled", 2),
        };
        if admitted.record_name != expected_record
            || settled.status != "accepted"
            || settled.aggregate_version != expected_version
            || &settled.aggregate_id != order_id
        {
            violations.push(format!(
                "{} ({command_id}) settled as {} {} at version {} of {} (expected accepted {expected_record} at \
                 version {expected_version} of {order_id}); rejection {:?}",
                command.idempotency_key,
                settled.status,
                admitted.record_name,
                settled.aggregate_version,
                settled.aggregate_id,
                settled.rejection_code
            ));
        }
        // The gateway's answer against the log's settlement.
        match outcomes.get(command_id) {
            None => violations.push(format!("{command_id}: no gateway outcome")),
            Some(outcome) => {
                let status = outcome.get("status").and_then(Value::as_str);
                let version = outcome.get("order_version").and_then(Value::as_i64);
                let outcome_order = outcome.get("order_id").and_then(Value::as_str);
                let rejection = outcome
                    .get("rejection")
                    .and_then(|rejection| rejection.get("code"))
                    .and_then(Value::as_str);
                if status != Some(settled.status.as_str())
                    || version != Some(settled.aggregate_version)
                    || outcome_order != Some(settled.aggregate_id.as_str())
                    || rejection != settled.rejection_code.as_deref()
                {
                    violations.push(format!(
                        "{command_id}: the gateway says {outcome}, the log settled {} at version {} of {} (rejection \
                         {:?})",
                        settled.status, settled.aggregate_version, settled.aggregate_id, settled.rejection_code
                    ));
                }
            }
        }
        // The projection's outcome row against the gate.
        match replay.projected_outcome(command_id) {
            // The same rule on the same log: the very same outcome.
            Some(row) if row.domain == "orders" && row.outcome == *settled => {}
            other => violations.push(format!(
                "{command_id}: the projection's outcome row {other:?} disagrees with the gate's {settled:?}"
            )),
        }
    }
    for (order_id, (total, cancelled)) in &expected_orders {
        let placements = replay
            .records
            .iter()
            .filter(|record| {
                record.admitted
                    && record.aggregate_id == *order_id
                    && record.record_name == "foldline.orders.OrderPlaced"
            })
            .count();
        if placements != 1 {
            violations.push(format!(
                "order {order_id} has {placements} admitted OrderPlaced records"
            ));
        }
        let aggregates = replay.aggregates(order_id);
        if aggregates.len() != 1 {
            violations.push(format!(
                "order {order_id} exists on {} partitions: {:?}",
                aggregates.len(),
                aggregates
                    .iter()
                    .map(|(partition, _)| partition)
                    .collect::<Vec<_>>()
            ));
            continue;
        }
        let slot = &aggregates[0].1;
        let (expected_status, expected_version) = if *cancelled {
            ("cancelled", 2)
        } else {
            ("placed", 1)
        };
        let gate = slot
            .state
            .details()
            .map(|details| (details.status.as_str(), slot.version, details.total));
        if gate != Some((expected_status, expected_version, *total)) {
            violations.push(format!(
                "order {order_id}: the log folds to {gate:?}, expected ({expected_status}, {expected_version}, {total})"
            ));
        }
        let projected = replay.projected_order(order_id);
        let projected_view = projected.as_ref().and_then(|row| {
            row.state
                .details()
                .map(|details| (details.status.as_str(), row.version, details.total))
        });
        if projected_view != gate || projected.as_ref().map(|row| &row.state) != Some(&slot.state) {
            violations.push(format!(
                "order {order_id}: the replayed projection {projected_view:?} differs from the gate's fold {gate:?}"
            ));
        }
        match api.order(order_id).await {
            Ok(response) if response.status == 200 => {
                let served = (
                    response.str("status"),
                    response.body.get("version").and_then(Value::as_u64),
                    response.body.get("total").and_then(Value::as_i64),
                    response.str("id"),
                );
                let replayed = projected_view
                    .map(|(status, version, total)| (Some(status), Some(version), Some(total)));
                if replayed != Some((served.0, served.1, served.2))
                    || served.3 != Some(order_id.as_str())
                {
                    violations.push(format!(
                        "order {order_id}: the gateway serves {}, the replayed projection is {projected_view:?}",
                        response.body
                    ));
                }
            }
            Ok(response) => violations.push(format!("GET /v1/orders/{order_id}: {response}")),
            Err(error) => violations.push(format!("GET /v1/orders/{order_id}: {error:#}")),
        }
    }
    eprintln!(
        "checked {} commands and {} orders against {} records of orders.events ({} admitted)",
        commands.len(),
        expected_orders.len(),
        replay.records.len(),
        replay.admitted_count()
    );
    if !violations.is_empty() {
        let shown: Vec<&String> = violations.iter().take(25).collect();
        panic!(
            "{} invariant violations (first {}):\n{shown:#?}",
            violations.len(),
            shown.len()
        );
    }
}

/// What a `read_uncommitted` reader sees that a `read_committed` one is
/// never served: records of aborted (or still open) transactions.
#[derive(Debug)]
pub(crate) struct Aborted {
    pub(crate) events: Vec<(i32, i64)>,
    pub(crate) outcomes: Vec<(i32, i64)>,
}

/// Checks that no aborted record was folded by any reader: every outcome
/// the processor published (read `read_committed`, as the gateway's
/// follower reads them) names the very record the committed log settled its
/// command with, never an aborted one; the projection and the gateway agree
/// with the committed log already (`check_invariants`). Returns the aborted
/// records, which exist in the log only in the transactional mode.
pub(crate) async fn check_no_aborted_record_folded(
    deployment: &Deployment,
    replay: &Replay,
) -> Aborted {
    use foldline_testcontainers::{read_outcomes, read_topic_as, Isolation};
    use std::collections::BTreeSet;
    let positions = |records: &[foldline_testcontainers::RawRecord]| -> BTreeSet<(i32, i64)> {
        records
            .iter()
            .map(|record| (record.partition, record.offset))
            .collect()
    };
    let events = deployment.topic("orders.events");
    let outcomes = deployment.topic("orders.outcomes");
    let servers = deployment.bootstrap_servers();
    let mut aborted = Aborted {
        events: Vec::new(),
        outcomes: Vec::new(),
    };
    for (topic, found) in [
        (&events, &mut aborted.events),
        (&outcomes, &mut aborted.outcomes),
    ] {
        let committed = read_topic_as(servers, topic, Isolation::ReadCommitted)
            .await
            .expect("read committed");
        let everything = read_topic_as(servers, topic, Isolation::ReadUncommitted)
            .await
            .expect("read uncommitted");
        let committed = positions(&committed);
        let everything = positions(&everything);
        assert!(
            committed.is_subset(&everything),
            "{topic}: a committed record the uncommitted reader is not served: {:?}",
            committed
                .difference(&everything)
                .take(5)
                .collect::<Vec<_>>()
        );
        found.extend(everything.difference(&committed));
    }
    let aborted_events: BTreeSet<(i32, i64)> = aborted.events.iter().copied().collect();
    let published = read_outcomes(
        servers,
        deployment.prefix(),
        &deployment.registry_url(),
        Isolation::ReadCommitted,
    )
    .await
    .expect("read the committed outcomes");
    let mut violations = Vec::new();
    for published in &published {
        let outcome = &published.outcome;
        let position = (outcome.event_partition, outcome.event_offset);
        if aborted_events.contains(&position) {
            violations.push(format!(
                "outcome at {}@{} settles {} with the aborted event at {position:?}",
                published.partition, published.offset, outcome.command_id
            ));
        }
        match replay.settled(&outcome.command_id) {
            Some(settled) if settled == outcome => {}
            other => violations.push(format!(
                "outcome at {}@{} is {outcome:?}, the committed log settled {other:?}",
                published.partition, published.offset
            )),
        }
    }
    eprintln!(
        "{} committed outcomes checked; aborted records: {} in {events}, {} in {outcomes}",
        published.len(),
        aborted.events.len(),
        aborted.outcomes.len()
    );
    assert!(
        violations.is_empty(),
        "{} outcomes disagree with the committed log, e.g. {:#?}",
        violations.len(),
        &violations[..violations.len().min(10)]
    );
    aborted
}

/// Polls `counter` until it reaches `target`.
pub(crate) async fn wait_count(
    counter: &AtomicUsize,
    target: usize,
    deadline: Deadline,
    what: &str,
) {
    while counter.load(Ordering::SeqCst) < target {
        assert!(
            !deadline.passed(),
            "{what}: {} of {target} after {:?}",
            counter.load(Ordering::SeqCst),
            deadline.budget()
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Placements streaming at the gateway in waves of `WAVE`, one wave every
/// `WAVE_EVERY` (a steady arrival rate: a pace, not a wait for state), for
/// as long as a fault test needs commands flowing.
pub(crate) struct Stream {
    /// 202s so far.
    pub(crate) acknowledged: Arc<AtomicUsize>,
    streaming: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Sent>>,
}

impl Stream {
    pub(crate) const WAVE: usize = 8;
    pub(crate) const WAVE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

    /// Starts placing orders numbered from `first`, spread over `customers`.
    pub(crate) fn start(api: &Api, prefix: &str, customers: &[String], first: usize) -> Stream {
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let streaming = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (api, prefix, customers) = (api.clone(), prefix.to_owned(), customers.to_vec());
        let task = {
            let (acknowledged, streaming) = (Arc::clone(&acknowledged), Arc::clone(&streaming));
            tokio::spawn(async move {
                let mut pace = tokio::time::interval(Stream::WAVE_EVERY);
                let mut sent = Vec::new();
                for wave in 0.. {
                    pace.tick().await;
                    if !streaming.load(Ordering::SeqCst) {
                        break;
                    }
                    let from = first + wave * Stream::WAVE;
                    let places = (from..from + Stream::WAVE)
                        .map(|index| {
                            Sent::place(&prefix, index, &customers[index % customers.len()])
                        })
                        .collect();
                    sent.extend(send_all(&api, places, Arc::clone(&acknowledged)).await);
                }
                sent
            })
        };
        Stream {
            acknowledged,
            streaming,
            task,
        }
    }

    /// Waits until `more` placements beyond the current count are acknowledged.
    pub(crate) async fn wait_for_more(&self, more: usize, deadline: Deadline, what: &str) {
        let target = self.acknowledged.load(Ordering::SeqCst) + more;
        wait_count(&self.acknowledged, target, deadline, what).await;
    }

    /// Stops after the wave in flight; every command it sent, in order.
    pub(crate) async fn stop(self) -> Vec<Sent> {
        self.streaming.store(false, Ordering::SeqCst);
        self.task.await.expect("the stream task panicked")
    }
}

/// The end of every fault test: retries whatever got an error with its key
/// until acknowledged, waits until every acknowledged command settled, then
/// checks the invariants and that no aborted record was folded against the
/// replayed (committed) log.
pub(crate) async fn settle_and_check(
    deployment: &Deployment,
    api: &Api,
    commands: &mut [Sent],
    settle_within: Deadline,
) -> (Replay, Aborted) {
    let errored = commands
        .iter()
        .filter(|command| !command.errors.is_empty())
        .count();
    retry_until_acknowledged(api, commands, Deadline::secs(60)).await;
    eprintln!(
        "{} commands acknowledged ({errored} needed a retry)",
        commands.len()
    );
    let outcomes = wait_settled(deployment, api, commands, settle_within).await;
    let replay = deployment.replay().await.expect("replay orders.events");
    check_invariants(api, &replay, commands, &outcomes).await;
    let aborted = check_no_aborted_record_folded(deployment, &replay).await;
    (replay, aborted)
}

/// A command retried (same key) until the gateway answers it with 200 or
/// 201 (a gateway that restarts in between is retried too): its body.
pub(crate) async fn command_answered(api: &Api, path: &str, body: Value, key: &str) -> Value {
    poll_until(&format!("POST {path} ({key})"), Deadline::secs(120), || {
        let body = body.to_string();
        async move {
            let answer = api
                .command(path, body, &CommandOptions::keyed_waiting(key, 5))
                .await
                .map_err(|error| error.to_string())?;
            match answer.status {
                200 | 201 => Ok(Some(answer.body)),
                _ => Err(answer.to_string()),
            }
        }
    })
    .await
    .expect("the gateway takes the command")
}
