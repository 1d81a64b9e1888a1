//! The claim batcher against a real Redis: claims arriving together share
//! `enqueue.lua` calls, and each still gets its own exact answer.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use coupon_core::daily::{day_of, Day};
use coupon_core::domain::{CouponId, UserId};
use coupon_core::scripts::{self, Claimant, CouponKeys, Enqueued, SoldOutCheck, SoldOutUsers};
use coupon_core::testing::{eventually, redis_coupon, TestEnv};
use coupon_core::RedisStore;
use futures::future::join_all;
use gateway::claim::batch::Enqueuer;
use redis::AsyncCommands;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_two_coupons_gives_every_user_one_place() {
    const USERS: u64 = 400;
    let env = TestEnv::unmigrated(&[]);
    let redis = RedisStore::new(&env.config).unwrap();
    redis_coupon(&redis, 1, 10, 100).await;
    redis_coupon(&redis, 2, 10, 100).await;
    let enqueuer = Enqueuer::default();
    let day = day_of(Utc::now(), env.config.daily_limit_tz).label;
    let now = Utc::now().timestamp_millis();

    // Every user claims each coupon twice, all at once, interleaved, plus
    // claims on a coupon Redis does not know.
    let claims: Vec<(u64, u64)> = (0..USERS * 4)
        .map(|i| (1 + i % 2, 1 + (i / 2) % USERS))
        .chain((1..=5).map(|u| (3, u)))
        .collect();
    let answers = join_all(claims.iter().map(|&(coupon, user)| {
        let claimant = Claimant::new(redis.keys(), UserId(user), &day, now);
        enqueuer.enqueue(&redis, CouponId(coupon), claimant, env.config.daily_limit)
    }))
    .await;

    // Per coupon: each user holds one place, joined exactly once, and the
    // places are 0..USERS, each given once.
    let mut places: HashMap<(u64, u64), (u64, usize)> = HashMap::new();
    for (&(coupon, user), answer) in claims.iter().zip(answers) {
        match answer.unwrap() {
            Enqueued::Waiting { rank, joined, .. } => {
                let place = places.entry((coupon, user)).or_insert((rank, 0));
                assert_eq!(place.0, rank, "user {user} moved on coupon {coupon}");
                place.1 += usize::from(joined);
            }
            Enqueued::NoCoupon => assert_eq!(coupon, 3),
            other => panic!("coupon {coupon} user {user}: {other:?}"),
        }
    }
    for coupon in [1, 2] {
        let mut ranks: Vec<u64> = places
            .iter()
            .filter(|((c, _), _)| *c == coupon)
            .map(|(_, (rank, joined))| {
                assert_eq!(*joined, 1, "joined once");
                *rank
            })
            .collect();
        ranks.sort_unstable();
        assert_eq!(ranks, (0..USERS).collect::<Vec<_>>(), "coupon {coupon}");
    }
}

/// One gateway's claims on one coupon, over a test's own Redis keys, all
/// made at one moment.
struct Claims<'a> {
    redis: &'a RedisStore,
    enqueuer: Enqueuer,
    id: CouponId,
    limit: u32,
    day: Day,
    now: i64,
}

impl<'a> Claims<'a> {
    fn new(env: &TestEnv, redis: &'a RedisStore, id: CouponId) -> Self {
        Self {
            redis,
            enqueuer: Enqueuer::default(),
            id,
            limit: env.config.daily_limit,
            day: day_of(Utc::now(), env.config.daily_limit_tz),
            now: Utc::now().timestamp_millis(),
        }
    }

    fn claimant(&self, user: u64) -> Claimant {
        Claimant::new(self.redis.keys(), UserId(user), &self.day.label, self.now)
    }

    /// `user`'s claim through the gateway's enqueuer.
    async fn claim(&self, user: u64) -> Enqueued {
        let claimant = self.claimant(user);
        self.enqueuer
            .enqueue(self.redis, self.id, claimant, self.limit)
            .await
            .unwrap()
    }

    /// `user`'s claim straight to `enqueue.lua`: Redis's own answer.
    async fn direct(&self, user: u64) -> Enqueued {
        let claimant = self.claimant(user);
        scripts::enqueue_many(self.redis, self.id, &[claimant], self.limit)
            .await
            .unwrap()
            .remove(0)
    }

    fn turns_away(&self, user: u64) -> bool {
        self.enqueuer.turns_away(self.id, UserId(user), self.now)
    }

