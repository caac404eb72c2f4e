//! The Redis cache of hot rows against a real `redis-server` (started per
//! test by the harness): fills from the store, invalidation by position,
//! refused stale fills, and an outage that reads keep answering through.

use foldline_platform::cache::RowCache;
use foldline_platform::config::{CacheConfig, CacheKind, Secret};
use foldline_platform::store::{RowKey, Store, StoredRow, WriteBatch};
use foldline_testcontainers::{poll_until, Deadline, RedisServer};

const HOT: &str = "order_by_id";

fn config(redis: &RedisServer) -> CacheConfig {
    CacheConfig {
        kind: CacheKind::Redis,
        url: Secret::new(redis.url()),
        key_prefix: format!("test-{}:", uuid::Uuid::new_v4().simple()),
        // These tests check what the cache answers, not how fast: on a
        // loaded machine the production timeout turns a slow invalidation
        // into a skipped one, and the assertions about it would flake.
        timeout_ms: 2_000,
        ..CacheConfig::default()
    }
}

fn row(position: i64, value: &str) -> StoredRow {
    StoredRow {
        position,
        value: value.as_bytes().to_vec(),
    }
}

fn key(name: &str) -> RowKey {
    RowKey::new(HOT, name.as_bytes().to_vec(), Vec::new())
}

fn upsert(key: &RowKey, row: StoredRow) -> WriteBatch {
    WriteBatch {
        upserts: vec![(key.clone(), row)],
        checkpoints: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fill_the_cache_and_store_writes_invalidate_it() {
    let redis = RedisServer::start().unwrap();
    let config = config(&redis);
    let inspect = RowCache::new(&config).unwrap();
    let store = Store::in_memory().with_cache(RowCache::new(&config).unwrap());
    let order = key("o-1");

    store.write(upsert(&order, row(5, "v5"))).await.unwrap();
    assert_eq!(inspect.get(&order).await, None, "a write leaves a marker");
    assert_eq!(
        store.get_cached(order.clone()).await.unwrap(),
        Some(row(5, "v5"))
    );
    assert_eq!(
        inspect.get(&order).await,
        Some(row(5, "v5")),
        "the miss filled it"
    );

    store.write(upsert(&order, row(9, "v9"))).await.unwrap();
    assert_eq!(inspect.get(&order).await, None);
    assert_eq!(
        store.get_cached(order.clone()).await.unwrap(),
        Some(row(9, "v9"))
    );
    assert_eq!(inspect.get(&order).await, Some(row(9, "v9")));

    // Other tables and fold reads never touch the cache.
    let cold = RowKey::new("orders_by_customer", b"c".to_vec(), b"k".to_vec());
    store.write(upsert(&cold, row(1, "cold"))).await.unwrap();
    assert_eq!(
        store.get_cached(cold.clone()).await.unwrap(),
        Some(row(1, "cold"))
    );
    assert_eq!(inspect.get(&cold).await, None);
    let missing = key("o-missing");
    assert_eq!(store.get_cached(missing.clone()).await.unwrap(), None);
    assert_eq!(inspect.get(&missing).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_older_than_the_projection_is_refused() {
    let redis = RedisServer::start().unwrap();
    let cache = RowCache::new(&config(&redis)).unwrap();
    let order = key("o-race");
    // A gateway read the row at 6 from the store; the projector then wrote
    // 7 and invalidated; the gateway's fill arrives last.
    cache.invalidate(&[(order.clone(), row(7, "v7"))]).await;
    assert!(!cache.fill(&order, &row(6, "v6")).await);
    assert_eq!(cache.get(&order).await, None);
    assert!(cache.fill(&order, &row(7, "v7")).await);
    assert_eq!(cache.get(&order).await, Some(row(7, "v7")));
    // A second fill of the same position, or an older one, changes nothing.
    assert!(!cache.fill(&order, &row(7, "v7")).await);
    assert!(!cache.fill(&order, &row(3, "v3")).await);
    // An invalidation the cache is already past is a no-op.
    cache.invalidate(&[(order.clone(), row(7, "v7"))]).await;
    assert_eq!(cache.get(&order).await, Some(row(7, "v7")));
    cache.invalidate(&[(order.clone(), row(8, "v8"))]).await;
    assert_eq!(cache.get(&order).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_degrades_to_store_reads_and_the_cache_refills() {
    let mut redis = RedisServer::start().unwrap();
    let config = config(&redis);
    let inspect = RowCache::new(&config).unwrap();
    let store = Store::in_memory().with_cache(RowCache::new(&config).unwrap());
    let order = key("o-outage");
    store.write(upsert(&order, row(1, "v1"))).await.unwrap();
    assert_eq!(
        store.get_cached(order.clone()).await.unwrap(),
        Some(row(1, "v1"))
    );
    assert_eq!(inspect.get(&order).await, Some(row(1, "v1")));

    redis.stop().unwrap();
    // Writes and reads go on, from the store.
    store.write(upsert(&order, row(2, "v2"))).await.unwrap();
    for _ in 0..20 {
        assert_eq!(
            store.get_cached(order.clone()).await.unwrap(),
            Some(row(2, "v2"))
        );
    }
    assert_eq!(inspect.get(&order).await, None);

    redis.start_again().unwrap();
    // The connection comes back by itself and the next misses refill.
    let refilled = poll_until("the cache refills", Deadline::secs(30), || {
        let (store, inspect, order) = (store.clone(), &inspect, order.clone());
        async move {
            let served = store
                .get_cached(order.clone())
                .await
                .map_err(|error| error.to_string())?;
            if served != Some(row(2, "v2")) {
                return Err(format!("served {served:?}"));
            }
            Ok(inspect.get(&order).await)
        }
    })
    .await
    .unwrap();
    assert_eq!(refilled, row(2, "v2"));
}
