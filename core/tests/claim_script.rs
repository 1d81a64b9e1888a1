//! The Lua scripts against a real Redis: every claim outcome, mixed
//! batches, duplicates, stock at the edges, the daily limit across coupons
//! and days, idempotence, admission order and rate, the sold-out drain,
//! issues Redis forgot taken back, and delivered entries leaving the outbox.

use chrono::{Duration, Utc};
use coupon_core::daily::{day_of, Day};
use coupon_core::domain::{CouponId, UserId};
use coupon_core::scripts::{self, Claimant, CouponKeys, Enqueued, Outcome};
use coupon_core::testing::{redis_coupon, TestEnv};
use coupon_core::RedisStore;
use redis::AsyncCommands;

struct Fixture {
    redis: RedisStore,
    limit: u32,
}

impl Fixture {
    fn new(daily_limit: &str) -> Self {
        let env = TestEnv::unmigrated(&[("DAILY_LIMIT", daily_limit)]);
        Self {
            redis: RedisStore::new(&env.config).unwrap(),
            limit: env.config.daily_limit,
        }
    }

    fn today(&self) -> Day {
        day_of(Utc::now(), chrono_tz::Asia::Seoul)
    }

    /// Puts users straight into the admitted set, as admit.lua would.
    async fn admit(&self, coupon: u64, users: &[u64]) {
        let keys = CouponKeys::new(self.redis.keys(), CouponId(coupon));
        let mut conn = self.redis.conn().await.unwrap();
        for (i, user) in users.iter().enumerate() {
            let _: () = conn.zadd(&keys.admitted, *user, i as f64).await.unwrap();
        }
    }

    async fn claim_on(&self, coupon: u64, users: &[u64], day: &Day) -> Vec<(u64, Outcome)> {
        let ids: Vec<UserId> = users.iter().map(|u| UserId(*u)).collect();
        scripts::claim(
            &self.redis,
            CouponId(coupon),
            &ids,
            day,
            self.limit,
            Utc::now().timestamp_millis(),
        )
        .await
        .unwrap()
        .decided
        .into_iter()
        .map(|(u, o)| (u.0, o))
        .collect()
    }

    async fn claim(&self, coupon: u64, users: &[u64]) -> Vec<(u64, Outcome)> {
        self.admit(coupon, users).await;
        self.claim_on(coupon, users, &self.today()).await
    }

    async fn stock(&self, coupon: u64) -> i64 {
        let keys = CouponKeys::new(self.redis.keys(), CouponId(coupon));
        self.redis
            .conn()
            .await
            .unwrap()
            .get(&keys.stock)
            .await
            .unwrap()
    }

    async fn outbox_len(&self, coupon: u64) -> u64 {
        let keys = CouponKeys::new(self.redis.keys(), CouponId(coupon));
        self.redis
            .conn()
            .await
            .unwrap()
            .xlen(&keys.outbox)
            .await
            .unwrap()
    }
}

use Outcome::*;

#[tokio::test]
async fn every_outcome_in_one_mixed_batch() {
    let f = Fixture::new("1");
    redis_coupon(&f.redis, 1, 2, 100).await;
    redis_coupon(&f.redis, 2, 5, 100).await;
    // User 30 used today's limit on another coupon.
    assert_eq!(f.claim(2, &[30]).await, vec![(30, Issued)]);
    // User 10 holds coupon 1 already.
    assert_eq!(f.claim(1, &[10]).await, vec![(10, Issued)]);

    let decided = f.claim(1, &[10, 30, 20, 40, 50]).await;
    assert_eq!(
        decided,
        vec![
            (10, AlreadyIssued),
            (30, DailyLimit),
            (20, Issued),
            (40, SoldOut),
            (50, SoldOut)
        ]
    );
    assert_eq!(f.stock(1).await, 0);
    assert_eq!(f.outbox_len(1).await, 2, "one outbox entry per issue");

    let keys = CouponKeys::new(f.redis.keys(), CouponId(1));
    let mut conn = f.redis.conn().await.unwrap();
    let outcomes: std::collections::HashMap<String, u64> =
        conn.hgetall(&keys.outcomes).await.unwrap();
    assert_eq!(outcomes["issued"], 2);
    assert_eq!(outcomes["already_issued"], 1);
    assert_eq!(outcomes["daily_limit"], 1);
    assert_eq!(outcomes["sold_out"], 2);
    let sold_out: Option<String> = conn.hget(&keys.meta, "sold_out").await.unwrap();
    assert_eq!(
        sold_out.as_deref(),
        Some("1"),
        "the coupon is marked sold out"
    );
    let result: String = conn.hget(&keys.results, 30).await.unwrap();
    assert_eq!(result, "R:DAILY_LIMIT");
    let result: String = conn.hget(&keys.results, 20).await.unwrap();
    assert!(result.starts_with("I:"));
}

