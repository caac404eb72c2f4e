//! The embedded schema registry against the mock broker: a stock Confluent
//! client, the raw REST API, and several instances sharing one topic.

use std::future::Future;
use std::time::{Duration, Instant};

use apache_avro::types::Value as AvroValue;
use foldline_platform::config::KafkaConfig;
use foldline_registry::{serve, Registry, RegistryConfig, RegistryError};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use reqwest::{Method, StatusCode};
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

type Cluster = MockCluster<'static, DefaultProducerContext>;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// How long to poll for another instance to converge.
const CONVERGENCE: Duration = Duration::from_secs(20);

const ORDER_V1: &str = r#"{"type":"record","name":"OrderPlaced","namespace":"foldline.orders","fields":[{"name":"order_id","type":"string"},{"name":"amount","type":"long"}]}"#;
/// V1 plus a required field without a default: not BACKWARD compatible.
const ORDER_V2_REQUIRED: &str = r#"{"type":"record","name":"OrderPlaced","namespace":"foldline.orders","fields":[{"name":"order_id","type":"string"},{"name":"amount","type":"long"},{"name":"currency","type":"string"}]}"#;
/// V1 plus a field with a default: BACKWARD compatible.
const ORDER_V2_OPTIONAL: &str = r#"{"type":"record","name":"OrderPlaced","namespace":"foldline.orders","fields":[{"name":"order_id","type":"string"},{"name":"amount","type":"long"},{"name":"currency","type":"string","default":"EUR"}]}"#;

fn cluster() -> Cluster {
    MockCluster::new(1).expect("mock cluster")
}

/// A compacted, single-partition topic with a name no other test uses.
fn schemas_topic(cluster: &Cluster, test: &str) -> String {
    let topic = format!("_schemas-{test}-{}", uuid::Uuid::new_v4().simple());
    cluster.create_topic(&topic, 1, 1).expect("create topic");
    topic
}

fn kafka(cluster: &Cluster) -> KafkaConfig {
    KafkaConfig {
        bootstrap_servers: cluster.bootstrap_servers(),
        ..KafkaConfig::default()
    }
}

fn config(topic: &str, client_id: &str) -> RegistryConfig {
    RegistryConfig {
        topic: topic.to_owned(),
        client_id: client_id.to_owned(),
    }
}

/// A registry instance served on an ephemeral port.
struct Instance {
    base: String,
    http: reqwest::Client,
    _registry: Registry,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

/// Logs to the test output when `RUST_LOG` asks for it.
fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

impl Instance {
    async fn start(cluster: &Cluster, topic: &str, client_id: &str) -> Self {
        init_tracing();
        let registry = Registry::start(&kafka(cluster), config(topic, client_id))
            .await
            .expect("registry starts");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(registry.clone(), listener, async move {
            let _ = stop.await;
        }));
        Self {
            base,
            http: reqwest::Client::builder()
                .no_proxy()
                // A server answering 413 before reading the body closes the
                // connection; a pooled client may already have reused it
                // (IncompleteMessage). Every request gets its own.
                .pool_max_idle_per_host(0)
                .build()
                .expect("http client"),
            _registry: registry,
            shutdown: Some(shutdown),
            server,
        }
    }

    async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.server.await.expect("server task").expect("server");
    }

    /// Sends `body` (raw text) with the registry's content type; returns the
    /// status and the JSON body, after checking the response content type.
    async fn raw(&self, method: Method, path: &str, body: Option<&str>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("accept", CONTENT_TYPE);
        if let Some(body) = body {
            request = request
                .header("content-type", CONTENT_TYPE)
                .body(body.to_owned());
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some(CONTENT_TYPE),
            "{path}"
        );
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: body {text:?} is not json: {e}"));
        (status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.raw(Method::GET, path, None).await
    }

    async fn send(&self, method: Method, path: &str, body: &Value) -> (StatusCode, Value) {
        self.raw(method, path, Some(&body.to_string())).await
    }

    async fn register(&self, subject: &str, schema: &str) -> (StatusCode, Value) {
        self.send(
            Method::POST,
            &format!("/subjects/{subject}/versions"),
            &json!({ "schema": schema }),
        )
        .await
    }

    async fn register_ok(&self, subject: &str, schema: &str) -> u64 {
        let (status, body) = self.register(subject, schema).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["id"].as_u64().expect("id")
    }
}

