//! The nemesis run: contended commands and reads (orders: cancel / ship
//! races with the saga paying for them, then late cancels, ships and
//! client refunds racing on the paid ones, some above what is left;
//! users: two or three registrations of one address at once,
//! profile and address changes, deactivations and erasures racing on each
//! user; and customers deactivated or erased while an order of theirs is
//! in the saga, so the saga's customer check and notify's erased-customer
//! skip run under the faults), with the order saga on (orders ↔ payments
//! through the provider simulator, which fails some requests and loses
//! some answers after executing them) and analytics folding every topic,
//! while a seeded scheduler
//! kills (-9), stops (SIGTERM) and freezes (SIGSTOP/SIGCONT) each role, a
//! process of its own: the command processor (orders, users, payments),
//! the gateway and the projector (every projector, the saga's process
//! managers and timers, the payment provider worker, notify's relays and
//! delivery worker, analytics; the last two share a
//! CQL store on Apache Cassandra; a
//! gateway killed between reserving an `Idempotency-Key` and producing its
//! command is one of the windows its kills land in). It kills the
//! processor again while its counters show a restore under way, and while
//! it writes a snapshot (frozen between its `writing` and `wrote aggregate
//! snapshot` log lines, then killed), kills the broker (-9, data kept) and
//! restarts it once per run, re-produces raw command records into
//! `orders.commands`, `users.commands` and `payments.commands`, produces
//! poison records into `orders.commands`,
//! and appends a zombie's stale decision to `orders.events`.
//!
//! The services' counters (`GET /metrics`, scraped before every fault and
//! at the end, the last scrape of every incarnation summed) must show each
//! fault window hit: commands read again that were already settled,
//! restores from a snapshot, resyncs, stale decisions ignored by a
//! restore, poison parked, records the projectors applied and ignored,
//! keyed retries answered from the gateway's idempotency window, and in
//! the transactional mode transactions that failed. Every client operation goes
//! into a history file; once the saga is quiet (every order ended, every
//! payment answered), the independent checker
//! (`tests/oracle/check_history.py`, Python on stock clients, no code shared
//! with the system) folds the broker's topics itself and judges the history
//! and the live projection, and the saga's invariants against the
//! simulator's own ledger, notify's read models and notices row by row,
//! and analytics' figures against its own sums of the events. The run
//! passes only with zero anomalies.
//!
//! It runs in both `kafka.transactions` modes (`_idempotent`,
//! `_transactional`). In both the checker reads `read_committed`; in the
//! transactional mode the test also checks that no reader folded an aborted
//! record (`support::check_no_aborted_record_folded`) and that aborted
//! transactions were in the log at all (the window was hit).
//!
//! Bounded by default (4 rounds of the 14 fault kinds per mode plus one
//! broker kill, 57 faults, for CI); `FOLDLINE_NEMESIS_ROUNDS=N` sets the
//! rounds (each round is every fault kind once, in a random order),
//! `FOLDLINE_NEMESIS_SOAK=1` runs 8 rounds (113 faults per mode);
//! `FOLDLINE_NEMESIS_SEED` replays a schedule (the seed is printed).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foldline_contracts::envelope::{CommandMetadata, EventMetadata};
use foldline_contracts::orders::{OrderCancelled, ShipOrder};
use foldline_platform::codec::Codec;
use foldline_platform::headers::{command_headers, record_headers};
use foldline_testcontainers::replay::read_topic;
use foldline_testcontainers::{
    cassandra, place_body, poll_until, unique_keyspace, Api, Deadline, Deployment, FakeProvider,
    FoldlineProcess,
};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::scylla::{cql_env, migrate};
use crate::support::{check_no_aborted_record_folded, Mode, SNAPSHOT_OFTEN};

/// Workers running at once: the first `ORDER_WORKERS` race commands on
/// orders, the rest on users and their addresses.
const WORKERS: usize = 5;
const ORDER_WORKERS: usize = 3;
/// The gateway's `gateway.client_id`: the checker derives every keyed
/// command's id from it (UUIDv5 of the client and the key).
const GATEWAY_CLIENT_ID: &str = "nemesis";
/// A client gives up on a request after this long (a frozen gateway).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Registered users the orders are placed by: the first `STEADY_CUSTOMERS`
/// stay active; each of the others is deactivated or erased once, racing
/// the saga of the first order placed for them (later orders of theirs
/// meet the saga's customer check and notify's skip as they are).
const CUSTOMERS: usize = 9;
const STEADY_CUSTOMERS: usize = 5;
/// The simulator declines amounts above this: the largest order total
/// (3 × 1250 + 99) is declined (insufficient funds).
const DECLINE_ABOVE: i64 = 3_000;
/// The saga rejects an order its payment did not confirm within this.
const PAYMENT_DEADLINE_MS: &str = "15000";
/// How long one command is retried with its key before the worker moves on
/// (the final resolve pass retries it again).
const RETRY_BUDGET: Duration = Duration::from_secs(20);

/// splitmix64: a seeded schedule without a dependency.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

/// The history file: an `invoke` line when an operation starts, an `ok` /
/// `fail` / `unknown` line with the same index when it ends, `info` lines
/// for faults. Times are microseconds since the run started (one clock).
#[derive(Debug)]
struct History {
    out: Mutex<BufWriter<File>>,
    next: AtomicU64,
    started: Instant,
}

impl History {
    fn create(path: &Path) -> History {
        History {
            out: Mutex::new(BufWriter::new(
                File::create(path).expect("create the history file"),
            )),
            next: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    fn write(&self, mut entry: Value) {
        entry["time_us"] = json!(self.started.elapsed().as_micros() as u64);
        let mut out = self.out.lock().expect("history lock");
        serde_json::to_writer(&mut *out, &entry).expect("write the history");
        out.write_all(b"\n").expect("write the history");
    }

    fn invoke(&self, f: &str, process: usize, mut fields: Value) -> u64 {
        let index = self.next.fetch_add(1, Ordering::SeqCst);
        fields["type"] = json!("invoke");
        fields["index"] = json!(index);
        fields["f"] = json!(f);
        fields["process"] = json!(process);
        self.write(fields);
        index
    }

    fn complete(&self, index: u64, outcome: &str, mut fields: Value) {
        fields["type"] = json!(outcome);
        fields["index"] = json!(index);
        self.write(fields);
    }

    fn info(&self, mut fields: Value) {
        fields["type"] = json!("info");
        self.write(fields);
    }

    fn flush(&self) {
        self.out
            .lock()
            .expect("history lock")
            .flush()
            .expect("flush the history");
    }
}

/// What one run shares among its workers.
struct Workload {
    api: Api,
    history: History,
    codec: Codec,
    producer: FutureProducer,
    commands_topic: String,
    prefix: String,
    /// A lowercase tag of this run, in every address it registers.
    tag: String,
    customers: Vec<String>,
    /// The customers past `STEADY_CUSTOMERS` not yet deactivated or erased.
    churning: Mutex<Vec<String>>,
    /// Every keyed request sent, for the resolve pass.
    keys: Mutex<Vec<Request>>,
    /// Every command id produced raw (pay, pay-fail, ship).
    raw_ids: Mutex<Vec<String>>,
    /// Every order whose placement a client saw settled (201): its
    /// placement is in the log, so a decision against version 0 is stale.
    placed: Mutex<Vec<String>>,
    /// Every order an answer named (201 or 202), for the saga's quiescence.
    orders: Mutex<Vec<String>>,
}

/// One HTTP command request: its history kind (`f`), Idempotency-Key,
/// route, body, whether it asks `Prefer: wait`, and history fields.
#[derive(Clone, Debug)]
struct Request {
    f: &'static str,
    method: Method,
    key: String,
    path: String,
    body: String,
    wait: bool,
    extra: Value,
}

/// A command produced straight to `orders.commands`.
struct Produced<'a, T> {
    f: &'static str,
    record_name: &'static str,
    metadata: CommandMetadata,
    order_id: &'a str,
    record: T,
    extra: Value,
    copies: usize,
}

/// An HTTP command's answer, as far as retrying goes.
enum Answer {
    /// 201/200 with the order, 202 pending, or a 4xx: the gateway answered.
    Answered { status: u16, body: Value },
    /// A transport error or a 5xx: it may or may not have happened.
    Unknown,
}

impl Workload {
    async fn http_command(&self, process: usize, request: &Request) -> Answer {
        let mut fields = json!({
            "key": request.key,
            "path": request.path,
            "wait": request.wait,
            "request": serde_json::from_str::<Value>(&request.body).unwrap_or(Value::Null),
            "raw": request.body,
        });
        if let (Value::Object(fields), Value::Object(extra)) = (&mut fields, request.extra.clone())
        {
            fields.extend(extra);
        }
        let index = self.history.invoke(request.f, process, fields);
        let mut headers = vec![("idempotency-key", request.key.clone())];
        if request.wait {
            headers.push(("prefer", "wait=3".to_owned()));
        }
        match self
            .api
            .send(
                request.method.clone(),
                &request.path,
                Some(request.body.clone()),
                &headers,
            )
            .await
        {
            Ok(response) if response.status < 500 => {
                let command_id = response
                    .header("foldline-command-id")
                    .map(str::to_owned)
                    .or_else(|| response.str("command_id").map(str::to_owned));
                self.history.complete(
                    index,
                    "ok",
                    json!({"status": response.status, "body": response.body, "command_id": command_id}),
                );
                Answer::Answered {
                    status: response.status,
                    body: response.body,
                }
            }
            Ok(response) => {
                self.history.complete(
                    index,
                    "unknown",
                    json!({"status": response.status, "body": response.body}),
                );
                Answer::Unknown
            }
            Err(error) => {
                self.history
                    .complete(index, "unknown", json!({"error": format!("{error:#}")}));
                Answer::Unknown
            }
        }
    }

