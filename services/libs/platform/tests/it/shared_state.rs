//! The gateway's shared state against a real `redis-server`: one winner
//! among racing reservations, counters per window, errors (not silent
//! misses) while Redis is down, and recovery once it is back.

use std::sync::Arc;
use std::time::Duration;

use foldline_platform::config::Secret;
use foldline_platform::shared_state::SharedState;
use foldline_testcontainers::{poll_until, Deadline, RedisServer};

fn shared(redis: &RedisServer) -> SharedState {
    SharedState::new(
        &Secret::new(redis.url()),
        &format!("test-{}:", uuid::Uuid::new_v4().simple()),
        Duration::from_millis(500),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_racing_reservations_exactly_one_wins_and_the_rest_read_its_value() {
    let redis = RedisServer::start().unwrap();
    let state = Arc::new(shared(&redis));
    let mut racers = tokio::task::JoinSet::new();
    for racer in 0..16u8 {
        let state = Arc::clone(&state);
        racers.spawn(async move {
            let answer = state
                .reserve("idempotency:k", &[racer], Duration::from_secs(60))
                .await
                .unwrap();
            (racer, answer)
        });
    }
    let answers = racers.join_all().await;
    let winners: Vec<u8> = answers
        .iter()
        .filter(|(_, answer)| answer.is_none())
        .map(|(racer, _)| *racer)
        .collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    for (_, answer) in &answers {
        if let Some(value) = answer {
            assert_eq!(value, &vec![winners[0]]);
        }
    }
    // Another name is another reservation.
    assert_eq!(
        state
            .reserve("idempotency:other", b"x", Duration::from_secs(60))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_start_a_window_and_say_when_it_ends() {
    let redis = RedisServer::start().unwrap();
    let state = shared(&redis);
    let window = Duration::from_secs(3600);
    for expected in 1..=3 {
        let counted = state.count("ratelimit:c", window).await.unwrap();
        assert_eq!(counted.count, expected);
        assert!(counted.resets_in <= window, "{counted:?}");
        assert!(counted.resets_in > window / 2, "{counted:?}");
    }
    assert_eq!(state.count("ratelimit:d", window).await.unwrap().count, 1);
    // A window that ended starts again at one.
    let short = Duration::from_millis(200);
    state.count("ratelimit:e", short).await.unwrap();
    let restarted = poll_until("the window ends", Deadline::secs(10), || {
        let state = &state;
        async move {
            let counted = state
                .count("ratelimit:e", short)
                .await
                .map_err(|error| error.to_string())?;
            Ok((counted.count == 1).then_some(counted))
        }
    })
    .await
    .unwrap();
    assert_eq!(restarted.count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_every_call_fails_and_after_it_works_again() {
    let mut redis = RedisServer::start().unwrap();
    let state = shared(&redis);
    assert_eq!(
        state
            .reserve("idempotency:before", b"1", Duration::from_secs(60))
            .await
            .unwrap(),
        None
    );
    redis.stop().unwrap();
    for _ in 0..5 {
        let reserved = state
            .reserve("idempotency:during", b"1", Duration::from_secs(60))
            .await;
        assert!(reserved.is_err_and(|error| error.is_transient()));
        assert!(state
            .count("ratelimit:during", Duration::from_secs(60))
            .await
            .is_err());
    }
    redis.start_again().unwrap();
    let after = poll_until("redis answers again", Deadline::secs(30), || {
        let state = &state;
        async move {
            state
                .reserve("idempotency:after", b"1", Duration::from_secs(60))
                .await
                .map(Some)
                .map_err(|error| error.to_string())
        }
    })
    .await
    .unwrap();
    assert_eq!(after, None);
}
