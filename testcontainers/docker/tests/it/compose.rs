//! `deploy/compose.yaml` configures its roles with keys the platform
//! knows: every `FOLDLINE__*` variable it sets, loaded as one
//! configuration, must parse (the configuration refuses unknown keys) and
//! say what the file means (Kafka, ScyllaDB, Redis, the registry).
//! `scripts/test` checks the file's syntax with `docker-compose config`.

use foldline_platform::config::{CacheKind, Config, StoreKind};

const COMPOSE: &str = include_str!("../../../../deploy/compose.yaml");

/// Every `FOLDLINE__KEY: value` line of the file, its value unquoted.
fn foldline_variables() -> Vec<(String, String)> {
    COMPOSE
        .lines()
        .filter_map(|line| line.trim().split_once(": "))
        .filter(|(key, _)| key.starts_with("FOLDLINE__"))
        .map(|(key, value)| {
            let value = value.trim();
            let unquoted = value
                .strip_prefix('\'')
                .and_then(|value| value.strip_suffix('\''))
                .or_else(|| {
                    value
                        .strip_prefix('"')
                        .and_then(|value| value.strip_suffix('"'))
                })
                .unwrap_or(value);
            (key.to_owned(), unquoted.to_owned())
        })
        .collect()
}

#[test]
fn the_compose_file_configures_its_roles_with_known_keys() {
    let variables = foldline_variables();
    assert!(variables.len() >= 12, "{variables:?}");
    let config = Config::load(None, variables.clone()).unwrap_or_else(|error| {
        panic!("compose.yaml's variables do not load: {error}\n{variables:?}")
    });
    assert_eq!(config.kafka.bootstrap_servers, "kafka:9092");
    assert_eq!(config.registry.url, "http://registry:8081");
    assert_eq!(config.store.kind, StoreKind::Scylla);
    assert_eq!(config.store.scylla.contact_points, vec!["scylla:9042"]);
    assert_eq!(config.cache.kind, CacheKind::Redis);
    assert_eq!(config.cache.url.expose(), "redis://redis:6379");
    // The key-encryption key comes from the secret file, never from here.
    assert!(config.personal_data.key_encryption_key.is_none());
    assert!(COMPOSE.contains("FOLDLINE_CONFIG: /run/secrets/foldline"));
}

#[test]
fn the_compose_file_runs_every_role_and_the_migration() {
    for role in [
        "registry",
        "orders-processor",
        "orders-projector",
        "users-processor",
        "users-projector",
        "gateway",
    ] {
        assert!(
            COMPOSE.contains(&format!("command: [\"run\", \"{role}\"]")),
            "compose.yaml runs no {role} service"
        );
    }
    assert!(COMPOSE.contains("command: [\"migrate\"]"));
    assert!(COMPOSE.contains("condition: service_completed_successfully"));
}
