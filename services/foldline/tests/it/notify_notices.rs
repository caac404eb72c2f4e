//! The order notices on the real broker, through the whole saga: users
//! register (some with a phone), orders are placed against the provider
//! simulator (paid, declined, for an erased user, for a stranger), paid
//! ones are cancelled (refunds), and the process running the notices'
//! relays and the delivery worker (with the gateway and every projector)
//! is killed with -9 mid-stream. Every notice must reach the fake
//! providers exactly once per event and channel, the erased and unknown
//! users must be recorded as skipped, and the analytics figures must
//! equal what the fakes counted. Then the SMS provider fails for good:
//! the notice's SMS exhausts its attempts into `notify.dlq` with its
//! reason while the emails behind it keep flowing.
//!
//! Both fakes honour `Idempotency-Key`: a repeated call is absorbed and
//! counted as such, so "accepted" counts notifications, and any second
//! notification for one event and channel (another id) would show.

use std::collections::{BTreeMap, BTreeSet};

use foldline_testcontainers::wait::poll_until;
use foldline_testcontainers::{Api, Behaviour, Deadline, FakeProvider};
use reqwest::Method;
use serde_json::json;
use tokio::task::JoinSet;

use crate::notices_support::{
    command, dead_letters_until, header_text, latency, notices, notification_ids, payments_env,
    place, quick_retries, register, report_latency, saga_deployment, spawn_front, spawn_processors,
    spawn_simulator, status_of,
};

struct Fakes {
    mail: FakeProvider,
    sms: FakeProvider,
}

fn front_env(fakes: &Fakes, simulator: &str) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "FOLDLINE__NOTIFY__EMAIL_PROVIDERS".to_owned(),
            format!("mail={}", fakes.mail.url()),
        ),
        (
            "FOLDLINE__NOTIFY__SMS_PROVIDERS".to_owned(),
            format!("primary={}", fakes.sms.url()),
        ),
        (
            "FOLDLINE__NOTIFY__PROVIDER_TIMEOUT_MS".to_owned(),
            "500".to_owned(),
        ),
    ];
    env.extend(quick_retries());
    env.extend(payments_env(simulator));
    env
}

/// An order the test expects notices for.
struct Expected {
    order: String,
    templates: Vec<&'static str>,
    phone: bool,
}

