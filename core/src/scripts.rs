//! The Redis scripts of `lua/`, loaded once, with typed wrappers.
//!
//! Each script touches one coupon's keys (one hash tag, one slot), plus the
//! per-user daily counters. **Cluster note:** the daily counters span
//! coupons, so on Redis Cluster they live in other slots and a script that
//! names them fails with CROSSSLOT. This deployment runs one Redis primary,
//! where the scripts are exact. For a cluster, the plan is to give each
//! event's coupons one hash tag (a shop's storm runs on one slot, still one
//! script per batch), or to split the daily limit into a reservation on the
//! user's slot that the claim script confirms, with a compensating release
//! on rejection.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use redis::Script;

use crate::domain::{CouponId, UserId};
use crate::keys::Keys;
use crate::redis_store::RedisStore;

static ENQUEUE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/enqueue.lua")));
static ADMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../../lua/admit.lua")));
static EXPIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/expire.lua")));
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../../lua/claim.lua")));
static SOLD_OUT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/sold_out.lua")));
static DAILY_FLOOR: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/daily_floor.lua")));
static REMEMBER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/remember.lua")));
static DELIVERED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/delivered.lua")));

/// Names of one coupon's keys.
#[derive(Clone, Debug)]
pub struct CouponKeys {
    pub meta: String,
    pub stock: String,
    pub queue: String,
    pub admitted: String,
    pub results: String,
    pub issued: String,
    pub seq: String,
    pub outbox: String,
    pub outcomes: String,
}

impl CouponKeys {
    pub fn new(keys: &Keys, id: CouponId) -> Self {
        let k = |what| keys.coupon(id.0, what);
        Self {
            meta: k("meta"),
            stock: k("stock"),
            queue: k("queue"),
            admitted: k("admitted"),
            results: k("results"),
            issued: k("issued"),
            seq: k("seq"),
            outbox: k("outbox"),
            outcomes: k("outcomes"),
        }
    }
}

/// The per-user daily counter of `day` (`YYYYMMDD`).
pub fn daily_key(keys: &Keys, user: UserId, day: &str) -> String {
    keys.global(&format!("daily:{{u{user}}}:{day}"))
}

/// Calls per round trip of [`invoke_each`].
const SCRIPT_PAGE: usize = 500;

/// Calls `script` once per item, each call built by `call`, pipelined in
/// pages of [`SCRIPT_PAGE`]; returns the replies in item order. For the
/// scripts that take one user per call ([`raise_daily`], [`remember`]).
async fn invoke_each<T>(
    redis: &RedisStore,
    script: &Script,
    items: &[T],
    call: impl for<'s> Fn(&'s Script, &T) -> redis::ScriptInvocation<'s>,
) -> redis::RedisResult<Vec<u64>> {
    let mut conn = redis.conn().await?;
    // A pipeline sends EVALSHA without the fallback to EVAL: load first.
    script.prepare_invoke().load_async(&mut conn).await?;
    let mut replies = Vec::with_capacity(items.len());
    for page in items.chunks(SCRIPT_PAGE) {
        let mut pipe = redis::pipe();
        for item in page {
            pipe.invoke_script(&call(script, item));
        }
        replies.extend(pipe.query_async::<Vec<u64>>(&mut conn).await?);
    }
    Ok(replies)
}

/// Raises each user's daily counter of `day` to at least the given count
/// (`daily_floor.lua`, one key per call, so each call stays in its user's
/// slot), in pipelined pages. Returns how many counters were raised.
pub async fn raise_daily(
    redis: &RedisStore,
    day: &crate::daily::Day,
    counts: &[(UserId, u32)],
) -> redis::RedisResult<u64> {
    let replies = invoke_each(redis, &DAILY_FLOOR, counts, |script, (user, count)| {
        let mut call = script.key(daily_key(redis.keys(), *user, &day.label));
        call.arg(*count).arg(day.ttl_secs);
        call
    })
    .await?;
    Ok(replies.iter().sum())
}

