//! What gateway replicas share through Redis (a real `redis-server`,
//! started per test): `Idempotency-Key` records and rate-limit counters.
//! The replicas are separate `foldline run gateway` processes, each with an
//! embedded store of its own, so whatever they agree on came through Redis.

use foldline_testcontainers::replay::read_topic;
use foldline_testcontainers::{
    free_port, place_body, Api, ApiResponse, CommandOptions, Deadline, Deployment, FoldlineProcess,
    RedisServer,
};
use reqwest::Method;

use crate::support::binary;

/// A gateway-only process named `name`, with its own store and port.
pub(crate) async fn spawn_replica(
    deployment: &Deployment,
    name: &str,
    env: &[(String, String)],
) -> (FoldlineProcess, Api) {
    let port = free_port().unwrap();
    let mut env = env.to_vec();
    env.push((
        "FOLDLINE__GATEWAY__LISTEN".to_owned(),
        format!("127.0.0.1:{port}"),
    ));
    let pairs: Vec<(&str, &str)> = env
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    let mut process = deployment
        .spawn_with(name, &["gateway"], &format!("store-{name}"), &pairs)
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    process
        .wait_ready(&format!("{url}/readyz"), Deadline::secs(60))
        .await
        .unwrap();
    (process, Api::new(&url).unwrap())
}

fn redis_env(redis: &RedisServer, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![("FOLDLINE__CACHE__URL".to_owned(), redis.url())];
    env.extend(
        extra
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
    );
    env
}

/// Places `body` through `api` until the answer is not the 503 of an
/// unreachable Redis (a replica reconnects by itself).
pub(crate) async fn place_keyed_once_redis_answers(
    api: &Api,
    body: &serde_json::Value,
    options: &CommandOptions<'_>,
) -> ApiResponse {
    foldline_testcontainers::poll_until(
        "keyed commands are accepted again",
        Deadline::secs(30),
        || async move {
            let answer = api
                .place_order(body, options)
                .await
                .map_err(|error| error.to_string())?;
            Ok((answer.code() != Some("idempotency_unavailable")).then_some(answer))
        },
    )
    .await
    .unwrap()
}

/// The copies of `command_id` in orders.commands: asserts there are
/// `expected` of them, byte for byte the same record.
pub(crate) async fn assert_identical_copies(
    deployment: &Deployment,
    command_id: &str,
    expected: usize,
) {
    let records = read_topic(
        deployment.bootstrap_servers(),
        &deployment.topic("orders.commands"),
    )
    .await
    .unwrap();
    let copies: Vec<_> = records
        .iter()
        .filter(|record| record.header("command-id") == Some(command_id.as_bytes()))
        .collect();
    assert_eq!(copies.len(), expected, "{copies:#?}");
    for copy in &copies {
        assert_eq!(copy.payload, copies[0].payload, "the copies differ");
        assert_eq!(copy.partition, copies[0].partition);
    }
}

/// Redis, a registry, and two gateway replicas configured by `extra`.
async fn two_replicas(
    name: &str,
    extra: &[(&str, &str)],
) -> (RedisServer, Deployment, Vec<FoldlineProcess>, Api, Api) {
    let redis = RedisServer::start().expect("redis-server starts");
    let deployment = Deployment::new(binary(), name).unwrap();
    let registry = deployment
        .spawn_ready(
            "registry",
            &["registry"],
            "store-registry",
            Deadline::secs(60),
        )
        .await
        .unwrap();
    let env = redis_env(&redis, extra);
    let (a, api_a) = spawn_replica(&deployment, "gateway-a", &env).await;
    let (b, api_b) = spawn_replica(&deployment, "gateway-b", &env).await;
    (redis, deployment, vec![registry, a, b], api_a, api_b)
}