    /// Sends an HTTP command, retrying with the same key while the answer
    /// is unknown, within the retry budget.
    async fn http_command_retried(&self, process: usize, request: Request) -> Option<(u16, Value)> {
        self.keys.lock().expect("keys lock").push(request.clone());
        let deadline = Deadline::after(RETRY_BUDGET);
        loop {
            match self.http_command(process, &request).await {
                Answer::Answered { status, body } => return Some((status, body)),
                Answer::Unknown if deadline.passed() => return None,
                // Backoff between client retries, not a wait for state.
                Answer::Unknown => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    fn metadata(&self) -> CommandMetadata {
        let command_id = uuid::Uuid::new_v4().to_string();
        CommandMetadata {
            correlation_id: command_id.clone(),
            command_id,
            causation_id: None,
            issued_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_millis() as i64)
                .unwrap_or_default(),
            issued_by: "nemesis".to_owned(),
            traceparent: None,
        }
    }

    /// Produces a command record straight to `orders.commands`, as another
    /// domain's process manager would (the orders API has no pay or ship
    /// route); `copies` > 1 re-sends the very same bytes (a client retry).
    async fn produce_command<T: serde::Serialize>(&self, process: usize, command: Produced<'_, T>) {
        let Produced {
            f,
            record_name,
            metadata,
            order_id,
            record,
            extra,
            copies,
        } = command;
        let metadata = &metadata;
        self.raw_ids
            .lock()
            .expect("raw ids lock")
            .push(metadata.command_id.clone());
        let payload = loop {
            match self
                .codec
                .encode(&self.commands_topic, record_name, &record)
                .await
            {
                Ok(payload) => break payload,
                Err(error) if error.is_transient() => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(error) => panic!("cannot encode {record_name}: {error}"),
            }
        };
        for _ in 0..copies {
            let mut fields = json!({"command_id": metadata.command_id, "order_id": order_id, "record": record_name});
            if let (Value::Object(fields), Value::Object(extra)) = (&mut fields, extra.clone()) {
                fields.extend(extra);
            }
            let index = self.history.invoke(f, process, fields);
            let sent = self
                .producer
                .send(
                    FutureRecord::to(&self.commands_topic)
                        .key(order_id)
                        .payload(&payload)
                        .headers(command_headers(metadata, record_name)),
                    Duration::from_secs(10),
                )
                .await;
            match sent {
                Ok(delivery) => self.history.complete(
                    index,
                    "ok",
                    json!({"partition": delivery.partition, "offset": delivery.offset}),
                ),
                Err((error, _)) => {
                    self.history
                        .complete(index, "unknown", json!({"error": error.to_string()}))
                }
            }
        }
    }

    /// A GET recorded as operation `f` with `fields`; the response when
    /// one came.
    async fn read(
        &self,
        process: usize,
        f: &str,
        fields: Value,
        path: &str,
    ) -> Option<foldline_testcontainers::ApiResponse> {
        let index = self.history.invoke(f, process, fields);
        match self.api.get(path).await {
            Ok(response) => {
                self.history.complete(
                    index,
                    "ok",
                    json!({"status": response.status, "body": response.body}),
                );
                Some(response)
            }
            Err(error) => {
                self.history
                    .complete(index, "unknown", json!({"error": format!("{error:#}")}));
                None
            }
        }
    }

    async fn read_order(&self, process: usize, order_id: &str) {
        let path = format!("/v1/orders/{order_id}");
        self.read(process, "read", json!({"order_id": order_id}), &path)
            .await;
    }

    async fn list_customer(&self, process: usize, customer_id: &str) {
        let path = format!("/v1/customers/{customer_id}/orders?limit=100");
        self.read(process, "list", json!({"customer_id": customer_id}), &path)
            .await;
    }

    /// One order's life: placed, then cancel / pay / payment failure / ship
    /// race on it, with reads in between.
    async fn order_life(&self, process: usize, index: usize, seed: u64) {
        let mut rng = Rng(seed);
        let customer = &self.customers[rng.below(self.customers.len() as u64) as usize];
        let quantity = 1 + rng.below(3) as i64;
        let body = place_body(
            customer,
            "EUR",
            &[("SKU-1", quantity, 1250), ("SKU-2", 1, 99)],
        )
        .to_string();
        let total = quantity * 1250 + 99;
        let key = format!("{}place-{index}", self.prefix);
        let placed = self
            .http_command_retried(
                process,
                Request {
                    f: "place",
                    method: Method::POST,
                    key,
                    path: "/v1/orders".to_owned(),
                    body,
                    wait: rng.chance(50),
                    extra: json!({"customer_id": customer}),
                },
            )
            .await;
        let placement_settled = matches!(placed, Some((201, _)));
        let order_id = match placed {
            Some((201, body)) => body.get("id").and_then(Value::as_str).map(str::to_owned),
            Some((202, body)) => body
                .get("order_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            _ => None,
        };
        let Some(order_id) = order_id else {
            return;
        };
        self.orders
            .lock()
            .expect("orders lock")
            .push(order_id.clone());
        if placement_settled {
            self.placed
                .lock()
                .expect("placed lock")
                .push(order_id.clone());
        }
        let order = order_id.as_str();
        let cancel = async {
            if rng_for(seed, 1).chance(45) {
                let request = Request {
                    f: "cancel",
                    method: Method::POST,
                    key: format!("{}cancel-{order}", self.prefix),
                    path: format!("/v1/orders/{order}/cancel"),
                    body: json!({"reason": "raced"}).to_string(),
                    wait: rng_for(seed, 2).chance(50),
                    extra: json!({"order_id": order}),
                };
                self.http_command_retried(process, request).await;
            }
        };
        let ship = async {
            if rng_for(seed, 4).chance(40) {
                self.ship(process, order).await;
            }
        };
        let read = async {
            self.read_order(process, order).await;
            if rng_for(seed, 5).chance(30) {
                self.list_customer(process, customer).await;
            }
        };
        // A churning customer's first order: the customer is deactivated or
        // erased while the order is in the saga, after a random think time,
        // so notices are decided on either side of it.
        let churn = async {
            let taken = {
                let mut churning = self.churning.lock().expect("churning lock");
                let at = churning.iter().position(|candidate| candidate == customer);
                at.map(|at| churning.swap_remove(at))
            };
            if let Some(customer) = taken {
                let mut rng = rng_for(seed, 40);
                // Think time of the client, not a wait for state.
                tokio::time::sleep(rng.millis(0, 2500)).await;
                self.churn_customer(process, &customer, rng.chance(50))
                    .await;
            }
        };
        tokio::join!(cancel, ship, read, churn);
        // The saga pays for the order (authorize, capture, confirm through
        // the provider simulator) or rejects it; the client polls it (each
        // poll a read of the history) until it has ended, then races a
        // late ship, a late cancel and refunds of its payment.
        let deadline = Deadline::secs(30);
        let mut ended = None;
        while !deadline.passed() {
            let path = format!("/v1/orders/{order}");
            let read = self
                .read(process, "read", json!({"order_id": order}), &path)
                .await;
            if let Some(response) = read.filter(|response| response.status == 200) {
                if response.str("status") != Some("placed") {
                    ended = Some(response);
                    break;
                }
            }
            tokio::time::sleep(foldline_testcontainers::wait::POLL_INTERVAL).await;
        }
        let paid = ended.as_ref().and_then(|response| {
            matches!(response.str("status"), Some("confirmed" | "shipped"))
                .then(|| response.str("payment_id").map(str::to_owned))
                .flatten()
        });
        let ship = async {
            if rng.chance(60) {
                self.ship(process, order).await;
            }
        };
        // Sometimes the customer is refunded in part first and cancels
        // after (the refund settled): what the cancellation gives back
        // must then be what is left, not the whole total again.
        let refund_first = paid.is_some() && rng_for(seed, 9).chance(30);
        let cancels_late = refund_first || (paid.is_some() && rng_for(seed, 6).chance(40));
        let late_cancel = async {
            if cancels_late {
                let request = Request {
                    f: "cancel",
                    method: Method::POST,
                    key: format!("{}late-cancel-{order}", self.prefix),
                    path: format!("/v1/orders/{order}/cancel"),
                    body: json!({"reason": "changed my mind"}).to_string(),
                    wait: rng_for(seed, 7).chance(50),
                    extra: json!({"order_id": order}),
                };
                self.http_command_retried(process, request).await;
            }
        };
        let refunds = async {
            let Some(payment) = paid.as_deref() else {
                return;
            };
            let mut rng = rng_for(seed, 8);
            let count = match rng.below(10) {
                0..=3 => 0,
                4..=7 => 1,
                _ => 2,
            };
            let refund = |n: u64| {
                let mut rng = rng_for(seed, 30 + n);
                // Partial, the whole total, or more than was captured.
                let amount = match rng.below(10) {
                    0..=4 => 100 + rng.below(900) as i64,
                    5..=7 => total,
                    _ => total + 1,
                };
                Request {
                    f: "refund",
                    method: Method::POST,
                    key: format!("{}refund-{order}-{n}", self.prefix),
                    path: format!("/v1/payments/{payment}/refunds"),
                    body: json!({"amount": amount, "reason": "the customer asked"}).to_string(),
                    wait: rng.chance(50),
                    extra: json!({"order_id": order, "payment_id": payment, "amount": amount}),
                }
            };
            // Two refunds of one payment at once race for what is left.
            let second = async {
                if count == 2 {
                    self.http_command_retried(process, refund(1)).await;
                }
            };
            let first = async {
                if count >= 1 {
                    self.http_command_retried(process, refund(0)).await;
                }
            };
            tokio::join!(first, second);
        };
        if refund_first {
            let partial = Request {
                f: "refund",
                method: Method::POST,
                key: format!("{}refund-{order}-first", self.prefix),
                path: format!(
                    "/v1/payments/{}/refunds",
                    paid.as_deref().unwrap_or_default()
                ),
                body: json!({"amount": 250, "reason": "a damaged item"}).to_string(),
                wait: true,
                extra: json!({"order_id": order, "payment_id": paid, "amount": 250}),
            };
            self.http_command_retried(process, partial).await;
            tokio::join!(ship, refunds);
            late_cancel.await;
        } else {
            tokio::join!(ship, late_cancel, refunds);
        }
        self.read_order(process, order).await;
        if let Some(payment) = paid.as_deref() {
            let path = format!("/v1/payments/{payment}");
            self.read(
                process,
                "read-payment",
                json!({"payment_id": payment}),
                &path,
            )
            .await;
        }
    }

    /// Deactivates (`erase` false) or erases a customer with their orders
    /// in flight.
    async fn churn_customer(&self, process: usize, customer: &str, erase: bool) {
        let request = match erase {
            true => Request {
                f: "erase",
                method: Method::DELETE,
                key: format!("{}erase-customer-{customer}", self.prefix),
                path: format!("/v1/users/{customer}/personal-data"),
                body: json!({"requested_by": "dpo@foldline.example", "reason": "art. 17"})
                    .to_string(),
                wait: true,
                extra: json!({ "user_id": customer }),
            },
            false => Request {
                f: "deactivate",
                method: Method::POST,
                key: format!("{}deactivate-customer-{customer}", self.prefix),
                path: format!("/v1/users/{customer}/deactivate"),
                body: json!({"reason": "closed the account"}).to_string(),
                wait: true,
                extra: json!({ "user_id": customer }),
            },
        };
        self.http_command_retried(process, request).await;
        self.read_user(process, customer).await;
    }

    async fn ship(&self, process: usize, order: &str) {
        let metadata = self.metadata();
        let record = ShipOrder {
            metadata: metadata.clone(),
            order_id: order.to_owned(),
        };
        let command = Produced {
            f: "ship",
            record_name: "foldline.orders.ShipOrder",
            metadata,
            order_id: order,
            record,
            extra: json!({}),
            copies: 1,
        };
        self.produce_command(process, command).await;
    }
}

/// The user ids a registration's answer names: the user of a 201, the
/// `user_id` of a 202 (a loser's 409 names none).
fn registered_user(answer: &Option<(u16, Value)>) -> Option<String> {
    match answer {
        Some((201, body)) => body.get("id").and_then(Value::as_str).map(str::to_owned),
        Some((202, body)) => body
            .get("user_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

impl Workload {
    /// One address's life: two or three clients register it at once
    /// (exactly one may win), then profile changes, an address change, a
    /// deactivation and an erasure race on every user the answers named,
    /// with reads by id and by address; sometimes the address is
    /// registered again afterwards (free again only once its holder was
    /// erased or moved and the claim released).
    async fn user_life(&self, process: usize, index: usize, seed: u64) {
        let mut rng = Rng(seed);
        let email = format!("user{index}.{}@example.org", self.tag);
        let racers = 2 + rng.below(2) as usize;
        let register = |racer: usize, generation: usize| {
            let mut rng = rng_for(seed, 10 + racer as u64 + 10 * generation as u64);
            let mut body =
                json!({"email": email, "name": format!("Racer {index}-{generation}-{racer}")});
            if rng.chance(50) {
                body["phone"] = json!(format!("+4420794{:05}", rng.below(100_000)));
            }
            Request {
                f: "register",
                method: Method::POST,
                key: format!("{}register-{index}-{generation}-{racer}", self.prefix),
                path: "/v1/users".to_owned(),
                body: body.to_string(),
                wait: rng.chance(60),
                extra: json!({"email": email}),
            }
        };
        let third = async {
            match racers {
                3 => self.http_command_retried(process, register(2, 0)).await,
                _ => None,
            }
        };
        let (first, second, third) = tokio::join!(
            self.http_command_retried(process, register(0, 0)),
            self.http_command_retried(process, register(1, 0)),
            third
        );
        let mut users: Vec<String> = [first, second, third]
            .iter()
            .filter_map(registered_user)
            .collect();
        users.sort();
        users.dedup();
        self.find_user(process, &email).await;
        let lives = users
            .iter()
            .enumerate()
            .map(|(n, user)| self.user_changes(process, index, user, seed ^ (n as u64 + 1)));
        let mut lives: Vec<_> = lives.collect();
        // At most three racers: join them without a JoinSet ('static).
        let (a, b, c) = (lives.pop(), lives.pop(), lives.pop());
        tokio::join!(
            async {
                if let Some(life) = a {
                    life.await
                }
            },
            async {
                if let Some(life) = b {
                    life.await
                }
            },
            async {
                if let Some(life) = c {
                    life.await
                }
            }
        );
        self.find_user(process, &email).await;
        if rng.chance(35) {
            self.http_command_retried(process, register(0, 1)).await;
            self.find_user(process, &email).await;
        }
    }

    /// Profile changes, an address change, a deactivation and an erasure
    /// racing on one user (or on a loser's id, which is no user).
    async fn user_changes(&self, process: usize, index: usize, user: &str, seed: u64) {
        let request = |f: &'static str, method: Method, path: String, body: Value, n: u64| {
            let mut rng = rng_for(seed, 20 + n);
            Request {
                f,
                method,
                key: format!("{}{f}-{user}-{n}", self.prefix),
                path,
                body: body.to_string(),
                wait: rng.chance(50),
                extra: json!({"user_id": user}),
            }
        };
        let profile = async {
            let mut rng = rng_for(seed, 1);
            for n in 0..rng.below(3) {
                let body = match rng.below(3) {
                    0 => json!({"name": format!("Renamed {index}-{n}")}),
                    1 => json!({"phone": format!("+4420795{:05}", rng.below(100_000))}),
                    _ => json!({"phone": null}),
                };
                let path = format!("/v1/users/{user}");
                self.http_command_retried(
                    process,
                    request("change-profile", Method::PATCH, path, body, n),
                )
                .await;
            }
        };
        let moved = async {
            if rng_for(seed, 2).chance(20) {
                let email = format!("user{index}.moved.{}@example.org", self.tag);
                let path = format!("/v1/users/{user}");
                let body = json!({ "email": email });
                let mut change = request("change-email", Method::PATCH, path, body, 10);
                change.extra["email"] = json!(email);
                self.http_command_retried(process, change).await;
            }
        };
        let deactivate = async {
            if rng_for(seed, 3).chance(30) {
                let path = format!("/v1/users/{user}/deactivate");
                let body = json!({"reason": "raced"});
                self.http_command_retried(
                    process,
                    request("deactivate", Method::POST, path, body, 11),
                )
                .await;
            }
        };
        let erase = async {
            if rng_for(seed, 4).chance(40) {
                let path = format!("/v1/users/{user}/personal-data");
                let body = json!({"requested_by": "dpo@foldline.example", "reason": "art. 17"});
                self.http_command_retried(
                    process,
                    request("erase", Method::DELETE, path, body, 12),
                )
                .await;
            }
        };
        let read = async {
            self.read_user(process, user).await;
        };
        tokio::join!(profile, moved, deactivate, erase, read);
        self.read_user(process, user).await;
    }

    async fn read_user(&self, process: usize, user_id: &str) {
        let path = format!("/v1/users/{user_id}");
        self.read(process, "read-user", json!({"user_id": user_id}), &path)
            .await;
    }

    async fn find_user(&self, process: usize, email: &str) {
        let path = format!("/v1/users?email={email}");
        self.read(process, "find-user", json!({"email": email}), &path)
            .await;
    }
}

fn rng_for(seed: u64, stream: u64) -> Rng {
    let mut rng = Rng(seed ^ stream.wrapping_mul(0x2545_f491_4f6c_dd1d));
    rng.next();
    rng
}

/// A role's counters over the run: a killed incarnation's counters die
/// with it, so the run's count is the last scrape of every incarnation,
/// summed.
#[derive(Debug, Default)]
struct Counters {
    retired: BTreeMap<String, u64>,
    current: BTreeMap<String, u64>,
}

impl Counters {
    fn retire(&mut self) {
        for (series, value) in std::mem::take(&mut self.current) {
            *self.retired.entry(series).or_default() += value;
        }
    }

    fn total(&self) -> BTreeMap<String, u64> {
        let mut total = self.retired.clone();
        for (series, value) in &self.current {
            *total.entry(series.clone()).or_default() += value;
        }
        total
    }
}

/// One scrape of `GET /metrics`: series (without the `topic` label, which
/// names this test's prefixed topics) to value; `None` when it does not
/// answer.
async fn scrape(client: &reqwest::Client, url: &str) -> Option<BTreeMap<String, u64>> {
    let response = client.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let text = response.text().await.ok()?;
    Some(parse_prometheus(&text))
}

fn parse_prometheus(text: &str) -> BTreeMap<String, u64> {
    let mut series = BTreeMap::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let key = match name.split_once('{') {
            Some((metric, labels)) => {
                let kept: Vec<&str> = labels
                    .trim_end_matches('}')
                    .split(',')
                    .filter(|label| !label.starts_with("topic="))
                    .collect();
                if kept.is_empty() {
                    metric.to_owned()
                } else {
                    format!("{metric}{{{}}}", kept.join(","))
                }
            }
            None => name.to_owned(),
        };
        *series.entry(key).or_default() += value as u64;
    }
    series
}

/// The sum of every series of `metric` whose labels include each of `labels`.
fn counted(totals: &BTreeMap<String, u64>, metric: &str, labels: &[&str]) -> u64 {
    totals
        .iter()
        .filter(|(series, _)| {
            series.split('{').next() == Some(metric)
                && labels.iter().all(|label| series.contains(label))
        })
        .map(|(_, value)| value)
        .sum()
}

/// A faulted role: one process at a time, relaunched after each kill.
struct Role {
    name: &'static str,
    roles: &'static [&'static str],
    store: &'static str,
    /// Whether a relaunch waits for the gateway's /readyz.
    serves_http: bool,
    /// Extra environment of every incarnation.
    env: Vec<(String, String)>,
    /// Where this role's counters are scraped (`GET /metrics`).
    metrics_url: String,
    counters: Counters,
    process: FoldlineProcess,
    logs: Vec<PathBuf>,
}

impl Role {
    /// A role serving HTTP (the gateway's listener serves `/metrics`).
    async fn launch_http(
        deployment: &Deployment,
        name: &'static str,
        roles: &'static [&'static str],
        store: &'static str,
        env: Vec<(String, String)>,
    ) -> Role {
        let metrics_url = format!("{}/metrics", deployment.gateway_url());
        Role::launch(deployment, name, roles, store, true, env, metrics_url).await
    }

    /// A headless role snapshotting often, with a `metrics.listen` of its own.
    async fn launch_headless(
        deployment: &Deployment,
        name: &'static str,
        roles: &'static [&'static str],
        store: &'static str,
        mut env: Vec<(String, String)>,
    ) -> Role {
        let port = foldline_testcontainers::free_port().expect("a free port");
        env.extend(
            SNAPSHOT_OFTEN
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
        );
        env.push((
            "FOLDLINE__METRICS__LISTEN".to_owned(),
            format!("127.0.0.1:{port}"),
        ));
        let metrics_url = format!("http://127.0.0.1:{port}/metrics");
        Role::launch(deployment, name, roles, store, false, env, metrics_url).await
    }

    async fn launch(
        deployment: &Deployment,
        name: &'static str,
        roles: &'static [&'static str],
        store: &'static str,
        serves_http: bool,
        env: Vec<(String, String)>,
        metrics_url: String,
    ) -> Role {
        let process = Role::spawn(deployment, name, roles, store, serves_http, &env).await;
        Role {
            name,
            roles,
            store,
            serves_http,
            env,
            metrics_url,
            counters: Counters::default(),
            logs: vec![process.log_path().to_owned()],
            process,
        }
    }