/// Gives Redis back the issues of `coupon` that MySQL holds and Redis
/// forgot (`remember.lua`, one user per call, pipelined): each such user
/// is a holder again, the stock counts the coupon as handed out, and an
/// issue made `today` counts against the user's daily limit. Users Redis
/// knows are left alone. Returns the users Redis took back.
pub async fn remember(
    redis: &RedisStore,
    coupon: CouponId,
    issues: &[(UserId, DateTime<Utc>)],
    today: &crate::daily::Day,
    now_ms: i64,
) -> redis::RedisResult<Vec<UserId>> {
    let k = CouponKeys::new(redis.keys(), coupon);
    let replies = invoke_each(redis, &REMEMBER, issues, |script, (user, issued_at)| {
        let counts_today = (today.starts..today.ends).contains(issued_at);
        let mut call = script.prepare_invoke();
        call.key(&k.meta)
            .key(&k.stock)
            .key(&k.issued)
            .key(&k.results)
            .key(daily_key(redis.keys(), *user, &today.label))
            .arg(user.0)
            .arg(issued_at.timestamp_millis())
            .arg(if counts_today { "1" } else { "0" })
            .arg(today.ttl_secs)
            .arg(now_ms);
        call
    })
    .await?;
    Ok(issues
        .iter()
        .zip(replies)
        .filter(|(_, taken)| *taken == 1)
        .map(|((user, _), _)| *user)
        .collect())
}

/// What `enqueue.lua` answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Enqueued {
    NoCoupon,
    NotActive {
        expired: bool,
    },
    /// The stored result of a final ticket (`I:<ms>` or `R:<REASON>`).
    Final(String),
    AlreadyIssued,
    Admitted,
    /// In line; 0-based rank. `joined` is false when the user was in line
    /// already. `rate`: admissions per second observed (or configured).
    Waiting {
        rank: u64,
        joined: bool,
        rate: f64,
    },
    SoldOut,
    DailyLimit,
}

/// One user's claim for [`enqueue_many`].
#[derive(Clone, Debug)]
pub struct Claimant {
    pub user: UserId,
    /// The user's daily counter ([`daily_key`]) for the day of `now_ms`.
    pub daily_key: String,
    pub now_ms: i64,
}

impl Claimant {
    /// `user` claiming at `now_ms`, on `day` (`YYYYMMDD`) of the daily limit.
    pub fn new(keys: &Keys, user: UserId, day: &str, now_ms: i64) -> Self {
        Self {
            user,
            daily_key: daily_key(keys, user, day),
            now_ms,
        }
    }
}

/// Runs `enqueue.lua` once for one user.
pub async fn enqueue(
    redis: &RedisStore,
    coupon: CouponId,
    user: UserId,
    day: &str,
    now_ms: i64,
    daily_limit: u32,
) -> redis::RedisResult<Enqueued> {
    let claimant = Claimant::new(redis.keys(), user, day, now_ms);
    enqueue_one(redis, coupon, claimant, daily_limit).await
}

/// Runs `enqueue.lua` once for one claimant.
pub async fn enqueue_one(
    redis: &RedisStore,
    coupon: CouponId,
    claimant: Claimant,
    daily_limit: u32,
) -> redis::RedisResult<Enqueued> {
    let mut answers = enqueue_many(redis, coupon, &[claimant], daily_limit).await?;
    Ok(answers.pop().unwrap_or(Enqueued::NoCoupon))
}

/// Runs `enqueue.lua` once for several users of one coupon, answered in
/// order; one answer per claimant.
pub async fn enqueue_many(
    redis: &RedisStore,
    coupon: CouponId,
    claimants: &[Claimant],
    daily_limit: u32,
) -> redis::RedisResult<Vec<Enqueued>> {
    if claimants.is_empty() {
        return Ok(Vec::new());
    }
    let k = CouponKeys::new(redis.keys(), coupon);
    let mut invocation = ENQUEUE.prepare_invoke();
    invocation
        .key(&k.meta)
        .key(&k.stock)
        .key(&k.queue)
        .key(&k.admitted)
        .key(&k.results)
        .key(&k.issued)
        .key(&k.seq)
        .arg(daily_limit);
    for c in claimants {
        invocation.key(&c.daily_key).arg(c.user.0).arg(c.now_ms);
    }
    let mut conn = redis.conn().await?;
    let replies: Vec<Vec<redis::Value>> = invocation.invoke_async(&mut conn).await?;
    if replies.len() != claimants.len() {
        return Err(redis::RedisError::from((
            redis::ErrorKind::TypeError,
            "enqueue answered for another number of claimants",
            format!("{} answers for {}", replies.len(), claimants.len()),
        )));
    }
    replies.iter().map(|r| parse_enqueued(r)).collect()
}