fn assert_refused(answer: &ApiResponse, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{answer}");
    assert!(answer.is_problem(), "{answer}");
    assert_eq!(answer.code(), Some(code), "{answer}");
    let retry_after: u64 = answer
        .header("retry-after")
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("a whole-second Retry-After: {:?}", answer.headers));
    assert!(retry_after >= 1, "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_with_their_own_stores_answer_a_retried_key_alike_through_redis() {
    let (mut redis, deployment, _processes, api_a, api_b) = two_replicas(
        "shared-idempotency",
        &[("FOLDLINE__GATEWAY__IDEMPOTENCY__BACKEND", "redis")],
    )
    .await;

    // No processor: the copies stay side by side in orders.commands.
    let body = place_body(
        &uuid::Uuid::new_v4().to_string(),
        "EUR",
        &[("SKU-1", 1, 900)],
    );
    let key = format!("{}shared", deployment.prefix());
    let mut answers = Vec::new();
    for api in [&api_a, &api_b, &api_a] {
        let answer = api
            .place_order(&body, &CommandOptions::keyed(&key))
            .await
            .unwrap();
        assert_eq!(answer.status, 202, "{answer}");
        answers.push(answer);
    }
    let command_id = answers[0].str("command_id").unwrap().to_owned();
    for answer in &answers {
        assert_eq!(
            answer.str("command_id"),
            Some(command_id.as_str()),
            "{answer}"
        );
        assert_eq!(
            answer.str("order_id"),
            answers[0].str("order_id"),
            "{answer}"
        );
    }
    // The first reservation's stamp: the copies are one record, byte for byte.
    assert_identical_copies(&deployment, &command_id, 3).await;
    // The same key with another request, on the other replica: refused.
    let other = place_body(
        &uuid::Uuid::new_v4().to_string(),
        "EUR",
        &[("SKU-2", 1, 100)],
    );
    let reused = api_b
        .place_order(&other, &CommandOptions::keyed(&key))
        .await
        .unwrap();
    assert_eq!(reused.status, 422, "{reused}");
    assert_eq!(reused.code(), Some("idempotency_key_reused"), "{reused}");

    // Redis down: keyed commands are refused (never reserved elsewhere),
    // commands without a key and reads go on.
    redis.stop().unwrap();
    for api in [&api_a, &api_b] {
        let refused = api
            .place_order(&body, &CommandOptions::keyed(&key))
            .await
            .unwrap();
        assert_refused(&refused, 503, "idempotency_unavailable");
        let unkeyed = api
            .place_order(&body, &CommandOptions::default())
            .await
            .unwrap();
        assert_eq!(unkeyed.status, 202, "{unkeyed}");
        let health = api.get("/healthz").await.unwrap();
        assert_eq!(health.status, 200, "{health}");
    }

    // Back (empty: this Redis keeps nothing on disk): keys work again, and
    // both replicas agree on a new one as soon as either reconnects.
    redis.start_again().unwrap();
    let fresh_key = format!("{}after", deployment.prefix());
    let options = CommandOptions::keyed(&fresh_key);
    let first = place_keyed_once_redis_answers(&api_a, &body, &options).await;
    assert_eq!(first.status, 202, "{first}");
    let again = place_keyed_once_redis_answers(&api_b, &body, &options).await;
    assert_eq!(again.status, 202, "{again}");
    assert_eq!(again.str("command_id"), first.str("command_id"));
    assert_eq!(again.str("order_id"), first.str("order_id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_across_two_gateways_sharing_one_redis() {
    const LIMIT: usize = 4;
    let (mut redis, _deployment, _processes, api_a, api_b) = two_replicas(
        "shared-rate-limit",
        &[
            ("FOLDLINE__GATEWAY__RATE_LIMIT__KIND", "redis"),
            ("FOLDLINE__GATEWAY__RATE_LIMIT__REQUESTS", "4"),
            // Far longer than the test: the window cannot end mid-test.
            ("FOLDLINE__GATEWAY__RATE_LIMIT__WINDOW_SECONDS", "3600"),
            (
                "FOLDLINE__GATEWAY__RATE_LIMIT__CLIENT_HEADER",
                "x-client-id",
            ),
        ],
    )
    .await;
    let get = |api: &Api, client: &str| {
        let (api, client) = (api.clone(), client.to_owned());
        async move {
            let path = format!("/v1/orders/{}", uuid::Uuid::new_v4());
            api.send(Method::GET, &path, None, &[("x-client-id", client)])
                .await
                .unwrap()
        }
    };

    // Alternating replicas, one client: LIMIT answers in all, then 429
    // from either replica.
    let mut statuses = Vec::new();
    for round in 0..(2 * LIMIT) {
        let api = if round % 2 == 0 { &api_a } else { &api_b };
        let answer = get(api, "client-1").await;
        if answer.status == 429 {
            assert_refused(&answer, 429, "rate_limited");
            let retry_after: u64 = answer.header("retry-after").unwrap().parse().unwrap();
            assert!(retry_after <= 3600, "{retry_after}");
        }
        statuses.push(answer.status);
    }
    assert_eq!(
        statuses,
        [[404; LIMIT], [429; LIMIT]].concat(),
        "the limit is one count across both replicas"
    );
    // Another client has its own count; probes are never limited.
    assert_eq!(get(&api_b, "client-2").await.status, 404);
    for api in [&api_a, &api_b] {
        assert_eq!(api.get("/readyz").await.unwrap().status, 200);
    }

    // Redis down: each replica limits on its own (at most LIMIT each).
    redis.stop().unwrap();
    for api in [&api_a, &api_b] {
        let mut statuses = Vec::new();
        for _ in 0..=LIMIT {
            statuses.push(get(api, "client-3").await.status);
        }
        assert_eq!(statuses, [vec![404; LIMIT], vec![429]].concat(), "{api:?}");
    }
}