    async fn spawn(
        deployment: &Deployment,
        name: &str,
        roles: &[&str],
        store: &str,
        serves_http: bool,
        env: &[(String, String)],
    ) -> FoldlineProcess {
        let env: Vec<(&str, &str)> = env
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        if serves_http {
            deployment
                .spawn_ready_with(name, roles, store, &env, Deadline::secs(90))
                .await
                .unwrap_or_else(|error| panic!("relaunch {name}: {error:#}"))
        } else {
            deployment
                .spawn_with(name, roles, store, &env)
                .unwrap_or_else(|error| panic!("relaunch {name}: {error:#}"))
        }
    }

    /// A new incarnation: the old one's last scrape is all it counted.
    async fn relaunch(&mut self, deployment: &Deployment) {
        self.counters.retire();
        self.process = Role::spawn(
            deployment,
            self.name,
            self.roles,
            self.store,
            self.serves_http,
            &self.env,
        )
        .await;
        self.logs.push(self.process.log_path().to_owned());
    }

    /// Scrapes the running incarnation's counters (kept when it does not
    /// answer: a frozen or dying process keeps its last scrape).
    async fn scrape(&mut self, client: &reqwest::Client) {
        if let Some(current) = scrape(client, &self.metrics_url).await {
            self.counters.current = current;
        }
    }