fn parse_enqueued(reply: &[redis::Value]) -> redis::RedisResult<Enqueued> {
    let item = |i: usize| reply.get(i).cloned().unwrap_or(redis::Value::Nil);
    let kind: String = redis::from_redis_value(&item(0))?;
    let text = || redis::from_redis_value::<String>(&item(1)).unwrap_or_default();
    let rank = || redis::from_redis_value::<u64>(&item(1)).unwrap_or(0);
    let rate = redis::from_redis_value::<String>(&item(2))
        .ok()
        .and_then(|r| r.parse::<f64>().ok());
    Ok(match kind.as_str() {
        "NO_COUPON" => Enqueued::NoCoupon,
        "NOT_ACTIVE" => Enqueued::NotActive {
            expired: text() == "expired",
        },
        "FINAL" => Enqueued::Final(text()),
        "ALREADY_ISSUED" => Enqueued::AlreadyIssued,
        "ADMITTED" => Enqueued::Admitted,
        "WAITING" | "QUEUED" => Enqueued::Waiting {
            rank: rank(),
            joined: kind == "QUEUED",
            rate: rate.unwrap_or(0.0),
        },
        "SOLD_OUT" => Enqueued::SoldOut,
        "DAILY_LIMIT" => Enqueued::DailyLimit,
        other => {
            return Err(redis::RedisError::from((
                redis::ErrorKind::TypeError,
                "unexpected enqueue reply",
                other.to_owned(),
            )))
        }
    })
}

/// Runs `admit.lua`: the users to run the claim script for, in arrival order.
pub async fn admit(
    redis: &RedisStore,
    coupon: CouponId,
    now_ms: i64,
    max_batch: u32,
    drain_batch: u32,
) -> redis::RedisResult<Vec<UserId>> {
    let k = CouponKeys::new(redis.keys(), coupon);
    let mut conn = redis.conn().await?;
    let users: Vec<u64> = ADMIT
        .key(&k.meta)
        .key(&k.queue)
        .key(&k.admitted)
        .key(&k.stock)
        .arg(now_ms)
        .arg(max_batch)
        .arg(drain_batch)
        .invoke_async(&mut conn)
        .await?;
    Ok(users.into_iter().map(UserId).collect())
}

/// A claim outcome, as decided by `claim.lua`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Issued,
    AlreadyIssued,
    DailyLimit,
    SoldOut,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Issued => "issued",
            Outcome::AlreadyIssued => "already_issued",
            Outcome::DailyLimit => "daily_limit",
            Outcome::SoldOut => "sold_out",
        }
    }
}

/// What one `claim.lua` call decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claimed {
    /// The users decided in this call, in order (users already decided by
    /// an earlier call are left out).
    pub decided: Vec<(UserId, Outcome)>,
    /// The coupon's stock after the call; `None` when there was nothing to
    /// decide and the script was not run.
    pub stock_left: Option<i64>,
}

impl Claimed {
    /// Whether the coupon has no stock left after this call.
    pub fn sold_out(&self) -> bool {
        self.stock_left.is_some_and(|left| left <= 0)
    }
}