#[tokio::test]
async fn the_same_user_twice_in_one_batch_is_decided_once() {
    let f = Fixture::new("5");
    redis_coupon(&f.redis, 1, 10, 100).await;
    assert_eq!(f.claim(1, &[7, 7, 7]).await, vec![(7, Issued)]);
    assert_eq!(f.stock(1).await, 9);
    assert_eq!(f.outbox_len(1).await, 1);
}

#[tokio::test]
async fn stock_of_exactly_one_and_exactly_zero() {
    let f = Fixture::new("1");
    redis_coupon(&f.redis, 1, 1, 100).await;
    assert_eq!(f.claim(1, &[1, 2]).await, vec![(1, Issued), (2, SoldOut)]);
    assert_eq!(f.stock(1).await, 0);
    assert_eq!(f.claim(1, &[3]).await, vec![(3, SoldOut)]);
    assert_eq!(f.stock(1).await, 0, "never below zero");
    assert_eq!(f.outbox_len(1).await, 1);
}

#[tokio::test]
async fn the_reply_tells_the_stock_left_also_when_the_last_coupon_went_last() {
    let f = Fixture::new("5");
    redis_coupon(&f.redis, 1, 3, 100).await;
    let ids = |users: &[u64]| users.iter().map(|u| UserId(*u)).collect::<Vec<_>>();
    let claim = |users: Vec<UserId>| {
        let f = &f;
        async move {
            let day = f.today();
            let now = Utc::now().timestamp_millis();
            scripts::claim(&f.redis, CouponId(1), &users, &day, f.limit, now)
                .await
                .unwrap()
        }
    };

    f.admit(1, &[1]).await;
    let first = claim(ids(&[1])).await;
    assert_eq!(first.stock_left, Some(2));
    assert!(!first.sold_out());

    // The last two coupons go to the call's last two users: no SOLD_OUT
    // in the reply, yet the caller learns the coupon is gone.
    f.admit(1, &[2, 3]).await;
    let last = claim(ids(&[2, 3])).await;
    assert_eq!(last.decided, vec![(UserId(2), Issued), (UserId(3), Issued)]);
    assert_eq!(last.stock_left, Some(0));
    assert!(last.sold_out());

    // Nothing to decide: the script is not run and tells nothing.
    let none = claim(Vec::new()).await;
    assert_eq!(none, scripts::Claimed::default());
    assert!(!none.sold_out());
}

#[tokio::test]
async fn the_daily_limit_spans_coupons_and_resets_on_a_new_day() {
    let f = Fixture::new("2");
    for id in 1..=3 {
        redis_coupon(&f.redis, id, 10, 100).await;
    }
    assert_eq!(f.claim(1, &[5]).await, vec![(5, Issued)]);
    assert_eq!(f.claim(2, &[5]).await, vec![(5, Issued)]);
    assert_eq!(
        f.claim(3, &[5]).await,
        vec![(5, DailyLimit)],
        "third coupon on the same day"
    );

    // The caller passes the next day: the limit starts over.
    let tomorrow = day_of(Utc::now() + Duration::days(1), chrono_tz::Asia::Seoul);
    f.admit(3, &[5]).await;
    assert_eq!(f.claim_on(3, &[5], &tomorrow).await, vec![(5, Issued)]);

    // The day's counter expires by itself a little after the day ends.
    let key = scripts::daily_key(f.redis.keys(), UserId(5), &f.today().label);
    let ttl: i64 = f.redis.conn().await.unwrap().ttl(&key).await.unwrap();
    assert!(ttl > 0 && ttl as u64 <= f.today().ttl_secs, "ttl {ttl}");
}

#[tokio::test]
async fn a_second_call_with_the_same_batch_changes_nothing() {
    let f = Fixture::new("1");
    redis_coupon(&f.redis, 1, 2, 100).await;
    let first = f.claim(1, &[1, 2, 3]).await;
    assert_eq!(first, vec![(1, Issued), (2, Issued), (3, SoldOut)]);
    let again = f.claim_on(1, &[1, 2, 3], &f.today()).await;
    assert!(again.is_empty(), "already decided: {again:?}");
    assert_eq!(f.stock(1).await, 0);
    assert_eq!(f.outbox_len(1).await, 2);
}

