//! Restarts and outages: a persister that dies mid-stream, a relay that dies
//! holding entries, Kafka unreachable for a while, one coupon's outbox
//! broken beside a healthy one. In each case every issued claim (of the
//! healthy coupon, in the last) becomes exactly one row. And events that
//! carry issues no row can hold: those go to the dead-letter topic, the
//! rest become rows. And a relay whose Kafka producer was fenced: it
//! builds a new one, and nothing is lost.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::Stack;
use coupon_core::domain::{CouponId, UserId};
use coupon_core::events::{Event, Issue, Payload};
use coupon_core::scripts::{self, CouponKeys};
use coupon_core::testing::{dead_port, eventually};
use coupon_core::Config;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Message, Offset, TopicPartitionList};
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;
use worker::relay::{Relayed, GROUP, RECLAIM_IDLE};
use worker::{Admitter, Persister, Relay};

const DEADLINE: Duration = Duration::from_secs(60);

/// Puts every user in the coupon's line and lets the admitter decide them
/// all, so the outbox holds one entry per issue.
async fn issue_all(stack: &Stack, coupon: CouponId, users: &[(UserId, String)]) {
    let day = coupon_core::daily::day_of(Utc::now(), stack.env.config.daily_limit_tz);
    for (user, _) in users {
        scripts::enqueue(
            &stack.state.redis,
            coupon,
            *user,
            &day.label,
            Utc::now().timestamp_millis(),
            1,
        )
        .await
        .unwrap();
    }
    let admitter = Admitter::new(
        Arc::new(stack.env.config.clone()),
        stack.state.redis.clone(),
    );
    let keys = CouponKeys::new(stack.state.redis.keys(), coupon);
    eventually("every user decided", DEADLINE, || async {
        admitter.admit_once(coupon).await.unwrap();
        let mut conn = stack.state.redis.conn().await.unwrap();
        let waiting: u64 = conn.zcard(&keys.queue).await.unwrap();
        let admitted: u64 = conn.zcard(&keys.admitted).await.unwrap();
        (waiting + admitted == 0).then_some(())
    })
    .await;
}

async fn outbox_len(stack: &Stack, coupon: CouponId) -> u64 {
    let keys = CouponKeys::new(stack.state.redis.keys(), coupon);
    stack
        .state
        .redis
        .conn()
        .await
        .unwrap()
        .xlen(&keys.outbox)
        .await
        .unwrap()
}

/// A new persister persists the coupon's issues: exactly `rows` rows, and
/// every invariant holds.
async fn persist_all(stack: &Stack, config: Arc<Config>, coupon: CouponId, rows: u64) {
    let persister = Persister::new(config, stack.state.db.clone()).unwrap();
    persist_until(stack, &persister, coupon, rows).await;
    assert_eq!(stack.rows(coupon).await, rows);
    stack.assert_invariants(&[coupon]).await;
}

async fn persist_until(stack: &Stack, persister: &Persister, coupon: CouponId, rows: u64) {
    let never = CancellationToken::new();
    eventually(&format!("{rows} rows"), DEADLINE, || async {
        // As the worker's loop does: an error (the consumer's, while the
        // broker is busy) is tried again.
        if let Err(e) = persister
            .persist_once(Duration::from_millis(200), &never)
            .await
        {
            eprintln!("persist_once failed, trying again: {e:#}");
        }
        (stack.rows(coupon).await >= rows).then_some(())
    })
    .await;
}