/// Runs `claim.lua` for one batch of admitted users.
pub async fn claim(
    redis: &RedisStore,
    coupon: CouponId,
    users: &[UserId],
    day: &crate::daily::Day,
    daily_limit: u32,
    now_ms: i64,
) -> redis::RedisResult<Claimed> {
    if users.is_empty() {
        return Ok(Claimed::default());
    }
    let k = CouponKeys::new(redis.keys(), coupon);
    let mut invocation = CLAIM.prepare_invoke();
    invocation
        .key(&k.meta)
        .key(&k.stock)
        .key(&k.admitted)
        .key(&k.results)
        .key(&k.issued)
        .key(&k.outbox)
        .key(&k.outcomes);
    for user in users {
        invocation.key(daily_key(redis.keys(), *user, &day.label));
    }
    invocation
        .arg(daily_limit)
        .arg(&day.label)
        .arg(day.ttl_secs)
        .arg(now_ms);
    for user in users {
        invocation.arg(user.0);
    }
    let mut conn = redis.conn().await?;
    let (stock_left, reply): (i64, Vec<(u64, String)>) = invocation.invoke_async(&mut conn).await?;
    let decided = reply
        .into_iter()
        .map(|(user, outcome)| {
            let outcome = match outcome.as_str() {
                "ISSUED" => Outcome::Issued,
                "ALREADY_ISSUED" => Outcome::AlreadyIssued,
                "DAILY_LIMIT" => Outcome::DailyLimit,
                "SOLD_OUT" => Outcome::SoldOut,
                _ => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::TypeError,
                        "unexpected claim outcome",
                        outcome,
                    )))
                }
            };
            Ok((UserId(user), outcome))
        })
        .collect::<redis::RedisResult<_>>()?;
    Ok(Claimed {
        decided,
        stock_left: Some(stock_left),
    })
}

/// Runs `expire.lua` once: marks the coupon expired and rejects up to
/// `chunk` waiting or admitted users with EXPIRED. Returns how many.
pub async fn expire(
    redis: &RedisStore,
    coupon: CouponId,
    now_ms: i64,
    chunk: u32,
) -> redis::RedisResult<u64> {
    let k = CouponKeys::new(redis.keys(), coupon);
    let mut conn = redis.conn().await?;
    EXPIRE
        .key(&k.meta)
        .key(&k.queue)
        .key(&k.admitted)
        .key(&k.results)
        .key(&k.outcomes)
        .arg(now_ms)
        .arg(chunk)
        .invoke_async(&mut conn)
        .await
}

/// What `sold_out.lua` answers for a coupon sold out with nobody left in
/// line: its end and how many users it holds a ticket result for and
/// counts as holders. Until the end, a different answer (or none) means
/// its users changed or it was cleaned up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoldOutCheck {
    pub valid_to_ms: i64,
    pub results: u64,
    pub holders: u64,
}

/// What [`sold_out_users`] found: a sold-out coupon with nobody left in
/// line, and every user it holds a ticket result for or counts as a holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoldOutUsers {
    /// The check the users were read between (the same before and after).
    pub check: SoldOutCheck,
    /// Sorted and without repeats, for `binary_search`.
    pub users: Vec<u64>,
}

/// Users read per `HSCAN`/`SSCAN` page. A page of 5,000 holds Redis for
/// about 2 to 3 ms (2.8 ms per `HSCAN` page and 2.1 ms per `SSCAN` page of
/// numeric users, in `INFO commandstats`), no longer than one claim script
/// call, however large the coupon; and a coupon of 10,000 takes a few
/// round trips, which under a storm's load take milliseconds each.
const SCAN_PAGE: usize = 5000;