fn assert_error(response: &(StatusCode, Value), status: StatusCode, code: u64) {
    assert_eq!(response.0, status, "{}", response.1);
    assert_eq!(response.1["error_code"], code, "{}", response.1);
    let message = response.1["message"].as_str().expect("message");
    assert!(!message.is_empty());
    assert!(
        !message.starts_with(char::is_uppercase),
        "message should be lowercase: {message}"
    );
}

/// Polls `check` until it returns `true`, failing after `CONVERGENCE`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + CONVERGENCE;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_client_registers_and_round_trips_a_record() {
    let cluster = cluster();
    let topic = schemas_topic(&cluster, "stock-client");
    let instance = Instance::start(&cluster, &topic, "stock-client").await;

    let settings = SrSettings::new_builder(instance.base.clone())
        .no_proxy()
        .build()
        .expect("settings");
    let encoder = AvroEncoder::new(settings.clone());
    let strategy = || {
        SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
            "orders".to_owned(),
            SuppliedSchema::new(
                Some("foldline.orders.OrderPlaced".to_owned()),
                SchemaType::Avro,
                ORDER_V1.to_owned(),
            ),
        )
    };
    let fields = || {
        vec![
            ("order_id", AvroValue::String("o-1".to_owned())),
            ("amount", AvroValue::Long(4200)),
        ]
    };
    let bytes = encoder
        .encode(fields(), strategy())
        .await
        .expect("encode registers the schema");

    // Confluent wire format: magic byte 0, a big-endian id, the Avro body.
    assert_eq!(bytes[0], 0);
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let (status, version) = instance
        .get("/subjects/orders-foldline.orders.OrderPlaced/versions/latest")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(version["id"], id);
    assert_eq!(version["version"], 1);

    // A fresh encoder (empty cache) registering again gets the same id.
    let again = AvroEncoder::new(settings.clone())
        .encode(fields(), strategy())
        .await
        .expect("encode again");
    assert_eq!(again, bytes);

    let decoded = AvroDecoder::new(settings)
        .decode(Some(&bytes))
        .await
        .expect("decode");
    assert_eq!(
        decoded.value,
        AvroValue::Record(vec![
            ("order_id".to_owned(), AvroValue::String("o-1".to_owned())),
            ("amount".to_owned(), AvroValue::Long(4200)),
        ])
    );
    instance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_routes_and_errors() {
    let cluster = cluster();
    let topic = schemas_topic(&cluster, "rest");
    let api = Instance::start(&cluster, &topic, "rest").await;

    // An empty registry.
    assert_eq!(api.get("/").await, (StatusCode::OK, json!({})));
    assert_eq!(api.get("/subjects").await, (StatusCode::OK, json!([])));
    assert_eq!(
        api.get("/schemas/types").await,
        (StatusCode::OK, json!(["AVRO"]))
    );
    assert_eq!(
        api.get("/config").await,
        (StatusCode::OK, json!({"compatibilityLevel": "BACKWARD"}))
    );

    // Register, then re-register: same id, no new version.
    let id1 = api.register_ok("orders-value", ORDER_V1).await;
    let reformatted =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(ORDER_V1).expect("json"))
            .expect("pretty");
    assert_eq!(api.register_ok("orders-value", &reformatted).await, id1);
    assert_eq!(api.register_ok("orders-value", ORDER_V1).await, id1);
    assert_eq!(
        api.get("/subjects/orders-value/versions").await,
        (StatusCode::OK, json!([1]))
    );
    // The same schema under another subject reuses the global id.
    assert_eq!(api.register_ok("audit-value", ORDER_V1).await, id1);
    assert_eq!(
        api.get("/subjects").await,
        (StatusCode::OK, json!(["audit-value", "orders-value"]))
    );

    // By id.
    let (status, body) = api.get(&format!("/schemas/ids/{id1}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["schema"], ORDER_V1);
    let (status, body) = api.get(&format!("/schemas/ids/{id1}?deleted=true")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        api.get(&format!("/schemas/ids/{id1}/versions")).await,
        (
            StatusCode::OK,
            json!([{"subject": "audit-value", "version": 1}, {"subject": "orders-value", "version": 1}])
        )
    );
    assert_error(
        &api.get("/schemas/ids/9999").await,
        StatusCode::NOT_FOUND,
        40403,
    );
    assert_error(
        &api.get("/schemas/ids/abc").await,
        StatusCode::NOT_FOUND,
        40403,
    );
    assert_error(
        &api.get("/schemas/ids/9999/versions").await,
        StatusCode::NOT_FOUND,
        40403,
    );

    // By subject and version.
    let expected_v1 =
        json!({"subject": "orders-value", "version": 1, "id": id1, "schema": ORDER_V1});
    assert_eq!(
        api.get("/subjects/orders-value/versions/1").await,
        (StatusCode::OK, expected_v1.clone())
    );
    assert_eq!(
        api.get("/subjects/orders-value/versions/latest").await,
        (StatusCode::OK, expected_v1.clone())
    );
    assert_eq!(
        api.get("/subjects/orders-value/versions/1/schema").await,
        (
            StatusCode::OK,
            serde_json::from_str::<Value>(ORDER_V1).expect("json")
        )
    );
    assert_error(
        &api.get("/subjects/nope/versions").await,
        StatusCode::NOT_FOUND,
        40401,
    );
    assert_error(
        &api.get("/subjects/nope/versions/1").await,
        StatusCode::NOT_FOUND,
        40401,
    );
    assert_error(
        &api.get("/subjects/orders-value/versions/2").await,
        StatusCode::NOT_FOUND,
        40402,
    );
    for bad in ["abc", "0", "-5", "99999999999"] {
        assert_error(
            &api.get(&format!("/subjects/orders-value/versions/{bad}"))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            42202,
        );
    }

    // Lookup under a subject.
    assert_eq!(
        api.send(
            Method::POST,
            "/subjects/orders-value",
            &json!({"schema": reformatted})
        )
        .await,
        (StatusCode::OK, expected_v1.clone())
    );
    assert_error(
        &api.send(
            Method::POST,
            "/subjects/orders-value",
            &json!({"schema": ORDER_V2_OPTIONAL}),
        )
        .await,
        StatusCode::NOT_FOUND,
        40403,
    );
    assert_error(
        &api.send(Method::POST, "/subjects/nope", &json!({"schema": ORDER_V1}))
            .await,
        StatusCode::NOT_FOUND,
        40401,
    );

    // BACKWARD refuses a new required field without a default.
    assert_error(
        &api.register("orders-value", ORDER_V2_REQUIRED).await,
        StatusCode::CONFLICT,
        409,
    );
    let api_ref = &api;
    let check = |version: &str, schema: &str| {
        let path = format!("/compatibility/subjects/orders-value/versions/{version}");
        let body = json!({ "schema": schema });
        async move { api_ref.send(Method::POST, &path, &body).await }
    };
    assert_eq!(
        check("latest", ORDER_V2_REQUIRED).await,
        (StatusCode::OK, json!({"is_compatible": false}))
    );
    let (status, verbose) = check("latest?verbose=true", ORDER_V2_REQUIRED).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verbose["is_compatible"], false);
    assert!(
        verbose["messages"][0]
            .as_str()
            .is_some_and(|m| m.contains("currency")),
        "{verbose}"
    );
    assert_eq!(
        check("latest", ORDER_V2_OPTIONAL).await,
        (StatusCode::OK, json!({"is_compatible": true}))
    );
    assert_eq!(
        check("1", ORDER_V2_OPTIONAL).await,
        (StatusCode::OK, json!({"is_compatible": true}))
    );
    assert_error(
        &check("7", ORDER_V2_OPTIONAL).await,
        StatusCode::NOT_FOUND,
        40402,
    );
    assert_error(
        &check("x", ORDER_V2_OPTIONAL).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42202,
    );
    assert_eq!(
        api.send(
            Method::POST,
            "/compatibility/subjects/orders-value/versions",
            &json!({"schema": ORDER_V2_OPTIONAL})
        )
        .await,
        (StatusCode::OK, json!({"is_compatible": true}))
    );

    // A compatible evolution gets a new version and a new id.
    let id2 = api.register_ok("orders-value", ORDER_V2_OPTIONAL).await;
    assert_ne!(id2, id1);
    assert_eq!(
        api.get("/subjects/orders-value/versions").await,
        (StatusCode::OK, json!([1, 2]))
    );
    assert_eq!(
        api.get("/subjects/orders-value/versions/latest").await.1["id"],
        id2
    );

    // Compatibility levels.
    assert_error(
        &api.get("/config/orders-value").await,
        StatusCode::NOT_FOUND,
        40408,
    );
    assert_eq!(
        api.get("/config/orders-value?defaultToGlobal=true").await,
        (StatusCode::OK, json!({"compatibilityLevel": "BACKWARD"}))
    );
    assert_eq!(
        api.send(
            Method::PUT,
            "/config/orders-value",
            &json!({"compatibility": "NONE"})
        )
        .await,
        (StatusCode::OK, json!({"compatibility": "NONE"}))
    );
    assert_eq!(
        api.get("/config/orders-value").await,
        (StatusCode::OK, json!({"compatibilityLevel": "NONE"}))
    );
    // Under NONE the required field is accepted.
    let id3 = api.register_ok("orders-value", ORDER_V2_REQUIRED).await;
    assert_ne!(id3, id2);
    assert_error(
        &api.send(
            Method::PUT,
            "/config/orders-value",
            &json!({"compatibility": "SIDEWAYS"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42203,
    );
    assert_error(
        &api.send(Method::PUT, "/config", &json!({"compatibility": 7}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        422,
    );
    assert_eq!(
        api.send(
            Method::PUT,
            "/config",
            &json!({"compatibility": "FULL_TRANSITIVE"})
        )
        .await,
        (StatusCode::OK, json!({"compatibility": "FULL_TRANSITIVE"}))
    );
    assert_eq!(
        api.get("/config").await,
        (
            StatusCode::OK,
            json!({"compatibilityLevel": "FULL_TRANSITIVE"})
        )
    );
    assert_eq!(
        api.raw(Method::DELETE, "/config/orders-value", None).await,
        (StatusCode::OK, json!({"compatibilityLevel": "NONE"}))
    );
    assert_error(
        &api.get("/config/orders-value").await,
        StatusCode::NOT_FOUND,
        40408,
    );
    assert_error(
        &api.raw(Method::DELETE, "/config/orders-value", None).await,
        StatusCode::NOT_FOUND,
        40408,
    );

    // Garbage in, Confluent-shaped errors out; never a 500.
    let post =
        |body: &'static str| api_ref.raw(Method::POST, "/subjects/junk/versions", Some(body));
    assert_error(&post("{not json").await, StatusCode::BAD_REQUEST, 400);
    assert_error(&post("").await, StatusCode::BAD_REQUEST, 400);
    assert_error(
        &post(r#"{"schema": 5}"#).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        422,
    );
    assert_error(
        &post(r#"{}"#).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42201,
    );
    assert_error(
        &post(r#"{"schema": "{bad"}"#).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42201,
    );
    assert_error(
        &post(r#"{"schema": "{\"type\":\"record\"}"}"#).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42201,
    );
    assert_error(
        &post(r#"{"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}"#).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42201,
    );
    assert_error(
        &post(
            r#"{"schema": "\"int\"", "references": [{"name": "a", "subject": "b", "version": 1}]}"#,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42201,
    );
    assert_error(
        &post(r#"{"schema": "\"int\"", "id": 12}"#).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42205,
    );
    // Plain application/json is accepted, other media types are not.
    let response = api
        .http
        .post(format!("{}/subjects/plain-json/versions", api.base))
        .json(&json!({"schema": "\"string\""}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let response = api
        .http
        .post(format!("{}/subjects/text/versions", api.base))
        .header("content-type", "text/plain")
        .body(r#"{"schema": "\"string\""}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Oversized bodies are cut off: the server answers 413 from the
    // declared length and closes without reading the rest, so a client
    // still uploading sees either that 413 or the connection cut under it.
    let huge = format!(r#"{{"schema": "{}"}}"#, "x".repeat(2 * 1024 * 1024));
    let cut_off = api
        .http
        .post(format!("{}/subjects/junk/versions", api.base))
        .header("content-type", CONTENT_TYPE)
        .body(huge)
        .send()
        .await;
    match cut_off {
        Ok(response) => assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(error) => assert!(
            error.is_request() || error.is_body(),
            "an oversized upload failed for another reason: {error:?}"
        ),
    }
    assert_error(&api.get("/no/such/route").await, StatusCode::NOT_FOUND, 404);
    assert_error(
        &api.raw(Method::DELETE, "/subjects", None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        405,
    );
    // Nothing above created a subject.
    assert_eq!(
        api.get("/subjects").await,
        (
            StatusCode::OK,
            json!(["audit-value", "orders-value", "plain-json"])
        )
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_rebuilds_the_state_from_the_log() {
    let cluster = cluster();
    let topic = schemas_topic(&cluster, "replay");
    let first = Instance::start(&cluster, &topic, "first").await;

    let id1 = first.register_ok("orders-value", ORDER_V1).await;
    let id2 = first.register_ok("orders-value", ORDER_V2_OPTIONAL).await;
    let shared = first.register_ok("audit-value", ORDER_V1).await;
    assert_eq!(shared, id1);
    first
        .send(
            Method::PUT,
            "/config/orders-value",
            &json!({"compatibility": "FULL"}),
        )
        .await;

    // `start` returns only after the replay: no waiting needed.
    let second = Instance::start(&cluster, &topic, "second").await;
    for path in [
        "/subjects".to_owned(),
        "/subjects/orders-value/versions".to_owned(),
        "/subjects/orders-value/versions/1".to_owned(),
        "/subjects/orders-value/versions/latest".to_owned(),
        "/subjects/audit-value/versions/latest".to_owned(),
        format!("/schemas/ids/{id1}"),
        format!("/schemas/ids/{id2}"),
        format!("/schemas/ids/{id1}/versions"),
        "/config/orders-value".to_owned(),
        "/config".to_owned(),
    ] {
        let (status, body) = second.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!((status, body), first.get(&path).await, "{path}");
    }
    // Re-registering on the second instance is a no-op with the same id.
    assert_eq!(second.register_ok("orders-value", ORDER_V1).await, id1);
    assert_eq!(
        second.get("/subjects/orders-value/versions").await.1,
        json!([1, 2])
    );

    // A write on the second instance reaches the first through the log,
    // with the next free id.
    let other = r#"{"type":"record","name":"Shipped","fields":[{"name":"at","type":"long"}]}"#;
    let id3 = second.register_ok("shipments-value", other).await;
    assert_eq!(id3, id2.max(id1) + 1);
    // An id above every id the first instance has seen gets a grace period
    // for its tail to catch up, so a consumer asking it right away (as a
    // decoder would) is not told the id is unknown.
    let (status, body) = first.get(&format!("/schemas/ids/{id3}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["schema"], other);
    assert_eq!(first.register_ok("shipments-value", other).await, id3);
    assert_eq!(
        first.get("/subjects/shipments-value/versions").await.1,
        json!([1])
    );

    // A third instance, started after all of it, agrees too.
    let third = Instance::start(&cluster, &topic, "third").await;
    assert_eq!(
        third.get("/subjects").await.1,
        json!(["audit-value", "orders-value", "shipments-value"])
    );
    assert_eq!(
        third.get(&format!("/schemas/ids/{id3}")).await.1["schema"],
        other
    );

    first.stop().await;
    second.stop().await;
    third.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_instances_converge_on_one_history() {
    let cluster = cluster();
    let topic = schemas_topic(&cluster, "race");
    let a = Instance::start(&cluster, &topic, "a").await;
    let b = Instance::start(&cluster, &topic, "b").await;
    // Every schema below is unrelated to the others: allow anything.
    a.send(Method::PUT, "/config", &json!({"compatibility": "NONE"}))
        .await;
    eventually("b to see the global level", || async {
        b.get("/config").await.1["compatibilityLevel"] == "NONE"
    })
    .await;

    let schema = |i: usize| {
        format!(r#"{{"type":"record","name":"R{i}","fields":[{{"name":"f{i}","type":"long"}}]}}"#)
    };
    // Both instances register at once, into one shared subject (racing for
    // versions) and into their own subjects (racing for ids).
    let registrations = (0..16).map(|i| {
        let instance = if i % 2 == 0 { &a } else { &b };
        let subject = if i % 4 < 2 {
            "shared".to_owned()
        } else {
            format!("own-{i}")
        };
        let schema = schema(i);
        async move { (i, instance.register_ok(&subject, &schema).await) }
    });
    let ids = futures::future::join_all(registrations).await;

    let mut distinct: Vec<u64> = ids.iter().map(|(_, id)| *id).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), ids.len(), "one id per schema: {ids:?}");

    for (i, id) in &ids {
        let path = format!("/schemas/ids/{id}");
        for instance in [&a, &b] {
            eventually("both instances to agree on every id", || async {
                instance.get(&path).await.0 == StatusCode::OK
            })
            .await;
            let (_, body) = instance.get(&path).await;
            assert_eq!(body["schema"], schema(*i), "id {id} on {}", instance.base);
        }
    }
    eventually("both instances to agree on the shared subject", || async {
        let left = a.get("/subjects/shared/versions").await;
        let right = b.get("/subjects/shared/versions").await;
        left == right && left.1 == json!([1, 2, 3, 4, 5, 6, 7, 8])
    })
    .await;
    for version in 1..=8 {
        let path = format!("/subjects/shared/versions/{version}");
        assert_eq!(a.get(&path).await, b.get(&path).await, "{path}");
    }
    // A late instance folds the raced log, losers and repairs included, to
    // the same state.
    let late = Instance::start(&cluster, &topic, "late").await;
    assert_eq!(late.get("/subjects").await, a.get("/subjects").await);
    for version in 1..=8 {
        let path = format!("/subjects/shared/versions/{version}");
        assert_eq!(late.get(&path).await, a.get(&path).await, "{path}");
    }
    for (_, id) in &ids {
        let path = format!("/schemas/ids/{id}");
        assert_eq!(late.get(&path).await, a.get(&path).await, "{path}");
    }
    a.stop().await;
    b.stop().await;
    late.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_fails_clearly_without_a_usable_topic() {
    let cluster = cluster();
    let missing = format!("_schemas-missing-{}", uuid::Uuid::new_v4().simple());
    let error = Registry::start(&kafka(&cluster), config(&missing, "missing"))
        .await
        .expect_err("the topic does not exist");
    assert!(
        matches!(&error, RegistryError::TopicMissing { topic } if *topic == missing),
        "{error:?}"
    );
    assert!(error.to_string().contains("does not exist"), "{error}");

    let partitioned = format!("_schemas-partitioned-{}", uuid::Uuid::new_v4().simple());
    cluster
        .create_topic(&partitioned, 3, 1)
        .expect("create topic");
    let error = Registry::start(&kafka(&cluster), config(&partitioned, "partitioned"))
        .await
        .expect_err("three partitions");
    assert!(
        matches!(error, RegistryError::TopicPartitions { partitions: 3, .. }),
        "{error:?}"
    );

    let error = Registry::start(&kafka(&cluster), config("", "empty"))
        .await
        .expect_err("empty topic name");
    assert!(
        matches!(error, RegistryError::InvalidConfig(_)),
        "{error:?}"
    );

    let mut garbage = kafka(&cluster);
    garbage
        .properties
        .insert("no.such.property".to_owned(), "1".to_owned());
    let topic = schemas_topic(&cluster, "garbage");
    let error = Registry::start(&garbage, config(&topic, "garbage"))
        .await
        .expect_err("an unknown client property");
    assert!(error.to_string().contains("no.such.property"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_fails_clearly_when_brokers_are_unreachable() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let started = Instant::now();
    let unreachable = KafkaConfig {
        bootstrap_servers: address.to_string(),
        ..KafkaConfig::default()
    };
    let error = Registry::start(&unreachable, config("_schemas", "unreachable"))
        .await
        .expect_err("no broker");
    assert!(
        matches!(error, RegistryError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("unreachable"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(30));
}
