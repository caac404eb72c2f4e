//! The happy path and the refusals, through the HTTP API of one process
//! running every role against the real broker; then the log read back with
//! a stock Kafka client and the registry's own REST API.

use foldline_testcontainers::{place_body, read_topic, CommandOptions, Deployment};
use serde_json::Value;

use crate::support::{binary, spawn_platform};

fn order_id_of(item: &Value) -> Option<&str> {
    item.get("order_id")
        .or_else(|| item.get("id"))
        .and_then(Value::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_placed_read_listed_cancelled_and_refusals_are_problems() {
    let deployment = Deployment::new(binary(), "flow").unwrap();
    let _platform = spawn_platform(&deployment).await;
    let api = deployment.api().unwrap();
    let customer = uuid::Uuid::new_v4().to_string();
    let body = place_body(&customer, "EUR", &[("SKU-1", 2, 1250)]);
    let key = format!("{}first", deployment.prefix());

    // Place, waiting for the outcome: the order itself comes back.
    let placed = api
        .place_order(&body, &CommandOptions::keyed_waiting(&key, 20))
        .await
        .unwrap();
    assert_eq!(placed.status, 201, "{placed}");
    let order_id = placed.str("id").expect("the order has an id").to_owned();
    assert_eq!(
        placed.location(),
        Some(format!("/v1/orders/{order_id}").as_str())
    );
    assert_eq!(placed.body["total"], 2500, "{placed}");
    assert_eq!(placed.body["status"], "placed", "{placed}");
    assert_eq!(placed.body["version"], 1, "{placed}");
    assert_eq!(placed.body["customer_id"], customer.as_str(), "{placed}");
    assert_eq!(placed.body["currency"], "EUR", "{placed}");
    let lines = placed.body["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 1, "{placed}");
    assert_eq!(lines[0]["sku"], "SKU-1");
    assert_eq!(lines[0]["quantity"], 2);
    assert_eq!(lines[0]["unit_price"], 1250);
    for field in ["placed_at", "updated_at"] {
        assert!(placed.str(field).is_some(), "{field} missing: {placed}");
    }

    // Read-your-writes: the 201 means the read side has it.
    let fetched = api.order(&order_id).await.unwrap();
    assert_eq!(fetched.status, 200, "{fetched}");
    assert_eq!(fetched.body, placed.body);

    // Retries with the same key and body are the same command and order.
    let retry = api
        .place_order(&body, &CommandOptions::keyed(&key))
        .await
        .unwrap();
    assert_eq!(retry.status, 202, "{retry}");
    assert_eq!(retry.str("order_id"), Some(order_id.as_str()), "{retry}");
    let command_id = retry.str("command_id").expect("a command id").to_owned();
    assert_eq!(
        retry.location(),
        Some(format!("/v1/commands/{command_id}").as_str())
    );
    let again = api
        .place_order(&body, &CommandOptions::keyed(&key))
        .await
        .unwrap();
    assert_eq!(
        again.str("command_id"),
        Some(command_id.as_str()),
        "{again}"
    );
    assert_eq!(again.str("order_id"), Some(order_id.as_str()), "{again}");
    let waited_retry = api
        .place_order(&body, &CommandOptions::keyed_waiting(&key, 20))
        .await
        .unwrap();
    assert_eq!(waited_retry.status, 201, "{waited_retry}");
    assert_eq!(
        waited_retry.str("id"),
        Some(order_id.as_str()),
        "{waited_retry}"
    );
    assert_eq!(
        waited_retry.body["version"], 1,
        "a retry must not place twice: {waited_retry}"
    );

    // The command's outcome.
    let outcome = api.command_status(&command_id).await.unwrap();
    assert_eq!(outcome.status, 200, "{outcome}");
    assert_eq!(outcome.str("status"), Some("accepted"), "{outcome}");
    assert_eq!(
        outcome.str("order_id"),
        Some(order_id.as_str()),
        "{outcome}"
    );
    assert_eq!(outcome.body["order_version"], 1, "{outcome}");

    // Two more orders of the customer, then page through the list.
    let mut expected_ids = vec![order_id.clone()];
    for quantity in [1, 3] {
        let more = api
            .place_order(
                &place_body(&customer, "EUR", &[("SKU-2", quantity, 500)]),
                &CommandOptions::waiting(20),
            )
            .await
            .unwrap();
        assert_eq!(more.status, 201, "{more}");
        assert_eq!(more.body["total"], quantity * 500, "{more}");
        expected_ids.push(more.str("id").unwrap().to_owned());
    }
    let first_page = api.customer_orders(&customer, Some(2), None).await.unwrap();
    assert_eq!(first_page.status, 200, "{first_page}");
    let first_items = first_page.body["items"].as_array().expect("items").clone();
    assert_eq!(first_items.len(), 2, "{first_page}");
    let cursor = first_page
        .str("next_cursor")
        .expect("a full page has a next cursor")
        .to_owned();
    let second_page = api
        .customer_orders(&customer, Some(2), Some(&cursor))
        .await
        .unwrap();
    assert_eq!(second_page.status, 200, "{second_page}");
    let second_items = second_page.body["items"].as_array().expect("items").clone();
    assert_eq!(second_items.len(), 1, "{second_page}");
    assert!(second_page.body["next_cursor"].is_null(), "{second_page}");
    let listed: Vec<&Value> = first_items.iter().chain(second_items.iter()).collect();
    let mut listed_ids: Vec<String> = listed
        .iter()
        .map(|item| {
            order_id_of(item)
                .expect("an item names its order")
                .to_owned()
        })
        .collect();
    // Newest first: the last placed order leads.
    assert_eq!(listed_ids[0], expected_ids[2], "{listed:?}");
    listed_ids.sort();
    expected_ids.sort();
    assert_eq!(listed_ids, expected_ids);
    let unknown_customer = api
        .customer_orders(&uuid::Uuid::new_v4().to_string(), None, None)
        .await
        .unwrap();
    assert_eq!(unknown_customer.status, 200, "{unknown_customer}");
    assert_eq!(unknown_customer.body["items"], serde_json::json!([]));

    // Cancel, then cancel again.
    let cancelled = api
        .cancel_order(&order_id, "changed my mind", &CommandOptions::waiting(20))
        .await
        .unwrap();
    assert_eq!(cancelled.status, 200, "{cancelled}");
    assert_eq!(cancelled.str("status"), Some("cancelled"), "{cancelled}");
    assert_eq!(cancelled.body["version"], 2, "{cancelled}");
    assert_eq!(cancelled.str("id"), Some(order_id.as_str()));
    let fetched = api.order(&order_id).await.unwrap();
    assert_eq!(fetched.str("status"), Some("cancelled"), "{fetched}");
    assert_eq!(fetched.body["version"], 2, "{fetched}");
    let twice = api
        .cancel_order(&order_id, "really", &CommandOptions::waiting(20))
        .await
        .unwrap();
    assert_eq!(twice.status, 409, "{twice}");
    assert!(twice.is_problem(), "{twice} {:?}", twice.content_type());
    assert_eq!(twice.code(), Some("already_cancelled"), "{twice}");

    // The key again, with another body: refused, nothing produced.
    let other_body = place_body(&customer, "EUR", &[("SKU-1", 3, 1250)]);
    let reused = api
        .place_order(&other_body, &CommandOptions::keyed(&key))
        .await
        .unwrap();
    assert_eq!(reused.status, 422, "{reused}");
    assert!(reused.is_problem(), "{reused}");

    // Garbage in, problem+json out.
    let malformed = api
        .command(
            "/v1/orders",
            "{\"customer_id\": ".to_owned(),
            &CommandOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(malformed.status, 400, "{malformed}");
    assert!(malformed.is_problem(), "{malformed}");
    let negative = api
        .place_order(
            &place_body(&customer, "EUR", &[("SKU-1", -1, 1250)]),
            &CommandOptions::waiting(5),
        )
        .await
        .unwrap();
    assert_eq!(negative.status, 422, "{negative}");
    assert!(negative.is_problem(), "{negative}");
    let unknown_currency = api
        .place_order(
            &place_body(&customer, "ABC", &[("SKU-1", 1, 1250)]),
            &CommandOptions::waiting(5),
        )
        .await
        .unwrap();
    assert_eq!(unknown_currency.status, 422, "{unknown_currency}");
    assert!(unknown_currency.is_problem(), "{unknown_currency}");
    let not_an_object = api
        .command(
            "/v1/orders",
            "[1, 2, 3]".to_owned(),
            &CommandOptions::default(),
        )
        .await
        .unwrap();
    assert!(
        (400..500).contains(&not_an_object.status),
        "{not_an_object}"
    );
    assert!(not_an_object.is_problem(), "{not_an_object}");
    let unknown_order = uuid::Uuid::new_v4().to_string();
    let missing = api.order(&unknown_order).await.unwrap();
    assert_eq!(missing.status, 404, "{missing}");
    assert!(missing.is_problem(), "{missing}");
    let not_a_uuid = api.order("not-a-uuid").await.unwrap();
    assert!((400..500).contains(&not_a_uuid.status), "{not_a_uuid}");
    assert!(not_a_uuid.is_problem(), "{not_a_uuid}");
    let cancel_missing = api
        .cancel_order(&unknown_order, "nope", &CommandOptions::waiting(20))
        .await
        .unwrap();
    assert_eq!(cancel_missing.status, 404, "{cancel_missing}");
    assert_eq!(
        cancel_missing.code(),
        Some("order_not_found"),
        "{cancel_missing}"
    );
    let unknown_command = api
        .command_status(&uuid::Uuid::new_v4().to_string())
        .await
        .unwrap();
    assert_eq!(unknown_command.status, 404, "{unknown_command}");
    assert!(unknown_command.is_problem(), "{unknown_command}");
    let wrong_type = api
        .command(
            "/v1/orders",
            serde_json::json!({"customer_id": customer, "currency": "EUR",
                "lines": [{"sku": "SKU-1", "quantity": "two", "unit_price": 1250}]})
            .to_string(),
            &CommandOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(wrong_type.status, 422, "{wrong_type}");
    assert!(wrong_type.is_problem(), "{wrong_type}");
    for query in ["limit=0", "limit=lots", "limit=100000", "cursor=%%%garbage"] {
        let listed = api
            .get(&format!("/v1/customers/{customer}/orders?{query}"))
            .await
            .unwrap();
        assert_eq!(listed.status, 400, "{query}: {listed}");
        assert!(listed.is_problem(), "{query}: {listed}");
    }
    // The server answers 413 without reading the body and closes the
    // connection: a client of its own, so no pooled connection is reused.
    let oversized = deployment
        .api()
        .unwrap()
        .command(
            "/v1/orders",
            format!("{{\"customer_id\": \"{}\"}}", "x".repeat(1024 * 1024)),
            &CommandOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(oversized.status, 413, "{oversized}");
    assert!(oversized.is_problem(), "{oversized}");

    // A stock client reads the log: Confluent wire format, and the schema id
    // resolves through the registry's REST API.
    let records = read_topic(
        deployment.bootstrap_servers(),
        &deployment.topic("orders.events"),
    )
    .await
    .unwrap();
    let placed_record = records
        .iter()
        .find(|record| record.key.as_deref() == Some(order_id.as_bytes()))
        .unwrap_or_else(|| {
            panic!(
                "no record keyed by order {order_id} among {} records",
                records.len()
            )
        });
    let payload = placed_record.payload.as_deref().expect("a value");
    assert!(payload.len() > 5, "{payload:?}");
    assert_eq!(payload[0], 0, "Confluent magic byte");
    let schema_id = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
    let schema = api
        .get(&format!(
            "{}/schemas/ids/{schema_id}",
            deployment.registry_url()
        ))
        .await
        .unwrap();
    assert_eq!(schema.status, 200, "{schema}");
    let schema_text = schema.str("schema").expect("the schema as a string");
    let parsed: Value = serde_json::from_str(schema_text).expect("the schema is JSON");
    assert_eq!(parsed["type"], "record", "{parsed}");
    let name = parsed["name"].as_str().expect("a named record");
    let full_name = match parsed["namespace"].as_str() {
        Some(namespace) if !name.contains('.') => format!("{namespace}.{name}"),
        _ => name.to_owned(),
    };
    let record_type = placed_record
        .header("record-type")
        .map(|value| String::from_utf8_lossy(value).into_owned());
    assert_eq!(
        Some(full_name.clone()),
        record_type,
        "the record-type header names the writer schema"
    );
    assert!(
        [
            "foldline.orders.OrderPlaced",
            "foldline.orders.OrderCancelled",
            "foldline.orders.CommandRejected"
        ]
        .contains(&full_name.as_str()),
        "{full_name}"
    );

    // The log folds to what the API served.
    let replay = deployment.replay().await.unwrap();
    assert!(replay.undecodable.is_empty(), "{:?}", replay.undecodable);
    assert!(replay.admitted_more_than_once().is_empty());
    let slot = replay
        .aggregate(&order_id)
        .expect("the order is in the log");
    assert_eq!(slot.version, 2);
    assert_eq!(
        slot.state.details().map(|details| details.status.as_str()),
        Some("cancelled")
    );
    assert_eq!(
        slot.state.details().map(|details| details.total),
        Some(2500)
    );
    assert_eq!(replay.admissions(&command_id).len(), 1);
}