/// The first `n` messages of the dead-letter topic, each as (payload, the
/// `reason` header).
async fn dead_letters(config: &Config, n: usize) -> Vec<(Vec<u8>, String)> {
    let dlq: rdkafka::consumer::StreamConsumer = coupon_core::kafka::consumer_config(
        config,
        &format!("{}-dlq-check", config.kafka_consumer_group),
    )
    .create()
    .unwrap();
    rdkafka::consumer::Consumer::subscribe(&dlq, &[config.kafka_dlq_topic.as_str()]).unwrap();
    let mut letters = Vec::with_capacity(n);
    while letters.len() < n {
        let dead = tokio::time::timeout(DEADLINE, dlq.recv())
            .await
            .expect("a dead letter within the deadline")
            .unwrap();
        let reason = dead
            .headers()
            .and_then(|headers| headers.iter().find(|h| h.key == "reason"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
            .expect("a reason header");
        letters.push((dead.payload().unwrap_or_default().to_vec(), reason));
    }
    letters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persister_that_dies_mid_stream_loses_nothing_and_doubles_nothing() {
    let stack = Stack::start(&[]).await;
    let coupon = stack.coupon(300, 1000).await;
    let users = stack.users(300).await;
    let config = &stack.env.config;

    // 30 events of 10 issues; every fifth event repeats the one before it
    // (a redelivery), and one message is not an event at all.
    let producer: FutureProducer = coupon_core::kafka::producer_config(config)
        .create()
        .unwrap();
    let now = Utc::now().timestamp_millis();
    let mut send = Vec::new();
    for (n, chunk) in users.chunks(10).enumerate() {
        let issues = chunk
            .iter()
            .map(|(u, _)| Issue {
                user_id: *u,
                issued_at_ms: now,
                outbox_id: format!("{n}-0"),
            })
            .collect();
        let payload = Event::issued(coupon, issues).encode();
        send.push(payload.clone());
        if n % 5 == 4 {
            send.push(payload);
        }
        if n == 12 {
            send.push(b"{\"this is\": \"not an event\"}".to_vec());
        }
    }
    for payload in &send {
        producer
            .send(
                FutureRecord::to(&config.kafka_topic)
                    .key(&coupon.to_string())
                    .payload(payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    let first = Persister::new(Arc::new(config.clone()), stack.state.db.clone()).unwrap();
    persist_until(&stack, &first, coupon, 100).await;
    // Dies: no commit, whatever it stored is lost with it.
    drop(first);

    let second = Persister::new(Arc::new(config.clone()), stack.state.db.clone()).unwrap();
    persist_until(&stack, &second, coupon, 300).await;
    assert_eq!(stack.rows(coupon).await, 300);
    let distinct: i64 =
        sqlx::query_scalar("SELECT COUNT(DISTINCT user_id) FROM coupon_issue WHERE coupon_id = ?")
            .bind(coupon.0)
            .fetch_one(&stack.state.db)
            .await
            .unwrap();
    assert_eq!(distinct, 300);
    assert_eq!(stack.remaining(coupon).await, 0);

    // The message that was not an event went to the dead-letter topic.
    let dead = dead_letters(config, 1).await;
    assert_eq!(dead[0].0, b"{\"this is\": \"not an event\"}");
    assert!(dead[0].1.contains("not a JSON event"), "{}", dead[0].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_no_row_can_hold_are_dead_lettered_and_the_rest_is_written() {
    let stack = Stack::start(&[]).await;
    let coupon = stack.coupon(10, 1000).await;
    let users = stack.users(3).await;
    let config = &stack.env.config;
    let (ghost_user, ghost_coupon) = (
        UserId(9_000_000_000_000_000),
        CouponId(9_000_000_000_000_001),
    );
    let now = Utc::now().timestamp_millis();
    let issue = |user: UserId, issued_at_ms: i64| Issue {
        user_id: user,
        issued_at_ms,
        outbox_id: "1-0".into(),
    };
    // One event holding a good issue beside three that no row can hold, one
    // for a coupon that does not exist, then a good event after them.
    let mixed = Event::issued(
        coupon,
        vec![
            issue(users[0].0, now),
            issue(ghost_user, now),
            issue(users[1].0, 400_000_000_000_000),
            issue(users[2].0, i64::MAX),
        ],
    );
    let unknown = Event::issued(ghost_coupon, vec![issue(users[0].0, now)]);
    let after = Event::issued(coupon, vec![issue(users[2].0, now)]);
    let producer: FutureProducer = coupon_core::kafka::producer_config(config)
        .create()
        .unwrap();
    for event in [&mixed, &unknown, &after] {
        let Payload::CouponIssued { coupon_id, .. } = &event.payload;
        producer
            .send(
                FutureRecord::to(&config.kafka_topic)
                    .key(&coupon_id.to_string())
                    .payload(&event.encode()),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    let persister = Persister::new(Arc::new(config.clone()), stack.state.db.clone()).unwrap();
    let never = CancellationToken::new();
    let give_up = std::time::Instant::now() + DEADLINE;
    let (mut refused, mut dead_lettered) = (0, 0);
    while refused < 4 || stack.rows(coupon).await < 2 {
        assert!(
            std::time::Instant::now() < give_up,
            "timed out: {refused} refused"
        );
        match persister
            .persist_once(Duration::from_millis(200), &never)
            .await
        {
            Ok(Some(report)) => {
                refused += report.refused;
                dead_lettered += report.dead_lettered;
            }
            Ok(None) => {}
            Err(e) => eprintln!("persist_once failed, trying again: {e:#}"),
        }
    }
    assert_eq!((refused, dead_lettered), (4, 2));
    // The good issues are rows with their own times, and nothing else is.
    assert_eq!(stack.rows(coupon).await, 2);
    assert_eq!(stack.remaining(coupon).await, 8);
    let mut holders = coupon_core::coupons::holders(&stack.state.db, coupon)
        .await
        .unwrap();
    holders.sort();
    assert_eq!(holders, vec![users[0].0, users[2].0]);
    let ghost_rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM coupon_issue WHERE coupon_id = ? OR user_id = ?")
            .bind(ghost_coupon.0)
            .bind(ghost_user.0)
            .fetch_one(&stack.state.db)
            .await
            .unwrap();
    assert_eq!(ghost_rows, 0);

    // The dead-letter topic holds each refused issue once, with why.
    let mut letters: Vec<(Event, String)> = dead_letters(config, 2)
        .await
        .into_iter()
        .map(|(payload, reason)| (Event::decode(Some(&payload)).unwrap(), reason))
        .collect();
    letters.sort_by_key(|(event, _)| {
        let Payload::CouponIssued { coupon_id, .. } = &event.payload;
        *coupon_id
    });
    let (event, reason) = &letters[0];
    let Payload::CouponIssued { issues: sent, .. } = &mixed.payload;
    assert_eq!(event, &Event::issued(coupon, sent[1..].to_vec()));
    assert_eq!(
        reason,
        &format!(
            "user {ghost_user} does not exist; \
             issued_at_ms 400000000000000 is not a time this system stores (1970 to 9999); \
             issued_at_ms {} is not a time this system stores (1970 to 9999)",
            i64::MAX
        )
    );
    assert_eq!(
        letters[1],
        (unknown, format!("coupon {ghost_coupon} does not exist"))
    );
}

/// A stack with one coupon issued to `n` users, all still in its outbox.
async fn issued_into_the_outbox(n: u32) -> (Stack, CouponId, Vec<(UserId, String)>) {
    let stack = Stack::start(&[]).await;
    let coupon = stack.coupon(n, 1000).await;
    let users = stack.users(n as usize).await;
    issue_all(&stack, coupon, &users).await;
    assert_eq!(outbox_len(&stack, coupon).await, u64::from(n));
    (stack, coupon, users)
}

/// Reads the first `count` entries of the coupon's outbox into the relays'
/// group ([`GROUP`]) as `consumer`, which then dies holding them (pending, not acked).
async fn hold_entries(stack: &Stack, coupon: CouponId, consumer: &str, count: usize) {
    let keys = CouponKeys::new(stack.state.redis.keys(), coupon);
    let mut conn = stack.state.redis.conn().await.unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&keys.outbox)
        .arg(GROUP)
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    let options = redis::streams::StreamReadOptions::default()
        .group(GROUP, consumer)
        .count(count);
    let held: redis::streams::StreamReadReply = conn
        .xread_options(&[&keys.outbox], &[">"], &options)
        .await
        .unwrap();
    assert_eq!(held.keys[0].ids.len(), count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_dies_holding_entries_is_taken_over() {
    let (stack, coupon, _) = issued_into_the_outbox(200).await;

    let config = Arc::new(stack.env.config.clone());
    // A relay reads 120 entries and dies before producing them.
    hold_entries(&stack, coupon, "dead-relay", 120).await;

    // A new relay takes them over once they have been idle long enough.
    let successor = Relay::new(config.clone(), stack.state.redis.clone())
        .unwrap()
        .with_reclaim_idle(Duration::from_millis(50));
    eventually("the outbox drained", DEADLINE, || async {
        successor.relay_coupon(coupon).await.unwrap();
        (outbox_len(&stack, coupon).await == 0).then_some(())
    })
    .await;

    persist_all(&stack, config, coupon, 200).await;
}

/// A worker killed between reading outbox entries and acknowledging them
/// leaves them pending under its relay's name; restarted under the same
/// `WORKER_ID`, its relay carries them in its first call, not after
/// [`RECLAIM_IDLE`] (kept at its full length here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restarted_under_its_name_carries_what_it_held_at_once() {
    let (stack, coupon, _) = issued_into_the_outbox(150).await;

    let config = Arc::new(stack.env.config.clone());
    // The relay of the worker that died had read 90 entries.
    hold_entries(&stack, coupon, &Relay::consumer_name(&config), 90).await;

    let successor = Relay::new(config.clone(), stack.state.redis.clone()).unwrap();
    let first = successor.relay_coupon(coupon).await.unwrap();
    assert_eq!(
        first,
        Relayed {
            delivered: 90,
            backlog: Some(60)
        },
        "the held entries go first, without waiting {RECLAIM_IDLE:?}"
    );
    let second = successor.relay_coupon(coupon).await.unwrap();
    assert_eq!(second.delivered, 60);
    assert_eq!(outbox_len(&stack, coupon).await, 0);

    persist_all(&stack, config, coupon, 150).await;
}

/// An idempotent producer the broker fenced can never send again: tansu
/// fenced the relay's in a fault run (ops/chaos, the broker frozen past
/// the message timeout, after which librdkafka bumps the producer epoch on
/// its own and tansu refuses the new epoch), and that relay failed every
/// send after it. The real broker does that only by chance, so here the
/// fencing comes from librdkafka's own mock cluster, both ways librdkafka
/// sees it: as a fatal error (the producer's request for a producer id
/// refused) and as the error of a produce request. Redis is the real one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_producer_was_fenced_builds_a_new_one_and_loses_nothing() {
    let (stack, coupon, users) = issued_into_the_outbox(100).await;

    let mock = MockCluster::new(1).unwrap();
    let mut config = stack.env.config.clone();
    config.kafka_brokers = mock.bootstrap_servers();
    mock.create_topic(&config.kafka_topic, 1, 1).unwrap();
    mock.request_errors(
        RDKafkaApiKey::InitProducerId,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED],
    );
    let config = Arc::new(config);
    let relay = Relay::new(config.clone(), stack.state.redis.clone()).unwrap();
    let first = relay.producer().current();
    eventually("the producer fatally fenced", DEADLINE, || async {
        first.client().fatal_error().map(|_| ())
    })
    .await;

    // The batch fails, nothing leaves the outbox, and the next batch goes
    // to a new producer.
    let error = relay.relay_coupon(coupon).await.unwrap_err();
    assert!(
        format!("{error:#}").contains("producing to Kafka"),
        "{error:#}"
    );
    assert_eq!(outbox_len(&stack, coupon).await, 100);
    let second = relay.producer().current();
    assert_ne!(second.client().native_ptr(), first.client().native_ptr());
    assert!(second.client().fatal_error().is_none());

    // The new producer's first produce request is fenced.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED],
    );
    let error = relay.relay_coupon(coupon).await.unwrap_err();
    assert!(format!("{error:#}").contains("ProducerFenced"), "{error:#}");
    assert_eq!(outbox_len(&stack, coupon).await, 100);
    let third = relay.producer().current();
    assert_ne!(third.client().native_ptr(), second.client().native_ptr());

    eventually("the outbox drained", DEADLINE, || async {
        let _ = relay.relay_coupon(coupon).await;
        (outbox_len(&stack, coupon).await == 0).then_some(())
    })
    .await;

    // Every issued user is on the topic.
    let consumer: StreamConsumer = coupon_core::kafka::consumer_config(&config, "fenced-check")
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset(&config.kafka_topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&partitions).unwrap();
    let mut relayed = HashSet::new();
    while relayed.len() < users.len() {
        let message = tokio::time::timeout(DEADLINE, consumer.recv())
            .await
            .expect("the relayed issues on the topic")
            .unwrap();
        let event = Event::decode(message.payload()).unwrap();
        let Payload::CouponIssued { coupon_id, issues } = event.payload;
        assert_eq!(coupon_id, coupon);
        relayed.extend(issues.iter().map(|i| i.user_id));
    }
    let issued: HashSet<UserId> = users.iter().map(|(u, _)| *u).collect();
    assert_eq!(relayed, issued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_kafka_is_unreachable_claims_are_answered_and_rows_arrive_later() {
    let stack = Stack::start(&[]).await;
    let coupon = stack.coupon(50, 1000).await;
    let users = stack.users(80).await;

    // Kafka is down for the relay; the gateway and admitter carry on.
    let mut down = stack.env.config.clone();
    down.kafka_brokers = format!("127.0.0.1:{}", dead_port());
    down.kafka_message_timeout = Duration::from_millis(1000);
    let down = Arc::new(down);
    for (_, token) in &users {
        let (status, body) = stack.claim(coupon, token).await;
        assert!(matches!(status, 202 | 410), "{status}: {body}");
    }
    let admitter = Admitter::new(down.clone(), stack.state.redis.clone());
    eventually("stock handed out", DEADLINE, || async {
        admitter.admit_once(coupon).await.unwrap();
        (outbox_len(&stack, coupon).await == 50).then_some(())
    })
    .await;
    let stuck = Relay::new(down, stack.state.redis.clone()).unwrap();
    assert!(
        stuck.relay_coupon(coupon).await.is_err(),
        "no broker, no delivery"
    );
    assert_eq!(
        outbox_len(&stack, coupon).await,
        50,
        "nothing lost while Kafka is down"
    );
    // A claim is still answered at once.
    let (status, _) = stack.claim(coupon, &users[0].1).await;
    assert_eq!(status, 200);

    // Kafka is back: the worker delivers what waited.
    let worker = stack.spawn_worker();
    stack.wait_rows(coupon, 50, DEADLINE).await;
    worker.stop().await;
    assert_eq!(outbox_len(&stack, coupon).await, 0);
    stack.assert_invariants(&[coupon]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_coupon_whose_outbox_is_broken_does_not_hold_up_the_others() {
    let stack = Stack::start(&[]).await;
    let broken = stack.coupon(10, 1000).await;
    let coupon = stack.coupon(100, 1000).await;
    let users = stack.users(100).await;
    issue_all(&stack, coupon, &users).await;
    assert_eq!(outbox_len(&stack, coupon).await, 100);

    // The other coupon's outbox key holds a string: every stream command
    // on it fails (WRONGTYPE).
    let keys = CouponKeys::new(stack.state.redis.keys(), broken);
    let mut conn = stack.state.redis.conn().await.unwrap();
    let _: () = conn.set(&keys.outbox, "not a stream").await.unwrap();

    let config = Arc::new(stack.env.config.clone());
    let relay = Relay::new(config.clone(), stack.state.redis.clone()).unwrap();
    assert!(
        relay.relay_coupon(broken).await.is_err(),
        "the broken outbox fails on its own"
    );
    eventually("the good outbox drained", DEADLINE, || async {
        let delivered = relay.relay_once().await;
        assert!(
            delivered.is_ok(),
            "one broken coupon failed the pass: {delivered:?}"
        );
        (outbox_len(&stack, coupon).await == 0).then_some(())
    })
    .await;

    persist_all(&stack, config, coupon, 100).await;
}
