//! The whole platform started in-process through the library, on port 0:
//! what `cargo run` runs, without a child process or a fixed port.

use foldline::app::start_embedded;
use foldline_contracts::topology::Topology;
use foldline_platform::config::Config;
use foldline_testcontainers::{place_body, Api, CommandOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_platform_starts_on_port_zero_serves_and_stops() {
    let mut config = Config::load(None, Vec::<(String, String)>::new()).unwrap();
    config.gateway.listen = "127.0.0.1:0".parse().unwrap();
    config.registry_server.listen = "127.0.0.1:0".parse().unwrap();
    config.payments.simulator.listen = "127.0.0.1:0".parse().unwrap();
    let running = start_embedded(config, Topology::embedded().unwrap())
        .await
        .unwrap();
    let gateway = running.gateway.expect("the gateway runs");
    assert_ne!(gateway.port(), 0);
    assert!(running.banner().contains(&gateway.to_string()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let platform = tokio::spawn(running.run_until(async {
        let _ = stopped.await;
    }));

    let api = Api::new(&format!("http://{gateway}")).unwrap();
    let customer = uuid::Uuid::new_v4().to_string();
    let body = place_body(&customer, "EUR", &[("SKU-1", 1, 990)]);
    let placed = api
        .place_order(&body, &CommandOptions::keyed_waiting("in-process-1", 20))
        .await
        .unwrap();
    assert_eq!(placed.status, 201, "{placed}");
    let order_id = placed.str("id").unwrap().to_owned();
    let cancelled = api
        .cancel_order(
            &order_id,
            "no longer needed",
            &CommandOptions::keyed_waiting("in-process-2", 20),
        )
        .await
        .unwrap();
    assert_eq!(cancelled.status, 200, "{cancelled}");
    let again = api
        .cancel_order(
            &order_id,
            "no longer needed",
            &CommandOptions::keyed_waiting("in-process-3", 20),
        )
        .await
        .unwrap();
    assert_eq!(again.status, 409, "{again}");
    assert_eq!(again.code(), Some("already_cancelled"), "{again}");
    let command = again.header("foldline-command-id").map(str::to_owned);
    assert!(command.is_none(), "a refusal is a problem, not a resource");

    stop.send(()).unwrap();
    platform
        .await
        .unwrap()
        .expect("the platform stops cleanly when asked");
}

/// The embedded broker's transactions only pretend: asking for them there
/// is refused at start-up with the reason, never run half-safe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_platform_refuses_transactions_on() {
    let environment = vec![("FOLDLINE__KAFKA__TRANSACTIONS".to_owned(), "on".to_owned())];
    let config = Config::load(None, environment).unwrap();
    let refused = start_embedded(config, Topology::embedded().unwrap()).await;
    let Err(error) = refused else {
        panic!("the embedded platform started with transactions on");
    };
    let error = format!("{error:#}");
    assert!(
        error.contains("kafka.transactions") && error.contains("embedded broker"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_without_a_valid_key_encryption_key_refuses_to_start() {
    use foldline::app::start;
    use foldline::roles::Role;
    for (value, expected) in [
        (None, "is not configured"),
        (Some("not-hex"), "must be 64 hex digits"),
        (Some("abcd"), "must be 64 hex digits"),
    ] {
        let mut environment = vec![(
            "FOLDLINE__KAFKA__CREATE_TOPICS".to_owned(),
            "false".to_owned(),
        )];
        if let Some(value) = value {
            environment.push((
                "FOLDLINE__PERSONAL_DATA__KEY_ENCRYPTION_KEY".to_owned(),
                value.to_owned(),
            ));
        }
        let config = Config::load(None, environment).unwrap();
        let error = start(config, Topology::embedded().unwrap(), &[Role::Gateway])
            .await
            .expect_err("no gateway without its key");
        let message = format!("{error:#}");
        assert!(message.contains("key-encryption key"), "{message}");
        assert!(message.contains(expected), "{message}");
        if let Some(value) = value {
            assert!(
                !message.contains(value),
                "the key is never repeated: {message}"
            );
        }
    }
}