    /// The lines of every generation's log that contain `needle`.
    fn log_lines(&self, needle: &str) -> Vec<String> {
        self.logs
            .iter()
            .filter_map(|log| std::fs::read_to_string(log).ok())
            .flat_map(|text| {
                foldline_testcontainers::process::strip_ansi(&text)
                    .lines()
                    .filter(|line| line.contains(needle))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill(usize),
    Terminate(usize),
    Pause(usize),
    /// kill -9 of the processor, relaunched, then kill -9 again while its
    /// counters say a partition restore is under way.
    KillRestoring,
    Duplicate,
    StaleWrite,
    /// A record that is no command at all, for the dead-letter topic.
    Poison,
    /// kill -9 of the processor frozen while it writes a snapshot (its log
    /// shows the write begun and not finished).
    KillSnapshotting,
    /// kill -9 of the broker (its data stays), restarted after a while:
    /// every role rides the outage out without a restart.
    Broker,
}

/// The role indices of the nemesis's roles: each its own process.
const PROCESSOR: usize = 0;
const GATEWAY: usize = 1;
const PROJECTOR: usize = 2;

const FAULT_KINDS: [Fault; 14] = [
    Fault::StaleWrite,
    Fault::Poison,
    Fault::KillRestoring,
    Fault::KillSnapshotting,
    Fault::Kill(PROCESSOR),
    Fault::Kill(GATEWAY),
    Fault::Kill(PROJECTOR),
    Fault::Terminate(PROCESSOR),
    Fault::Terminate(GATEWAY),
    Fault::Terminate(PROJECTOR),
    Fault::Pause(PROCESSOR),
    Fault::Pause(GATEWAY),
    Fault::Pause(PROJECTOR),
    Fault::Duplicate,
];

/// What the nemesis did, and what it saw go wrong.
#[derive(Debug, Default)]
struct Faults {
    by_kind: BTreeMap<String, usize>,
    /// SIGTERM exits that were not clean, and processes found dead.
    unexpected: Vec<String>,
    /// Kills that landed while the processor's counters showed a restore
    /// under way (the rest found every restore done already).
    restoring_hit: usize,
    /// Stale writes the processor was seen to resynchronise on or ignore.
    stale_seen: usize,
    /// Kills that landed while the processor was writing a snapshot.
    snapshotting_hit: usize,
}

async fn nemesis(
    deployment: &Deployment,
    roles: &mut [Role; 3],
    workload: &Workload,
    rounds: usize,
    seed: u64,
) -> Faults {
    let mut rng = Rng(seed);
    let mut faults = Faults::default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("a metrics client");
    // The broker's restart is slow (10-30 s): once per run, in the middle.
    let broker_round = rounds / 2;
    for round in 0..rounds {
        let mut kinds = FAULT_KINDS.to_vec();
        if round == broker_round {
            kinds.push(Fault::Broker);
        }
        for i in (1..kinds.len()).rev() {
            kinds.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for fault in kinds {
            // The scheduler's random gap between faults.
            tokio::time::sleep(rng.millis(150, 900)).await;
            for role in roles.iter_mut() {
                role.scrape(&client).await;
                if !role.process.is_running() {
                    let status = role.process.exit_status();
                    faults.unexpected.push(format!(
                        "{} had exited ({status:?}) before round {round}",
                        role.name
                    ));
                    eprintln!("{}", role.process.report(40));
                    role.relaunch(deployment).await;
                }
            }
            let label = match fault {
                Fault::Kill(target) | Fault::Terminate(target) => {
                    let role = &mut roles[target];
                    let label = if matches!(fault, Fault::Kill(_)) {
                        role.process.kill9().expect("kill -9");
                        format!("kill9 {}", role.name)
                    } else {
                        let status: anyhow::Result<ExitStatus> =
                            role.process.terminate(Deadline::secs(40)).await;
                        match status {
                            Ok(status) if status.success() => {}
                            other => faults.unexpected.push(format!(
                                "{} on SIGTERM: {other:?}\n{}",
                                role.name,
                                role.process.report(30)
                            )),
                        }
                        format!("sigterm {}", role.name)
                    };
                    workload.history.info(json!({ "fault": label }));
                    role.relaunch(deployment).await;
                    label
                }
                Fault::Pause(target) => {
                    let role = &mut roles[target];
                    let frozen = rng.millis(300, 2500);
                    role.process.pause().expect("SIGSTOP");
                    workload.history.info(json!({"fault": format!("pause {}", role.name), "ms": frozen.as_millis() as u64}));
                    tokio::time::sleep(frozen).await;
                    role.process.resume().expect("SIGCONT");
                    format!("pause {}", role.name)
                }
                Fault::KillRestoring => {
                    let role = &mut roles[PROCESSOR];
                    role.process.kill9().expect("kill -9");
                    role.relaunch(deployment).await;
                    let restoring = poll_until("a restore under way", Deadline::secs(20), || {
                        let client = client.clone();
                        let url = role.metrics_url.clone();
                        async move {
                            let Some(now) = scrape(&client, &url).await else {
                                return Err("no metrics yet".to_owned());
                            };
                            let begun =
                                counted(&now, "foldline_processor_restores_started_total", &[]);
                            let done = counted(&now, "foldline_processor_restores_total", &[]);
                            Ok((begun > done).then_some(now))
                        }
                    })
                    .await;
                    role.process.kill9().expect("kill -9");
                    match restoring {
                        Ok(now) => {
                            role.counters.current = now;
                            faults.restoring_hit += 1;
                        }
                        Err(error) => eprintln!("nemesis: kill9 while restoring: {error:#}"),
                    }
                    workload
                        .history
                        .info(json!({ "fault": "kill9 processor restoring" }));
                    role.relaunch(deployment).await;
                    "kill9 processor restoring".to_owned()
                }
                Fault::KillSnapshotting => {
                    let role = &mut roles[PROCESSOR];
                    match kill_while_snapshotting(role, &client).await {
                        Ok(snapshot) => {
                            faults.snapshotting_hit += 1;
                            workload.history.info(json!({"fault": "kill9 processor snapshotting", "snapshot": snapshot}));
                        }
                        Err(error) => {
                            eprintln!("nemesis: kill9 while snapshotting: {error:#}");
                            workload.history.info(
                                json!({"fault": "kill9 processor snapshotting", "snapshot": null}),
                            );
                        }
                    }
                    role.relaunch(deployment).await;
                    "kill9 processor snapshotting".to_owned()
                }
                Fault::StaleWrite => {
                    let role = &mut roles[PROCESSOR];
                    // Written while the processor holds its partitions, so
                    // its next round there is the one to find it (bounded:
                    // after the wait it is written anyway).
                    let settled = poll_until(
                        "a processor with no restore under way",
                        Deadline::secs(10),
                        || {
                            let client = client.clone();
                            let url = role.metrics_url.clone();
                            async move {
                                let Some(now) = scrape(&client, &url).await else {
                                    return Err("no metrics".to_owned());
                                };
                                let begun =
                                    counted(&now, "foldline_processor_restores_started_total", &[]);
                                let done = counted(&now, "foldline_processor_restores_total", &[]);
                                Ok((done > 0 && begun == done).then_some(now))
                            }
                        },
                    )
                    .await;
                    if let Ok(now) = settled {
                        role.counters.current = now;
                    }
                    let before = role.counters.current.clone();
                    inject_stale_decision(deployment, workload, &mut rng).await;
                    // The processor's next round on that partition lands one
                    // later than it assumed: it resynchronises, and its
                    // restore's gate ignores the stale decision (a restore
                    // under way folds it without a resync). Bounded: with no
                    // command on that partition meanwhile, the next restart
                    // is what reads it.
                    let seen = poll_until("the stale write seen", Deadline::secs(5), || {
                        let client = client.clone();
                        let url = role.metrics_url.clone();
                        let before = &before;
                        async move {
                            let Some(now) = scrape(&client, &url).await else {
                                return Err("no metrics".to_owned());
                            };
                            let grew = |metric: &str, labels: &[&str]| {
                                counted(&now, metric, labels) > counted(before, metric, labels)
                            };
                            let seen = grew("foldline_processor_resyncs_total", &[])
                                || grew(
                                    "foldline_gate_ignored_total",
                                    &[r#"verdict="wrong_version""#],
                                );
                            Ok(seen.then_some(now))
                        }
                    })
                    .await;
                    match seen {
                        Ok(now) => {
                            role.counters.current = now;
                            faults.stale_seen += 1;
                        }
                        Err(error) => eprintln!("nemesis: stale write: {error:#}"),
                    }
                    "stale write".to_owned()
                }
                Fault::Poison => {
                    inject_poison(workload, &mut rng).await;
                    "poison".to_owned()
                }
                Fault::Broker => {
                    let broker = deployment.broker();
                    let down = rng.millis(500, 3000);
                    tokio::task::spawn_blocking(move || broker.kill9())
                        .await
                        .expect("the broker kill task")
                        .expect("kill -9 the broker");
                    workload
                        .history
                        .info(json!({"fault": "kill9 broker", "ms": down.as_millis() as u64}));
                    tokio::time::sleep(down).await;
                    tokio::task::spawn_blocking(move || broker.restart())
                        .await
                        .expect("the broker restart task")
                        .expect("restart the broker");
                    workload.history.info(json!({"fault": "broker restarted"}));
                    "kill9 broker + restart".to_owned()
                }
                Fault::Duplicate => {
                    let injected = inject_duplicates(deployment, workload, &mut rng).await;
                    *faults
                        .by_kind
                        .entry("duplicate records".to_owned())
                        .or_default() += injected.saturating_sub(1);
                    "duplicate".to_owned()
                }
            };
            *faults.by_kind.entry(label).or_default() += 1;
        }
    }
    faults
}

/// The snapshot writes the processor's log shows begun and not finished
/// (`topic=… partition=… offset=…`).
fn snapshots_being_written(log: &str) -> Vec<String> {
    let mut open: Vec<String> = Vec::new();
    for line in log.lines() {
        if let Some((_, fields)) = line.split_once("writing aggregate snapshot") {
            open.push(fields.trim().to_owned());
        } else if let Some((_, fields)) = line
            .split_once("wrote aggregate snapshot")
            .or_else(|| line.split_once("aggregate snapshot not written"))
        {
            // A failure's fields follow its cause: match on the tail.
            let fields = fields.trim();
            if let Some(at) = open
                .iter()
                .position(|begun| fields.ends_with(begun.as_str()))
            {
                open.remove(at);
            }
        }
    }
    open
}

/// kill -9 of the processor while it writes a snapshot. Its counters are
/// polled without pause until a snapshot is begun and not yet written; the
/// processor is frozen (SIGSTOP) and its log read: a snapshot write begun
/// and not finished means the frozen process is inside the write, and the
/// kill lands there (the answer names that snapshot). Otherwise it is
/// thawed and the poll goes on; past the deadline it is killed wherever it
/// is and the miss is the error.
async fn kill_while_snapshotting(
    role: &mut Role,
    client: &reqwest::Client,
) -> anyhow::Result<String> {
    let deadline = Deadline::secs(20);
    let mut frozen_outside = 0;
    while !deadline.passed() {
        let Some(now) = scrape(client, &role.metrics_url).await else {
            tokio::time::sleep(foldline_testcontainers::wait::POLL_INTERVAL).await;
            continue;
        };
        let begun = counted(&now, "foldline_processor_snapshots_started_total", &[]);
        let written = counted(&now, "foldline_processor_snapshots_written_total", &[]);
        if begun <= written {
            continue;
        }
        role.process.pause()?;
        let open = snapshots_being_written(&role.process.log_text());
        if let Some(snapshot) = open.first() {
            role.counters.current = now;
            role.process.kill9()?;
            return Ok(snapshot.clone());
        }
        frozen_outside += 1;
        role.process.resume()?;
    }
    role.process.kill9()?;
    anyhow::bail!("no snapshot write caught in 20 s ({frozen_outside} freezes landed outside one)")
}

/// Produces a record that is no command (no headers, not Avro) to
/// `orders.commands`, keyed by a placed order: the processor parks it in
/// the dead-letter topic and the partition keeps flowing.
async fn inject_poison(workload: &Workload, rng: &mut Rng) {
    let key = {
        let orders = workload.placed.lock().expect("placed lock");
        orders
            .get(rng.below(orders.len() as u64) as usize)
            .cloned()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
    };
    let sent = workload
        .producer
        .send(
            FutureRecord::to(&workload.commands_topic)
                .key(&key)
                .payload("a nemesis's poison: not a command"),
            Duration::from_secs(10),
        )
        .await;
    workload.history.info(json!({
        "fault": "poison",
        "key": key,
        "delivered": sent.is_ok(),
    }));
}

/// Re-produces 1..=4 raw records of `orders.commands`, `users.commands` or
/// `payments.commands`
/// exactly (partition, key, value, headers): a producer retry or a
/// replayed topic.
async fn inject_duplicates(deployment: &Deployment, workload: &Workload, rng: &mut Rng) -> usize {
    let topic = match rng.below(3) {
        0 => workload.commands_topic.clone(),
        1 => deployment.topic("users.commands"),
        _ => deployment.topic("payments.commands"),
    };
    let records = read_topic(deployment.bootstrap_servers(), &topic)
        .await
        .expect("read a commands topic");
    let candidates: Vec<_> = records
        .iter()
        .filter(|record| record.payload.is_some())
        .collect();
    if candidates.is_empty() {
        return 0;
    }
    let count = 1 + rng.below(4) as usize;
    for _ in 0..count {
        let original = candidates[rng.below(candidates.len() as u64) as usize];
        let mut headers = OwnedHeaders::new();
        for (name, value) in &original.headers {
            headers = headers.insert(Header {
                key: name,
                value: value.as_deref(),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&topic)
            .partition(original.partition)
            .headers(headers);
        if let Some(key) = original.key.as_deref() {
            record = record.key(key);
        }
        if let Some(payload) = original.payload.as_deref() {
            record = record.payload(payload);
        }
        let sent = workload
            .producer
            .send(record, Duration::from_secs(10))
            .await;
        let command_id = original
            .header("command-id")
            .map(|id| String::from_utf8_lossy(id).into_owned());
        workload.history.info(json!({
            "fault": "duplicate",
            "of": format!("{topic}[{}]@{}", original.partition, original.offset),
            "command_id": command_id,
            "delivered": sent.is_ok(),
        }));
    }
    count
}

/// The checker's Python: `FOLDLINE_ORACLE_PYTHON` (scripts/test sets it),
/// else the venv scripts/test caches under ~/.cache/foldline.
/// Appends what a zombie processor writes: a decision made against a
/// version its order has left (an `OrderCancelled` decided against version
/// 0 of an order whose placement settled), for a command nobody settled. Every
/// reader's gate must ignore it; a reader without the version check would
/// cancel the order.
async fn inject_stale_decision(deployment: &Deployment, workload: &Workload, rng: &mut Rng) {
    let order_id = {
        let orders = workload.placed.lock().expect("placed lock");
        let Some(order_id) = orders.get(rng.below(orders.len() as u64) as usize) else {
            return;
        };
        order_id.clone()
    };
    let topic = deployment.topic("orders.events");
    let command_id = uuid::Uuid::new_v4().to_string();
    let metadata = EventMetadata {
        event_id: uuid::Uuid::new_v4().to_string(),
        aggregate_id: order_id.clone(),
        aggregate_version: 1,
        command_id: command_id.clone(),
        correlation_id: command_id.clone(),
        causation_id: command_id,
        occurred_at: 0,
        traceparent: None,
    };
    let record_name = "foldline.orders.OrderCancelled";
    let record = OrderCancelled {
        metadata: metadata.clone(),
        order_id: order_id.clone(),
        reason: "a zombie's stale decision".to_owned(),
        refund_payment_id: None,
        refund_amount: None,
    };
    let payload = workload
        .codec
        .encode(&topic, record_name, &record)
        .await
        .expect("encode a stale decision");
    let sent = workload
        .producer
        .send(
            FutureRecord::to(&topic)
                .key(&order_id)
                .payload(&payload)
                .headers(record_headers(&metadata, record_name, None)),
            Duration::from_secs(10),
        )
        .await;
    workload.history.info(json!({
        "fault": "stale write",
        "order_id": order_id,
        "delivered": sent.is_ok(),
    }));
}

fn oracle_python() -> PathBuf {
    if let Some(python) = std::env::var_os("FOLDLINE_ORACLE_PYTHON") {
        return PathBuf::from(python);
    }
    let cache = PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/foldline");
    let cached = std::fs::read_dir(&cache).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with("oracle-venv-"))
                    && path.join(".complete").is_file()
            })
            .map(|venv| venv.join("bin/python"))
            .next()
    });
    cached.unwrap_or_else(|| {
        panic!(
            "the checker's Python is missing: run scripts/test once (it creates the venv under {}), or set \
             FOLDLINE_ORACLE_PYTHON to a python with services/foldline/tests/oracle/requirements.txt installed",
            cache.display()
        )
    })
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_under_the_nemesis_passes_the_independent_checker_idempotent() {
    nemesis_run(Mode::Idempotent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_under_the_nemesis_passes_the_independent_checker_transactional() {
    nemesis_run(Mode::Transactional).await;
}

async fn nemesis_run(mode: Mode) {
    let started = Instant::now();
    let python = oracle_python();
    let rounds = env_number("FOLDLINE_NEMESIS_ROUNDS").unwrap_or(
        if std::env::var_os("FOLDLINE_NEMESIS_SOAK").is_some() {
            8
        } else {
            4
        },
    ) as usize;
    let seed = env_number("FOLDLINE_NEMESIS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as u64)
            .unwrap_or(1)
    });
    eprintln!("nemesis {mode:?}: seed {seed} ({rounds} rounds of {} fault kinds); replay with FOLDLINE_NEMESIS_SEED={seed}", FAULT_KINDS.len());

    // A broker of its own: the nemesis kills and restarts it.
    let deployment = mode.on(
        Deployment::isolated(crate::support::binary(), &mode.name("nemesis"))
            .expect("a deployment on a broker of its own"),
    );
    let _registry = deployment
        .spawn_ready(
            "registry",
            &["registry"],
            "store-registry",
            Deadline::secs(60),
        )
        .await
        .expect("the registry becomes ready");
    // The gateway and the projector are processes of their own, sharing
    // the CQL store (the gateway reads what the projector writes); the
    // processor keeps its snapshots in an embedded store of its own.
    let server = cassandra().expect("the cql server starts");
    let cql = cql_env(server.contact_point(), &unique_keyspace("nemesis"));
    migrate(&deployment, &cql);
    // The payment provider: the saga's simulator, with its own ledger of
    // what it executed (the checker's ground truth for "charged twice").
    // It declines the largest order total, fails some requests and loses
    // some answers after executing them. Never faulted: it stands for
    // the card processor outside the platform.
    let simulator_port = foldline_testcontainers::free_port().expect("a free port");
    let simulator_url = format!("http://127.0.0.1:{simulator_port}");
    let simulator_env = [
        (
            "FOLDLINE__PAYMENTS__SIMULATOR__LISTEN",
            format!("127.0.0.1:{simulator_port}"),
        ),
        ("FOLDLINE__PAYMENTS__SIMULATOR__LATENCY_MS", "15".to_owned()),
        (
            "FOLDLINE__PAYMENTS__SIMULATOR__ERROR_RATE",
            "0.1".to_owned(),
        ),
        (
            "FOLDLINE__PAYMENTS__SIMULATOR__LOST_ANSWER_RATE",
            "0.1".to_owned(),
        ),
        (
            "FOLDLINE__PAYMENTS__SIMULATOR__DECLINE_AMOUNT_ABOVE",
            DECLINE_ABOVE.to_string(),
        ),
    ];
    let simulator_env: Vec<(&str, &str)> = simulator_env
        .iter()
        .map(|(key, value)| (*key, value.as_str()))
        .collect();
    let mut simulator = deployment
        .spawn_with(
            "simulator",
            &["provider-simulator"],
            "unused",
            &simulator_env,
        )
        .expect("the provider simulator starts");
    simulator
        .wait_ready(&format!("{simulator_url}/healthz"), Deadline::secs(60))
        .await
        .expect("the provider simulator becomes ready");
    // The order notices' providers (notify): one per channel, each
    // honouring `Idempotency-Key`, so each notification is accepted at
    // most once per provider (ARCHITECTURE.md, *Notify*) and a second
    // notification for one event and channel would show in its counts.
    let mail = FakeProvider::start(true)
        .await
        .expect("a fake mail provider");
    let sms = FakeProvider::start(true)
        .await
        .expect("a fake sms provider");
    let (mail_url, sms_url) = (
        format!("mail={}", mail.url()),
        format!("primary={}", sms.url()),
    );
    // The saga on: the orders projector's process managers and timers
    // call payments, the provider worker calls the simulator, notify's
    // relays notice what the saga decided.
    let saga_env: Vec<(String, String)> = [
        ("FOLDLINE__NOTIFY__EMAIL_PROVIDERS", mail_url.as_str()),
        ("FOLDLINE__NOTIFY__SMS_PROVIDERS", sms_url.as_str()),
        ("FOLDLINE__NOTIFY__RETRY_BACKOFF_MS", "200"),
        ("FOLDLINE__NOTIFY__RETRY_BACKOFF_MAX_MS", "800"),
        // Far above any outage of the run: a notice waits for notify's
        // read models rather than be skipped as `order_unknown`.
        ("FOLDLINE__NOTIFY__ORDER_NOTICE_GRACE_MS", "600000"),
        ("FOLDLINE__SAGA__ENABLED", "true"),
        ("FOLDLINE__SAGA__PAYMENT_DEADLINE_MS", PAYMENT_DEADLINE_MS),
        ("FOLDLINE__PAYMENTS__PROVIDER__URL", simulator_url.as_str()),
        ("FOLDLINE__PAYMENTS__PROVIDER__RETRY_FIRST_DELAY_MS", "20"),
        ("FOLDLINE__PAYMENTS__PROVIDER__RETRY_MAX_DELAY_MS", "300"),
        ("FOLDLINE__PAYMENTS__PROVIDER__REQUEST_TIMEOUT_MS", "2000"),
        // Far above the run: every authorization the simulator made is
        // answered and recorded, so its ledger and the log must agree.
        (
            "FOLDLINE__PAYMENTS__PROVIDER__AUTHORIZATION_DEADLINE_MS",
            "600000",
        ),
    ]
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .to_vec();
    // Each role process runs its part of every domain of the saga
    // (orders, users, payments, notify): the processor also decides
    // payments and notifications, the projector also runs their
    // projections, the provider worker and the notices' relays and
    // delivery worker, so every fault of theirs lands on them too.
    let processor = Role::launch_headless(
        &deployment,
        "processor",
        &[
            "orders-processor",
            "users-processor",
            "payments-processor",
            "notify-processor",
        ],
        "store-processor",
        saga_env.clone(),
    )
    .await;
    let mut projector_env = cql.clone();
    projector_env.extend(saga_env.iter().cloned());
    let projector = Role::launch_headless(
        &deployment,
        "projector",
        &[
            "orders-projector",
            "users-projector",
            "payments-projector",
            "notify-projector",
            "analytics",
        ],
        "unused",
        projector_env,
    )
    .await;
    let mut gateway_env = cql;
    gateway_env.extend(saga_env.iter().cloned());
    gateway_env.push((
        "FOLDLINE__GATEWAY__CLIENT_ID".to_owned(),
        GATEWAY_CLIENT_ID.to_owned(),
    ));
    let gateway =
        Role::launch_http(&deployment, "gateway", &["gateway"], "unused", gateway_env).await;
    let mut roles = [processor, gateway, projector];

    let history_path = deployment.dir().join("history.jsonl");
    let mut workload = Workload {
        api: Api::with_timeout(&deployment.gateway_url(), CLIENT_TIMEOUT).unwrap(),
        history: History::create(&history_path),
        codec: Codec::new(&deployment.registry_url()).unwrap(),
        producer: ClientConfig::new()
            .set("bootstrap.servers", deployment.bootstrap_servers())
            .set("partitioner", "murmur2_random")
            .set("enable.idempotence", "true")
            .create()
            .unwrap(),
        commands_topic: deployment.topic("orders.commands"),
        prefix: deployment.prefix().to_owned(),
        tag: deployment
            .prefix()
            .trim_end_matches('-')
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), ""),
        customers: Vec::new(),
        churning: Mutex::new(Vec::new()),
        keys: Mutex::new(Vec::new()),
        raw_ids: Mutex::new(Vec::new()),
        placed: Mutex::new(Vec::new()),
        orders: Mutex::new(Vec::new()),
    };
    // The customers are registered users: the saga's customer check
    // (orders' read model of users.events) lets their orders be paid.
    for index in 0..CUSTOMERS {
        let email = format!("customer{index}.{}@example.org", workload.tag);
        let request = Request {
            f: "register",
            method: Method::POST,
            key: format!("{}customer-{index}", workload.prefix),
            path: "/v1/users".to_owned(),
            body: match index % 5 < 2 || index % 2 == 1 {
                true => json!({"email": email, "name": format!("Customer {index}"), "phone": format!("+4420796{index:05}")}),
                false => json!({"email": email, "name": format!("Customer {index}")}),
            }
            .to_string(),
            wait: true,
            extra: json!({ "email": email }),
        };
        let answer = workload.http_command_retried(WORKERS, request).await;
        let customer = registered_user(&answer)
            .unwrap_or_else(|| panic!("customer {index} not registered: {answer:?}"));
        if index >= STEADY_CUSTOMERS {
            workload
                .churning
                .lock()
                .expect("churning lock")
                .push(customer.clone());
        }
        workload.customers.push(customer);
    }
    let workload = Arc::new(workload);

    // Workers start orders until the nemesis is done.
    let stop = Arc::new(AtomicBool::new(false));
    let next_order = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    let next_user = Arc::new(AtomicUsize::new(0));
    for process in ORDER_WORKERS..WORKERS {
        let workload = Arc::clone(&workload);
        let stop = Arc::clone(&stop);
        let next_user = Arc::clone(&next_user);
        workers.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let index = next_user.fetch_add(1, Ordering::SeqCst);
                workload
                    .user_life(
                        process,
                        index,
                        seed ^ (index as u64).wrapping_mul(0x2545_f491) ^ 0x5eed,
                    )
                    .await;
            }
        });
    }
    for process in 0..ORDER_WORKERS {
        let workload = Arc::clone(&workload);
        let stop = Arc::clone(&stop);
        let next_order = Arc::clone(&next_order);
        workers.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let index = next_order.fetch_add(1, Ordering::SeqCst);
                workload
                    .order_life(
                        process,
                        index,
                        seed ^ (index as u64).wrapping_mul(0x9e37_79b9),
                    )
                    .await;
            }
        });
    }
    let faults = nemesis(&deployment, &mut roles, &workload, rounds, seed).await;
    stop.store(true, Ordering::SeqCst);
    while let Some(joined) = workers.join_next().await {
        joined.expect("a worker panicked");
    }
    let total_faults: usize = faults
        .by_kind
        .iter()
        .filter(|(kind, _)| kind.as_str() != "duplicate records")
        .map(|(_, count)| count)
        .sum();
    eprintln!(
        "nemesis: {total_faults} faults {:?}; {} orders and {} addresses started; after {:?}",
        faults.by_kind,
        next_order.load(Ordering::SeqCst),
        next_user.load(Ordering::SeqCst),
        started.elapsed()
    );
    for role in roles.iter_mut() {
        assert!(role.process.is_running(), "{}", role.process.report(60));
    }

    // Resolve: every key once more without waiting (a client learning the
    // ids of what it sent), then every command until it settles.
    let keys = workload.keys.lock().unwrap().clone();
    let mut command_ids: Vec<String> = workload.raw_ids.lock().unwrap().clone();
    for request in keys {
        let key = request.key.clone();
        let mut extra = request.extra.clone();
        extra["phase"] = json!("resolve");
        // An order's command is always produced again (202); a user's may
        // be refused first by the gateway (a registration of an erased
        // subject, a change the projected user cannot take).
        let orders = matches!(request.f, "place" | "cancel" | "refund");
        let request = Request {
            wait: false,
            extra,
            ..request
        };
        let deadline = Deadline::secs(60);
        loop {
            match workload.http_command(WORKERS, &request).await {
                Answer::Answered { status: 202, body } => {
                    if let Some(id) = body.get("command_id").and_then(Value::as_str) {
                        command_ids.push(id.to_owned());
                    }
                    break;
                }
                Answer::Answered { .. } if !orders => break,
                _ => {}
            }
            assert!(
                !deadline.passed(),
                "{key} not acknowledged within 60 s after the faults"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let deadline = Deadline::secs(90);
    let mut pending = command_ids;
    while !pending.is_empty() {
        let mut still = Vec::new();
        for command_id in pending {
            let path = format!("/v1/commands/{command_id}");
            let fields = json!({"command_id": command_id});
            let settled = match workload
                .read(WORKERS, "command-status", fields, &path)
                .await
            {
                Some(response) => {
                    response.status == 200 && response.str("status") != Some("pending")
                }
                None => false,
            };
            if !settled {
                still.push(command_id);
            }
        }
        pending = still;
        if !pending.is_empty() {
            if deadline.passed() {
                // The checker still runs: it names what was lost and why.
                eprintln!(
                    "{} commands not settled 90 s after the faults, e.g. {:?}\n{}",
                    pending.len(),
                    &pending[..pending.len().min(5)],
                    deployment
                        .diagnose_commands(&pending[..pending.len().min(5)])
                        .await
                );
                break;
            }
            tokio::time::sleep(foldline_testcontainers::wait::POLL_INTERVAL).await;
        }
    }
    // The saga quiet: every order ended, every payment answered, what an
    // order that ended unpaid was charged given back. Bounded: past the
    // deadline the checker runs anyway and names what is not.
    let orders: Vec<String> = workload.orders.lock().unwrap().clone();
    let quiet = poll_until("the saga to be quiet", Deadline::secs(120), || {
        let (api, orders) = (&workload.api, &orders);
        async move {
            for order in orders {
                if let Some(why) = saga_unsettled(api, order).await {
                    return Err(why);
                }
            }
            Ok(Some(()))
        }
    })
    .await;
    if let Err(error) = quiet {
        eprintln!("nemesis: {error:#}");
    }
    workload.history.flush();

    // The checker runs in a thread of its own: the fake providers it asks
    // for their counts are served by this test's runtime.
    let checker = {
        let (deployment, history_path, simulator_url) =
            (&deployment, &history_path, &simulator_url);
        let (python, mail, sms) = (&python, &mail, &sms);
        tokio::task::block_in_place(|| {
            run_checker(python, deployment, history_path, simulator_url, (mail, sms))
        })
    };
    let ledger: Value = reqwest::get(format!("{simulator_url}/v1/simulator/counts"))
        .await
        .expect("the simulator answers")
        .json()
        .await
        .expect("the simulator's counts are json");
    assert!(simulator.is_running(), "{}", simulator.report(40));
    // The services' own word that the fault windows were hit: the last
    // scrape of every incarnation, summed.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a metrics client");
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for role in roles.iter_mut() {
        role.scrape(&client).await;
        for (series, value) in role.counters.total() {
            *totals.entry(series).or_default() += value;
        }
    }
    eprintln!("nemesis {mode:?}: counters over the run: {totals:#?}");
    let restores = counted(&totals, "foldline_processor_restores_total", &[]);
    let restores_from_snapshot = counted(
        &totals,
        "foldline_processor_restores_total",
        &[r#"from="snapshot""#],
    );
    let resyncs = counted(&totals, "foldline_processor_resyncs_total", &[]);
    let already_settled = counted(
        &totals,
        "foldline_processor_commands_already_settled_total",
        &[],
    );
    let stale_ignored_by_processor = counted(
        &totals,
        "foldline_gate_ignored_total",
        &[r#"verdict="wrong_version""#],
    );
    let parked = counted(
        &totals,
        "foldline_dead_lettered_total",
        &[r#"cause="poison""#],
    );
    let aborted_rounds = counted(&totals, "foldline_processor_transactions_failed_total", &[]);
    let snapshots_begun = counted(&totals, "foldline_processor_snapshots_started_total", &[]);
    let snapshots_written = counted(&totals, "foldline_processor_snapshots_written_total", &[]);
    let key_retries = counted(
        &totals,
        "foldline_gateway_idempotency_retries_total",
        &[r#"verdict="same_request""#],
    );
    let projector_applied = counted(&totals, "foldline_projector_records_applied_total", &[]);
    let projector_ignored_copies = counted(
        &totals,
        "foldline_gate_ignored_total",
        &[r#"reader="projector""#, r#"verdict="already_settled""#],
    );
    let projector_ignored = counted(
        &totals,
        "foldline_gate_ignored_total",
        &[r#"reader="projector""#],
    );
    // The logs say the same (a check of the counters themselves: a restore
    // logs one line and counts one).
    let restores_logged = roles[PROCESSOR]
        .log_lines("restored partition from the event log")
        .len() as u64;
    // Every reader's fold against the committed log; in the transactional
    // mode, what aborted rounds left in the log.
    let replay = deployment.replay().await.expect("replay orders.events");
    let aborted = check_no_aborted_record_folded(&deployment, &replay).await;
    eprintln!(
        "nemesis {mode:?}: counted: restores {restores} ({restores_logged} logged), from a snapshot {restores_from_snapshot}; \
         commands already settled {already_settled}; resyncs {resyncs}; stale decisions ignored by the processor {stale_ignored_by_processor}; \
         poison parked {parked}; transactions failed {aborted_rounds}; kills during a restore {} of {}; kills during a snapshot write {} of {}; \
         snapshots begun {snapshots_begun}, written {snapshots_written}; keyed retries answered from the idempotency window {key_retries}; \
         projector: records applied {projector_applied}, ignored by its gate {projector_ignored} (copies of settled commands {projector_ignored_copies}); \
         stale writes seen resynchronised or ignored {} of {}; \
         aborted records: {} events, {} outcomes; run took {:?}",
        faults.restoring_hit,
        rounds,
        faults.snapshotting_hit,
        rounds,
        faults.stale_seen,
        rounds,
        aborted.events.len(),
        aborted.outcomes.len(),
        started.elapsed()
    );
    assert!(
        pending.is_empty(),
        "{} commands never settled (the checker's report above)",
        pending.len()
    );
    assert!(
        checker.status.success(),
        "the checker found anomalies (history kept in {})",
        deployment.dir().display()
    );
    assert!(
        faults.unexpected.is_empty(),
        "unexpected process behaviour: {:#?}",
        faults.unexpected
    );
    assert!(total_faults > rounds * FAULT_KINDS.len(), "{faults:?}");
    assert_eq!(
        faults.by_kind.get("kill9 broker + restart"),
        Some(&1),
        "{faults:?}"
    );
    assert!(
        restores_from_snapshot > 0,
        "no processor restart restored from a snapshot: {totals:?}"
    );
    // Every scrape is a lower bound (what an incarnation counted after its
    // last scrape died with it), so the counter never exceeds the log.
    assert!(
        restores > 0 && restores <= restores_logged,
        "restores counted {restores}, logged {restores_logged}"
    );
    assert!(
        already_settled > 0,
        "the processor never read a command its log had settled: {totals:?}"
    );
    assert!(
        resyncs > 0,
        "the processor never resynchronised: {totals:?}"
    );
    assert!(
        stale_ignored_by_processor > 0,
        "no restore ignored a stale decision: {totals:?}"
    );
    assert!(parked > 0, "no poison record was parked: {totals:?}");
    assert!(
        faults.restoring_hit > 0,
        "no kill landed while a restore was under way"
    );
    assert!(
        faults.snapshotting_hit > 0,
        "no kill landed while a snapshot was being written"
    );
    assert!(
        key_retries > 0,
        "no keyed retry was answered from the idempotency window: {totals:?}"
    );
    assert!(
        projector_applied > 0,
        "the projectors applied no record: {totals:?}"
    );
    // The stale decisions at least: every projector's gate ignores them.
    assert!(
        projector_ignored > 0,
        "no projector's gate ignored a record: {totals:?}"
    );
    let summary = checker.summary;
    let ignored_copies = summary["log"]["ignored: command already settled"]
        .as_u64()
        .unwrap_or(0);
    let command_copies = summary["log"]["command copies (redelivered or duplicated)"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        command_copies > 0,
        "no command record was ever read twice: {summary}"
    );
    let hidden = summary["log"]["aborted or open records hidden by read_committed"]
        .as_u64()
        .unwrap_or(0);
    // A zombie's stale decisions reached the log, and every reader's gate
    // (the checker's own among them) ignored them.
    let stale_ignored = summary["log"]["ignored: decided against another version"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        stale_ignored > 0,
        "no stale decision in the log was ignored: {summary}"
    );
    match mode {
        Mode::Idempotent => {
            assert_eq!(
                aborted_rounds, 0,
                "transactions failed without transactions"
            );
            assert!(
                aborted.events.is_empty() && aborted.outcomes.is_empty() && hidden == 0,
                "aborted records without transactions: {aborted:?}, the checker saw {hidden}"
            );
        }
        Mode::Transactional => {
            assert!(
                aborted_rounds > 0,
                "no transaction was ever aborted: {totals:?}"
            );
            assert!(
                !aborted.events.is_empty(),
                "no aborted record in orders.events: the abort window was never hit"
            );
            assert!(
                hidden > 0,
                "the checker's read_committed reads hid no aborted record: {summary}"
            );
        }
    }
    // The saga's windows: the provider executed operations whose answers
    // were lost, so the provider worker performed them again and was
    // answered from the provider's store; and money moved every way.
    let executed = |field: &str| ledger[field].as_u64().unwrap_or(0);
    eprintln!(
        "nemesis {mode:?}: provider ledger: requests {}, authorizations {}, declines {}, captures {}, refunds {}, voids {}, \
         replayed {}, refused before executing {}, answers lost after executing {}",
        executed("requests"),
        executed("authorizations"),
        executed("declines"),
        executed("captures"),
        executed("refunds"),
        executed("voids"),
        executed("replayed"),
        executed("unavailable"),
        executed("lost_answers"),
    );
    assert!(
        executed("lost_answers") > 0 && executed("replayed") > 0,
        "no lost provider answer was performed again: {ledger}"
    );
    for field in ["authorizations", "declines", "captures", "refunds"] {
        assert!(
            executed(field) > 0,
            "the provider executed no {field}: {ledger}"
        );
    }
    let (emails, texts) = (mail.accepted().len(), sms.accepted().len());
    eprintln!(
        "nemesis {mode:?}: notices accepted by the fakes: {emails} emails, {texts} SMS; repeats absorbed by their keys: {}",
        mail.absorbed_repeats() + sms.absorbed_repeats()
    );
    assert!(
        emails > 0 && texts > 0,
        "no order notice reached a provider"
    );
    let payments_admitted = summary["log"]["payments admitted"].as_u64().unwrap_or(0);
    assert!(
        payments_admitted > 0,
        "the checker folded no payments event: {summary}"
    );
    eprintln!("nemesis: the log holds {ignored_copies} records of already settled commands, ignored by the gate");
}

/// Why an order's saga is not over yet, as the gateway serves it: the
/// order still placed, a payment waiting for the provider or holding an
/// authorization, a refund pending, money an order that ended unpaid
/// still keeps. `None` when it is over.
async fn saga_unsettled(api: &Api, order: &str) -> Option<String> {
    let read = |path: String| async move {
        match api.get(&path).await {
            Ok(response) if response.status == 200 => Ok(response.body),
            Ok(response) => Err(format!("{path} answers {}", response.status)),
            Err(error) => Err(format!("{path}: {error:#}")),
        }
    };
    let order_view = match read(format!("/v1/orders/{order}")).await {
        Ok(view) => view,
        Err(why) => return Some(why),
    };
    let status = order_view["status"].as_str().unwrap_or_default().to_owned();
    if status == "placed" {
        return Some(format!("order {order} is still placed"));
    }
    let payments = match read(format!("/v1/orders/{order}/payments")).await {
        Ok(view) => view,
        Err(why) => return Some(why),
    };
    for summary in payments["payments"].as_array().into_iter().flatten() {
        let id = summary["payment_id"].as_str().unwrap_or_default();
        let payment = match read(format!("/v1/payments/{id}")).await {
            Ok(view) => view,
            Err(why) => return Some(why),
        };
        let payment_status = payment["status"].as_str().unwrap_or_default();
        let pending = payment["refunds"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|refund| refund["status"] == "pending");
        let kept =
            payment["captured"].as_i64().unwrap_or(0) - payment["refunded"].as_i64().unwrap_or(0);
        let paid = matches!(status.as_str(), "confirmed" | "shipped");
        if matches!(
            payment_status,
            "requested" | "authorized" | "capturing" | "voiding"
        ) || pending
            || (!paid && kept != 0)
        {
            return Some(format!("order {order} is {status}, its payment {id} is {payment_status} (pending refund {pending}, keeps {kept})"));
        }
    }
    None
}

struct Checked {
    status: ExitStatus,
    summary: Value,
}

fn run_checker(
    python: &Path,
    deployment: &Deployment,
    history: &Path,
    simulator_url: &str,
    fakes: (&FakeProvider, &FakeProvider),
) -> Checked {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new(python)
        .arg(manifest.join("tests/oracle/check_history.py"))
        .arg("--bootstrap")
        .arg(deployment.bootstrap_servers())
        .arg("--prefix")
        .arg(deployment.prefix())
        .arg("--registry")
        .arg(deployment.registry_url())
        .arg("--gateway")
        .arg(deployment.gateway_url())
        .arg("--schemas")
        .arg(manifest.join("../../schemas/avro"))
        .arg("--history")
        .arg(history)
        .arg("--client-id")
        .arg(GATEWAY_CLIENT_ID)
        .arg("--simulator")
        .arg(simulator_url)
        .arg("--notify-email")
        .arg(fakes.0.url())
        .arg("--notify-sms")
        .arg(fakes.1.url())
        .arg("--analytics")
        .arg("--dump")
        .arg(deployment.dir().join("projection-dump.json"))
        .output()
        .expect("run the checker");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let summary = stdout
        .lines()
        .find_map(|line| line.strip_prefix("oracle-summary "))
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or(Value::Null);
    Checked {
        status: output.status,
        summary,
    }
}
