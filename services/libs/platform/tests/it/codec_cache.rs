//! The codec's caching, counted at the registry: a subject is registered
//! once per process however many records are encoded, and a schema id is
//! looked up once however many records are decoded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::Request;
use axum::middleware::Next;
use foldline_contracts::orders::{OrderShipped, ShipOrder};
use foldline_platform::codec::Codec;
use rdkafka::mocking::MockCluster;
use tokio::net::TcpListener;

use crate::support::{
    increment, incremented, init_tracing, start_registry, Cluster, COMMAND, INCREMENTED,
};

/// Requests per "METHOD /path-shape" (ids and subjects replaced by `*`).
type Counts = Arc<Mutex<BTreeMap<String, usize>>>;

fn shape(method: &str, path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    let shaped: Vec<&str> = parts
        .iter()
        .enumerate()
        .map(|(index, part)| match (parts.get(1), index) {
            (Some(&"subjects"), 2) | (Some(&"schemas"), 3) => "*",
            _ => part,
        })
        .collect();
    format!("{method} {}", shaped.join("/"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subjects_are_registered_once_and_ids_looked_up_once_per_process() {
    init_tracing();
    let cluster: Cluster = MockCluster::new(1).expect("mock cluster");
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let registry = start_registry(&cluster, &unique).await;
    let counts: Counts = Arc::default();
    let counted = Arc::clone(&counts);
    let router = registry.router().layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let key = shape(request.method().as_str(), request.uri().path());
            *counted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key)
                .or_default() += 1;
            next.run(request)
        },
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let codec = Codec::new(&url).expect("codec");
    let topic = format!("counter-{unique}.events");
    let records = vec![COMMAND.to_owned(), INCREMENTED.to_owned()];
    // Start-up registers; every loop gets a clone of the same codec.
    codec.register(&topic, &records).await.expect("register");
    let mut encoded = Vec::new();
    for seed in 0..50 {
        let clone = codec.clone();
        let command: ShipOrder = increment("counter-1", seed);
        let event: OrderShipped = incremented(seed as u64, &command);
        encoded.push(
            clone
                .encode(&topic, COMMAND, &command)
                .await
                .expect("encode"),
        );
        encoded.push(
            clone
                .encode(&topic, INCREMENTED, &event)
                .await
                .expect("encode"),
        );
    }
    for bytes in &encoded {
        codec.clone().decode(bytes).await.expect("decode");
    }
    let counts = counts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("POST /subjects/*/versions".to_owned(), 2),
            ("GET /schemas/ids/*".to_owned(), 2),
        ]),
        "one registration per subject, one lookup per id, for 100 encodes and 100 decodes"
    );
    server.abort();
}