async fn enqueue(f: &Fixture, coupon: u64, user: u64) -> Enqueued {
    scripts::enqueue(
        &f.redis,
        CouponId(coupon),
        UserId(user),
        &f.today().label,
        Utc::now().timestamp_millis(),
        f.limit,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn enqueue_keeps_the_first_place_and_answers_fast_rejections() {
    let f = Fixture::new("1");
    assert_eq!(enqueue(&f, 1, 1).await, Enqueued::NoCoupon);
    redis_coupon(&f.redis, 1, 1, 100).await;
    assert!(matches!(
        enqueue(&f, 1, 1).await,
        Enqueued::Waiting {
            rank: 0,
            joined: true,
            ..
        }
    ));
    assert!(matches!(
        enqueue(&f, 1, 2).await,
        Enqueued::Waiting {
            rank: 1,
            joined: true,
            ..
        }
    ));
    assert!(matches!(
        enqueue(&f, 1, 1).await,
        Enqueued::Waiting {
            rank: 0,
            joined: false,
            ..
        }
    ));

    let users = scripts::admit(
        &f.redis,
        CouponId(1),
        Utc::now().timestamp_millis() + 1000,
        10,
        10,
    )
    .await
    .unwrap();
    assert_eq!(users, vec![UserId(1), UserId(2)], "arrival order");
    assert_eq!(enqueue(&f, 1, 1).await, Enqueued::Admitted);
    f.claim_on(1, &[1, 2], &f.today()).await;
    assert!(matches!(enqueue(&f, 1, 1).await, Enqueued::Final(r) if r.starts_with("I:")));
    assert_eq!(
        enqueue(&f, 1, 2).await,
        Enqueued::Final("R:SOLD_OUT".into())
    );
    assert_eq!(
        enqueue(&f, 1, 3).await,
        Enqueued::SoldOut,
        "a newcomer after the stock is gone"
    );

    // Daily limit, before joining any line.
    redis_coupon(&f.redis, 2, 5, 100).await;
    assert_eq!(enqueue(&f, 2, 1).await, Enqueued::DailyLimit);
}

#[tokio::test]
async fn sold_out_call_tells_those_still_in_line_from_newcomers() {
    let f = Fixture::new("1");
    redis_coupon(&f.redis, 1, 1, 100).await;
    for user in [1, 2, 3] {
        assert!(matches!(
            enqueue(&f, 1, user).await,
            Enqueued::Waiting { joined: true, .. }
        ));
    }
    let now = Utc::now().timestamp_millis();
    let admitted = scripts::admit(&f.redis, CouponId(1), now + 1000, 1, 1)
        .await
        .unwrap();
    assert_eq!(admitted, vec![UserId(1)]);
    assert_eq!(f.claim_on(1, &[1], &f.today()).await, vec![(1, Issued)]);

    // Sold out, and users 2 and 3 are still in line (not drained yet): in
    // one call, each of them reads the final SOLD_OUT on their ticket and
    // each newcomer is turned away at the door.
    let day = f.today().label;
    let claimant = |user: u64| Claimant::new(f.redis.keys(), UserId(user), &day, now);
    let batch = [
        claimant(4),
        claimant(2),
        claimant(5),
        claimant(3),
        claimant(1),
    ];
    let answers = scripts::enqueue_many(&f.redis, CouponId(1), &batch, f.limit)
        .await
        .unwrap();
    assert_eq!(answers[0], Enqueued::SoldOut);
    assert_eq!(answers[1], Enqueued::Final("R:SOLD_OUT".into()));
    assert_eq!(answers[2], Enqueued::SoldOut);
    assert_eq!(answers[3], Enqueued::Final("R:SOLD_OUT".into()));
    assert!(matches!(&answers[4], Enqueued::Final(r) if r.starts_with("I:")));
}

#[tokio::test]
async fn a_holder_without_a_result_hears_already_issued_when_sold_out() {
    let f = Fixture::new("1");
    redis_coupon(&f.redis, 1, 1, 100).await;
    // As after Redis lost the coupon and activation warmed it from MySQL:
    // user 7 holds it, without a ticket result, and nothing is left.
    let keys = CouponKeys::new(f.redis.keys(), CouponId(1));
    let mut conn = f.redis.conn().await.unwrap();
    let _: () = conn.sadd(&keys.issued, 7).await.unwrap();
    let _: () = conn.set(&keys.stock, 0).await.unwrap();
    let _: () = conn.hset(&keys.meta, "sold_out", "1").await.unwrap();
    assert_eq!(enqueue(&f, 1, 7).await, Enqueued::AlreadyIssued);
    assert_eq!(enqueue(&f, 1, 8).await, Enqueued::SoldOut);
}

#[tokio::test]
async fn one_enqueue_call_answers_each_claimant_in_order() {
    let f = Fixture::new("1");
    redis_coupon(&f.redis, 1, 5, 100).await;
    // User 9 used today's one coupon on coupon 2.
    redis_coupon(&f.redis, 2, 5, 100).await;
    assert_eq!(f.claim(2, &[9]).await, vec![(9, Outcome::Issued)]);

    let day = f.today().label;
    let now = Utc::now().timestamp_millis();
    let claimant = |user: u64| Claimant::new(f.redis.keys(), UserId(user), &day, now);
    let batch = [
        claimant(1),
        claimant(2),
        claimant(1),
        claimant(9),
        claimant(3),
    ];
    let answers = scripts::enqueue_many(&f.redis, CouponId(1), &batch, f.limit)
        .await
        .unwrap();
    let waiting = |rank, joined| Enqueued::Waiting {
        rank,
        joined,
        rate: 100.0,
    };
    assert_eq!(
        answers,
        vec![
            waiting(0, true),
            waiting(1, true),
            waiting(0, false), // named twice: the first call's place
            Enqueued::DailyLimit,
            waiting(2, true),
        ]
    );
    // The same answers as one call per claim would give now.
    assert_eq!(enqueue(&f, 1, 2).await, waiting(1, false));
    assert_eq!(enqueue(&f, 1, 3).await, waiting(2, false));

    // A coupon Redis does not know: every claimant is told so.
    let unknown = scripts::enqueue_many(&f.redis, CouponId(3), &batch[..2], f.limit)
        .await
        .unwrap();
    assert_eq!(unknown, vec![Enqueued::NoCoupon, Enqueued::NoCoupon]);
    let none = scripts::enqueue_many(&f.redis, CouponId(1), &[], f.limit)
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn enqueue_refuses_coupons_outside_their_window() {
    let f = Fixture::new("1");
    let mut coupon = redis_coupon(&f.redis, 1, 5, 100).await;
    coupon.valid_from = Utc::now() + Duration::hours(1);
    coupon.valid_to = Utc::now() + Duration::hours(2);
    coupon_core::stock::warm_up_redis_only(&f.redis, &coupon, 100)
        .await
        .unwrap();
    assert_eq!(
        enqueue(&f, 1, 1).await,
        Enqueued::NotActive { expired: false }
    );
    coupon.valid_from = Utc::now() - Duration::hours(2);
    coupon.valid_to = Utc::now() - Duration::hours(1);
    coupon_core::stock::warm_up_redis_only(&f.redis, &coupon, 100)
        .await
        .unwrap();
    assert_eq!(
        enqueue(&f, 1, 1).await,
        Enqueued::NotActive { expired: true }
    );
}

#[tokio::test]
async fn admission_follows_the_rate_and_drains_at_once_when_sold_out() {
    let f = Fixture::new("1");
    redis_coupon(&f.redis, 1, 3, 10).await;
    for user in 1..=50 {
        enqueue(&f, 1, user).await;
    }
    let t0 = Utc::now().timestamp_millis();
    // The bucket starts full: one second's worth, 10 users.
    let first = scripts::admit(&f.redis, CouponId(1), t0, 1000, 1000)
        .await
        .unwrap();
    assert_eq!(first, (1..=10).map(UserId).collect::<Vec<_>>());
    // 300 ms later: 3 more (the 10 still admitted come back first).
    let next = scripts::admit(&f.redis, CouponId(1), t0 + 300, 1000, 1000)
        .await
        .unwrap();
    assert_eq!(next.len(), 13);
    assert_eq!(next[10..], [UserId(11), UserId(12), UserId(13)]);

    let ids: Vec<u64> = next.iter().map(|u| u.0).collect();
    let decided = f.claim_on(1, &ids, &f.today()).await;
    assert_eq!(decided.iter().filter(|(_, o)| *o == Issued).count(), 3);
    // Sold out: the rest of the line (37 users) comes at once, not at 10/s.
    let drained = scripts::admit(&f.redis, CouponId(1), t0 + 301, 1000, 1000)
        .await
        .unwrap();
    assert_eq!(drained.len(), 37);
}

#[tokio::test]
async fn remember_takes_back_only_what_redis_forgot() {
    let f = Fixture::new("5");
    redis_coupon(&f.redis, 1, 1, 100).await;
    let k = CouponKeys::new(f.redis.keys(), CouponId(1));
    let today = f.today();
    let at = Utc::now();
    let remember = |users: Vec<(UserId, chrono::DateTime<Utc>)>, coupon: u64| {
        let (redis, today) = (&f.redis, &today);
        async move {
            scripts::remember(
                redis,
                CouponId(coupon),
                &users,
                today,
                at.timestamp_millis(),
            )
            .await
            .unwrap()
        }
    };
    // User 1 holds the coupon in Redis; 2 was answered SOLD_OUT by a Redis
    // that had forgotten 3's issue, which took the last one.
    assert_eq!(f.claim(1, &[1]).await, vec![(1, Outcome::Issued)]);
    let mut conn = f.redis.conn().await.unwrap();
    let _: () = conn.hset(&k.results, 2, "R:SOLD_OUT").await.unwrap();
    let taken = remember(
        vec![
            (UserId(1), at),
            (UserId(2), at),
            (UserId(3), at - Duration::days(2)),
        ],
        1,
    )
    .await;
    assert_eq!(taken, vec![UserId(2), UserId(3)]);
    let (stock, results, sold_out): (i64, Vec<String>, Option<String>) = redis::pipe()
        .get(&k.stock)
        .hget(&k.results, &[1, 2, 3])
        .hget(&k.meta, "sold_out")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stock, 0, "never below zero");
    assert_eq!(results[1], format!("I:{}", at.timestamp_millis()));
    assert_eq!(
        results[2],
        format!("I:{}", (at - Duration::days(2)).timestamp_millis())
    );
    assert_eq!(sold_out.as_deref(), Some("1"));
    let daily = |user| scripts::daily_key(f.redis.keys(), UserId(user), &today.label);
    let (one, two, three): (u32, u32, Option<u32>) = redis::pipe()
        .get(daily(1))
        .get(daily(2))
        .get(daily(3))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        (one, two, three),
        (1, 1, None),
        "only today's issues count today"
    );

    // Again: nothing to take back. A coupon Redis does not know is left to
    // warm-up, no key created.
    assert!(remember(vec![(UserId(2), at)], 1).await.is_empty());
    assert!(remember(vec![(UserId(2), at)], 2).await.is_empty());
    let k2 = CouponKeys::new(f.redis.keys(), CouponId(2));
    let exists: u32 = redis::cmd("EXISTS")
        .arg(&[&k2.issued, &k2.stock, &k2.results])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn delivered_entries_leave_the_outbox_and_nothing_undelivered_does() {
    let f = Fixture::new("5");
    let coupon = CouponId(1);
    let outbox = CouponKeys::new(f.redis.keys(), coupon).outbox;
    let mut conn = f.redis.conn().await.unwrap();
    let mut ids = Vec::new();
    for user in 1..=8u64 {
        let id: String = conn.xadd(&outbox, "*", &[("user", user)]).await.unwrap();
        ids.push(id);
    }
    let _: () = conn.xgroup_create(&outbox, "relay", "0").await.unwrap();
    // Two relays: a reads 1-3, b reads 4-6; 7 and 8 are read by nobody yet.
    for (consumer, count) in [("a", 3), ("b", 3)] {
        let _: redis::streams::StreamReadReply = conn
            .xread_options(
                &[&outbox],
                &[">"],
                &redis::streams::StreamReadOptions::default()
                    .group("relay", consumer)
                    .count(count),
            )
            .await
            .unwrap();
    }
    // b is delivered first: a's older entries are still on their way, so
    // nothing before them may go, and b's wait behind them.
    let len = scripts::delivered(&f.redis, coupon, "relay", &ids[3..6])
        .await
        .unwrap();
    assert_eq!(len, 8, "the reply is the stream's length");
    assert_eq!(conn.xlen::<_, u64>(&outbox).await.unwrap(), 8);

    // a is delivered: everything the group was given is gone; the unread
    // entries stay, and are the whole stream.
    scripts::delivered(&f.redis, coupon, "relay", &ids[0..3])
        .await
        .unwrap();
    let left: redis::streams::StreamRangeReply = conn.xrange_all(&outbox).await.unwrap();
    let left: Vec<&str> = left.ids.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(left, [ids[6].as_str(), ids[7].as_str()]);

    // A repeated call (a relay that retried) changes nothing.
    let len = scripts::delivered(&f.redis, coupon, "relay", &ids[0..3])
        .await
        .unwrap();
    assert_eq!(len, 2);
    assert_eq!(conn.xlen::<_, u64>(&outbox).await.unwrap(), 2);
}