    /// Newcomers from `first` on claim, each hearing `SOLD_OUT` from Redis,
    /// until the gateway has read the coupon's set and answers them itself.
    async fn until_answered_in_gateway(&self, first: u64) {
        let mut newcomer = first;
        eventually(
            "the gateway to answer the sold-out coupon",
            Duration::from_secs(10),
            || {
                newcomer += 1;
                let user = newcomer;
                async move {
                    assert_eq!(self.claim(user).await, Enqueued::SoldOut);
                    self.turns_away(user + 1).then_some(())
                }
            },
        )
        .await;
    }
}

/// Once a coupon is sold out with nobody left in line, the gateway answers
/// claims by users without a ticket result itself, exactly as Redis would;
/// users with a result still get it from Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_coupon_with_an_empty_line_is_answered_in_the_gateway() {
    let env = TestEnv::unmigrated(&[]);
    let redis = RedisStore::new(&env.config).unwrap();
    let coupon = redis_coupon(&redis, 1, 1, 100).await;
    let g = Claims::new(&env, &redis, coupon.id);
    let (id, day, limit, now) = (g.id, &g.day, g.limit, g.now);

    // Users 1 to 3 in line; user 1 gets the only coupon.
    for user in [1, 2, 3] {
        assert!(matches!(
            g.claim(user).await,
            Enqueued::Waiting { joined: true, .. }
        ));
    }
    let admitted = scripts::admit(&redis, id, now + 1000, 1, 1).await.unwrap();
    assert_eq!(admitted, vec![UserId(1)]);
    scripts::claim(&redis, id, &admitted, day, limit, now)
        .await
        .unwrap();

    // Sold out, users 2 and 3 still in line: a newcomer hears SOLD_OUT from
    // Redis, but nothing is answered here while anyone is in line, however
    // often it looks.
    for newcomer in 100..110 {
        assert_eq!(g.claim(newcomer).await, Enqueued::SoldOut);
        assert!(!g.turns_away(newcomer));
    }
    assert_eq!(g.claim(2).await, Enqueued::Final("R:SOLD_OUT".into()));

    // The line drained: the gateway answers newcomers from the next look on.
    let drained = scripts::admit(&redis, id, now + 2000, 1, 100)
        .await
        .unwrap();
    assert_eq!(drained, vec![UserId(2), UserId(3)]);
    scripts::claim(&redis, id, &drained, day, limit, now)
        .await
        .unwrap();
    g.until_answered_in_gateway(200).await;

    // Newcomers are turned away here; users with a result are not, and
    // their answers, like everyone's, are Redis's own.
    for user in [1, 2, 3] {
        assert!(!g.turns_away(user), "user {user}");
    }
    for user in [1, 2, 3, 4, 5, 100] {
        assert_eq!(g.claim(user).await, g.direct(user).await, "user {user}");
    }
    assert!(matches!(g.claim(1).await, Enqueued::Final(r) if r.starts_with("I:")));
    assert_eq!(g.claim(3).await, Enqueued::Final("R:SOLD_OUT".into()));
    assert!(g.turns_away(4));
    // Once the coupon's window ends, Redis answers again.
    let valid_to = coupon.valid_to.timestamp_millis();
    assert!(g.enqueuer.turns_away(id, UserId(4), valid_to - 1));
    assert!(!g.enqueuer.turns_away(id, UserId(4), valid_to));
}

/// Reconciliation giving Redis back an issue it had lost adds a holder to
/// a sold-out coupon: within a check the gateway stops answering for it,
/// the user hears their issue from Redis, and the next `SOLD_OUT` reads the
/// set again, with them in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_redis_takes_back_is_answered_by_redis_again() {
    let env = TestEnv::unmigrated(&[]);
    let redis = RedisStore::new(&env.config).unwrap();
    let (coupon, _) = sold_out_coupon(&redis, 1, &[(1, "I:1")], &[1]).await;
    let g = Claims::new(&env, &redis, coupon.id);
    g.until_answered_in_gateway(100).await;
    assert!(g.turns_away(7));

    // Reconciliation found user 7's row in MySQL, unknown to Redis.
    let issued_at = Utc::now();
    let taken = scripts::remember(&redis, g.id, &[(UserId(7), issued_at)], &g.day, g.now)
        .await
        .unwrap();
    assert_eq!(taken, vec![UserId(7)]);
    eventually(
        "the gateway to see the coupon's users changed",
        gateway::claim::sold_out::RECHECK * 10,
        || async { (!g.turns_away(7)).then_some(()) },
    )
    .await;
    assert!(!g.turns_away(300), "all go to Redis");
    let issue = Enqueued::Final(format!("I:{}", issued_at.timestamp_millis()));
    assert_eq!(g.claim(7).await, issue);

    g.until_answered_in_gateway(300).await;
    assert!(!g.turns_away(7));
    assert_eq!(g.claim(7).await, issue);
}