/// `Some` once `coupon` is sold out with nobody waiting or admitted and at
/// most `max_users` ticket results plus holders; `None` otherwise (not
/// yet, too many to be worth keeping, or cleaned up or changed while being
/// read). `sold_out.lua` checks, then the users are read in pages.
///
/// The holders are read only when the results do not name them all: every
/// user with an `I:` result holds the coupon (`claim.lua` and
/// `remember.lua` add them to the issued set in the call that writes the
/// result, and nothing takes one out), so when there are as many of those
/// as holders, they are the holders. Holders without an `I:` result
/// (warmed from MySQL, or told `ALREADY_ISSUED` since) make the set worth
/// reading.
pub async fn sold_out_users(
    redis: &RedisStore,
    coupon: CouponId,
    max_users: u32,
) -> redis::RedisResult<Option<SoldOutUsers>> {
    let k = CouponKeys::new(redis.keys(), coupon);
    let mut conn = redis.conn().await?;
    let Some(seen) = check_sold_out(&mut conn, &k, max_users).await? else {
        return Ok(None);
    };
    // HSCAN answers field, value, field, value, ...
    let results = scan(&mut conn, "HSCAN", &k.results).await?;
    let mut users = Vec::with_capacity(results.len() / 2);
    let mut issued = Vec::new();
    for pair in results.chunks(2) {
        let user = parse_user(&pair[0])?;
        if pair.get(1).is_some_and(|v| v.starts_with("I:")) {
            issued.push(user);
        }
        users.push(user);
    }
    // A page may repeat a user (SCAN's promise is at least once).
    issued.sort_unstable();
    issued.dedup();
    if issued.len() as u64 != seen.holders {
        for user in scan(&mut conn, "SSCAN", &k.issued).await? {
            users.push(parse_user(&user)?);
        }
    }
    // The expiry job's clean-up removes every key at once, and nothing else
    // changes a sold-out coupon's results or holders but `remember.lua`,
    // which adds to both: the same answer after means the pages were read
    // whole.
    if check_sold_out(&mut conn, &k, max_users).await? != Some(seen) {
        return Ok(None);
    }
    users.sort_unstable();
    users.dedup();
    Ok(Some(SoldOutUsers { check: seen, users }))
}

/// `sold_out.lua` alone: `Some` while `coupon` is sold out with nobody
/// waiting or admitted and at most `max_users` ticket results plus
/// holders. One small call, for a gateway to see whether the users it
/// read are still the coupon's.
pub async fn sold_out_check(
    redis: &RedisStore,
    coupon: CouponId,
    max_users: u32,
) -> redis::RedisResult<Option<SoldOutCheck>> {
    let k = CouponKeys::new(redis.keys(), coupon);
    check_sold_out(&mut redis.conn().await?, &k, max_users).await
}

async fn check_sold_out(
    conn: &mut redis::aio::ConnectionManager,
    k: &CouponKeys,
    max_users: u32,
) -> redis::RedisResult<Option<SoldOutCheck>> {
    let answer: Option<(i64, u64, u64)> = SOLD_OUT
        .key(&k.meta)
        .key(&k.queue)
        .key(&k.admitted)
        .key(&k.results)
        .key(&k.issued)
        .arg(max_users)
        .invoke_async(conn)
        .await?;
    Ok(answer.map(|(valid_to_ms, results, holders)| SoldOutCheck {
        valid_to_ms,
        results,
        holders,
    }))
}

/// Every item of a `HSCAN` or `SSCAN` of `key`, in pages of [`SCAN_PAGE`].
async fn scan(
    conn: &mut redis::aio::ConnectionManager,
    command: &str,
    key: &str,
) -> redis::RedisResult<Vec<String>> {
    let mut items = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd(command)
            .arg(key)
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_PAGE)
            .query_async(conn)
            .await?;
        items.extend(page);
        if next == 0 {
            return Ok(items);
        }
        cursor = next;
    }
}

fn parse_user(text: &str) -> redis::RedisResult<u64> {
    text.parse().map_err(|_| {
        redis::RedisError::from((
            redis::ErrorKind::TypeError,
            "a user id in a coupon's results or holders is not a number",
            text.to_owned(),
        ))
    })
}

/// `delivered.lua`: the outbox entries `ids` of `coupon` are in Kafka:
/// acknowledged in `group`, and the stream trimmed up to its first entry
/// not delivered yet. Returns the stream's length after the trim.
pub async fn delivered(
    redis: &RedisStore,
    coupon: CouponId,
    group: &str,
    ids: &[String],
) -> redis::RedisResult<u64> {
    let k = CouponKeys::new(redis.keys(), coupon);
    let mut conn = redis.conn().await?;
    DELIVERED
        .key(&k.outbox)
        .arg(group)
        .arg(ids)
        .invoke_async(&mut conn)
        .await
}