/// Waits until every expected notice is recorded as queued with one
/// notification per channel, and every one of them reached its fake;
/// returns the email and SMS notification ids.
async fn delivered(
    api: &Api,
    fakes: &Fakes,
    expected: &[Expected],
) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut emails, mut texts) = (BTreeSet::new(), BTreeSet::new());
    for wanted in expected {
        let recorded = notices(api, &wanted.order, wanted.templates.len()).await;
        let templates: BTreeSet<&str> = recorded
            .iter()
            .filter_map(|notice| notice["template"].as_str())
            .collect();
        assert_eq!(
            templates,
            wanted.templates.iter().copied().collect(),
            "{recorded:?}"
        );
        for notice in &recorded {
            assert_eq!(notice["outcome"], "queued", "{notice}");
            let ids = notification_ids(notice);
            assert_eq!(ids.len(), 1 + usize::from(wanted.phone), "{notice}");
            emails.insert(ids[0].clone());
            texts.extend(ids.get(1).cloned());
        }
    }
    let arrived = |fake: &FakeProvider, ids: &BTreeSet<String>| {
        let accepted = fake.accepted();
        ids.iter().all(|id| accepted.contains_key(id))
    };
    poll_until("every notice at the fakes", Deadline::secs(120), || async {
        Ok::<_, String>(
            (arrived(&fakes.mail, &emails) && arrived(&fakes.sms, &texts)).then_some(()),
        )
    })
    .await
    .unwrap();
    (emails, texts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_saga_outcome_is_told_once_per_channel_across_a_kill_9_and_analytics_counts_it() {
    let fakes = Fakes {
        mail: FakeProvider::start(true).await.unwrap(),
        sms: FakeProvider::start(true).await.unwrap(),
    };
    let deployment = saga_deployment("notify-notices");
    let (_simulator, simulator_url) = spawn_simulator(&deployment).await;
    let env = front_env(&fakes, &simulator_url);
    let mut front = spawn_front(&deployment, &env).await;
    let _processors = spawn_processors(&deployment);
    let api = deployment.api().unwrap();
    let prefix = deployment.prefix().to_owned();

    // Customers: two with a phone, two without; one erases their data.
    let mut customers = Vec::new();
    for index in 0..4 {
        customers.push((register(&api, &prefix, index, index < 2).await, index < 2));
    }
    let erased = register(&api, &prefix, 9, true).await;
    let erasure = api
        .send(
            Method::DELETE,
            &format!("/v1/users/{erased}/personal-data"),
            Some(json!({"requested_by": "dpo@example.org", "reason": "asked"}).to_string()),
            &[("prefer", "wait=5".to_owned())],
        )
        .await
        .unwrap();
    assert_eq!(erasure.str("personal_data"), Some("erased"), "{erasure}");
    let mut expected = Vec::new();

    // Paid and declined orders; the paid ones of the first two customers
    // are cancelled again (a refund each).
    let mut paid = Vec::new();
    for (index, (customer, phone)) in customers.iter().enumerate() {
        let order = place(
            &api,
            format!("{prefix}-paid-{index}"),
            customer.clone(),
            None,
        )
        .await;
        paid.push((order, *phone, index < 2));
        let declined = place(
            &api,
            format!("{prefix}-declined-{index}"),
            customer.clone(),
            Some("tok_chargeDeclined"),
        )
        .await;
        expected.push(Expected {
            order: declined,
            templates: vec!["order.rejected"],
            phone: *phone,
        });
    }
    for (order, phone, cancel) in paid {
        assert_eq!(status_of(&api, &order, &["confirmed"]).await, "confirmed");
        let mut templates = vec!["order.confirmed"];
        if cancel {
            command(
                &api,
                &format!("/v1/orders/{order}/cancel"),
                json!({"reason": "changed my mind"}),
                &format!("{order}-cancel"),
            )
            .await;
            templates.push("order.refunded");
        }
        expected.push(Expected {
            order,
            templates,
            phone,
        });
    }

    delivered(&api, &fakes, &expected).await;
    report_latency("before the kill", &latency(&api).await);

    // kill -9 of the front mid-stream, while orders are still placed and
    // their notices queued and delivered.
    let delivered_before = fakes.mail.accepted().len();
    let sender = {
        let (api, customers, prefix) = (api.clone(), customers.clone(), prefix.clone());
        tokio::spawn(async move {
            let mut placing = JoinSet::new();
            for index in 0..16 {
                let (api, (customer, phone)) = (api.clone(), customers[index % 4].clone());
                let key = format!("{prefix}-crash-{index}");
                placing.spawn(async move { (place(&api, key, customer, None).await, phone) });
            }
            let mut placed = Vec::new();
            while let Some(done) = placing.join_next().await {
                placed.push(done.unwrap());
            }
            placed
        })
    };
    poll_until("some crash-phase notices", Deadline::secs(120), || async {
        Ok::<_, String>((fakes.mail.accepted().len() >= delivered_before + 3).then_some(()))
    })
    .await
    .unwrap();
    front.kill9().unwrap();
    front = spawn_front(&deployment, &env).await;
    for (order, phone) in sender.await.unwrap() {
        status_of(&api, &order, &["confirmed"]).await;
        expected.push(Expected {
            order,
            templates: vec!["order.confirmed"],
            phone,
        });
    }

    // The erased user's and the stranger's orders are rejected by the
    // saga; their notices are recorded as skipped, nothing is sent.
    let for_erased = place(&api, format!("{prefix}-erased"), erased, None).await;
    let stranger = place(
        &api,
        format!("{prefix}-stranger"),
        "6f1c1a52-8d3e-4f4e-9a57-0c6b9e2f1d10".to_owned(),
        None,
    )
    .await;
    for (order, reason) in [
        (&for_erased, "recipient_erased"),
        (&stranger, "recipient_unknown"),
    ] {
        assert_eq!(status_of(&api, order, &["rejected"]).await, "rejected");
        let recorded = notices(&api, order, 1).await;
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        assert_eq!(recorded[0]["outcome"], "skipped", "{recorded:?}");
        assert_eq!(recorded[0]["reason"], reason, "{recorded:?}");
    }

    let (emails, texts) = delivered(&api, &fakes, &expected).await;
    for (fake, ids, what) in [(&fakes.mail, &emails, "email"), (&fakes.sms, &texts, "sms")] {
        let accepted = fake.accepted();
        let accepted_ids: BTreeSet<String> = accepted.keys().cloned().collect();
        assert_eq!(&accepted_ids, ids, "{what}: accepted exactly the notices");
        assert!(
            accepted.values().all(|times| *times == 1),
            "{what}: {accepted:?}"
        );
        eprintln!(
            "notify notices [{what}]: {} delivered once each, {} repeated calls absorbed by the key",
            ids.len(),
            fake.absorbed_repeats()
        );
    }

    // Analytics counts what the fakes counted.
    report_latency("after the kill", &latency(&api).await);
    let notices_sent = i64::try_from(emails.len() + texts.len()).unwrap();
    let summary = poll_until(
        "analytics counts the notices",
        Deadline::secs(60),
        || async {
            let summary = api
                .get("/v1/analytics/summary")
                .await
                .map_err(|e| e.to_string())?
                .body;
            let sums = &summary["sums"];
            let counted = (
                sums["notify.order_notices_sent"].as_i64(),
                sums["notify.sent.email.mail"].as_i64(),
                sums["notify.sent.sms.primary"].as_i64(),
            );
            match counted
                == (
                    Some(notices_sent),
                    Some(i64::try_from(emails.len()).unwrap()),
                    Some(i64::try_from(texts.len()).unwrap()),
                ) {
                true => Ok(Some(summary)),
                false => Err(format!("{counted:?}")),
            }
        },
    )
    .await
    .unwrap();
    let latency = &summary["latencies_ms"]["notify.order_to_notification_ms"];
    assert_eq!(latency["count"].as_i64(), Some(notices_sent), "{summary}");
    eprintln!(
        "notify notices: order → notification latency over {} notices (a kill -9 included): p50={}ms p90={}ms p99={}ms max={}ms",
        latency["count"], latency["p50"], latency["p90"], latency["p99"], latency["max"]
    );

    // The SMS provider fails for good: the next confirmation's SMS is
    // retried, then parked in notify.dlq with its reason; its email and the
    // emails of the orders behind it are delivered all the same.
    fakes.sms.set(Behaviour::Fail);
    let (phone_customer, _) = customers[0].clone();
    let failing = place(&api, format!("{prefix}-sms-down"), phone_customer, None).await;
    let behind = place(
        &api,
        format!("{prefix}-behind"),
        customers[2].0.clone(),
        None,
    )
    .await;
    let mut ids: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for order in [&failing, &behind] {
        let recorded = notices(&api, order, 1).await;
        ids.insert(order.as_str(), notification_ids(&recorded[0]));
    }
    let failed_sms = ids[failing.as_str()][1].clone();
    let flowing_emails = [
        ids[failing.as_str()][0].clone(),
        ids[behind.as_str()][0].clone(),
    ];
    poll_until(
        "the emails flow past the failing SMS",
        Deadline::secs(60),
        || async {
            let accepted = fakes.mail.accepted();
            Ok::<_, String>(
                flowing_emails
                    .iter()
                    .all(|id| accepted.contains_key(id))
                    .then_some(()),
            )
        },
    )
    .await
    .unwrap();
    let parked = dead_letters_until(&deployment, "the SMS parked as exhausted", |records| {
        records
            .iter()
            .filter(|record| record.header("dlq-cause") == Some(b"exhausted".as_slice()))
            .find(|record| record.key.as_deref() == Some(failed_sms.as_bytes()))
            .map(|record| header_text(record, "dlq-error"))
            .ok_or_else(|| format!("{} dead letters, none for {failed_sms}", records.len()))
    })
    .await;
    assert!(parked.contains("503"), "{parked}");
    poll_until("the SMS recorded failed", Deadline::secs(60), || async {
        let view = api
            .get(&format!("/v1/notifications/{failed_sms}"))
            .await
            .map_err(|error| error.to_string())?;
        match view.str("status") {
            Some("failed") => Ok(Some(())),
            _ => Err(view.to_string()),
        }
    })
    .await
    .unwrap();
    assert!(!fakes.sms.accepted().contains_key(&failed_sms));
    drop(front);
}