/// Coupon `n`, sold out in Redis with these ticket results and holders.
async fn sold_out_coupon(
    redis: &RedisStore,
    n: u64,
    results: &[(u64, &str)],
    holders: &[u64],
) -> (coupon_core::coupons::Coupon, CouponKeys) {
    let coupon = redis_coupon(redis, n, 1, 100).await;
    let keys = CouponKeys::new(redis.keys(), coupon.id);
    let mut conn = redis.conn().await.unwrap();
    let _: () = conn.hset(&keys.meta, "sold_out", "1").await.unwrap();
    let _: () = conn.set(&keys.stock, 0).await.unwrap();
    let _: () = conn.hset_multiple(&keys.results, results).await.unwrap();
    let _: () = conn.sadd(&keys.issued, holders).await.unwrap();
    (coupon, keys)
}

/// The set the gateway keeps: users with a result and holders, only once
/// nobody is in line, and only when it is small enough to keep.
#[tokio::test]
async fn the_sold_out_set_names_results_and_holders_and_only_when_complete() {
    let env = TestEnv::unmigrated(&[]);
    let redis = RedisStore::new(&env.config).unwrap();
    let mut conn = redis.conn().await.unwrap();
    // Holders: user 1 with a result, user 4 without one (warmed from MySQL).
    let results = [(1, "I:1"), (2, "R:SOLD_OUT"), (3, "R:SOLD_OUT")];
    let (coupon, keys) = sold_out_coupon(&redis, 1, &results, &[1, 4]).await;
    let id = coupon.id;

    let found = scripts::sold_out_users(&redis, id, 5).await.unwrap();
    assert_eq!(
        found,
        Some(SoldOutUsers {
            check: SoldOutCheck {
                valid_to_ms: coupon.valid_to.timestamp_millis(),
                results: 3,
                holders: 2,
            },
            users: vec![1, 2, 3, 4]
        })
    );
    assert_eq!(scripts::sold_out_users(&redis, id, 4).await.unwrap(), None);
    // Someone still in line: not yet.
    let _: () = conn.zadd(&keys.queue, 9, 1).await.unwrap();
    assert_eq!(scripts::sold_out_users(&redis, id, 5).await.unwrap(), None);

    // A larger coupon is read whole, over many pages, its holders without
    // a result too.
    let results: Vec<(u64, &str)> = (1..=12_000).map(|u| (u * 2, "R:SOLD_OUT")).collect();
    let holders: Vec<u64> = (1..=1200).map(|u| u * 3).collect();
    let (large, _) = sold_out_coupon(&redis, 2, &results, &holders).await;
    let found = scripts::sold_out_users(&redis, large.id, 20_000)
        .await
        .unwrap()
        .unwrap();
    let mut wanted: Vec<u64> = results.iter().map(|(u, _)| *u).chain(holders).collect();
    wanted.sort_unstable();
    wanted.dedup();
    assert_eq!(found.users, wanted);

    // Every holder with an issued result: the results name them all (the
    // set is then not read; the answer is the same).
    let results: Vec<(u64, &str)> = (1..=6000)
        .map(|u| (u, if u % 2 == 0 { "I:1" } else { "R:SOLD_OUT" }))
        .collect();
    let holders: Vec<u64> = (1..=3000).map(|u| u * 2).collect();
    let (issued, keys) = sold_out_coupon(&redis, 3, &results, &holders).await;
    let found = scripts::sold_out_users(&redis, issued.id, 20_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.users, (1..=6000).collect::<Vec<u64>>());
    // One holder told ALREADY_ISSUED since, and one without a result: the
    // set is read, and the one without a result is named too.
    let _: () = conn
        .hset(&keys.results, 2, "R:ALREADY_ISSUED")
        .await
        .unwrap();
    let _: () = conn.sadd(&keys.issued, 6001).await.unwrap();
    let found = scripts::sold_out_users(&redis, issued.id, 20_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.users, (1..=6001).collect::<Vec<u64>>());
}
