//! Integration tests of the platform crate: the processor and projector
//! against the in-process mock broker, the store contract against the
//! embedded store and a real CQL server, the Redis cache and the gateway's
//! shared state against a real redis-server.
//! embedded store and a real CQL server, the Redis cache against a real
//! redis-server, and the codec's caching counted at the registry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cache;
mod codec_cache;
mod offsets;
mod processor;
mod projector;
mod shared_state;
mod store_contract;
mod support;
