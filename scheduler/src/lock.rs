//! One run per tick, across any number of scheduler processes.
//!
//! A job's tick (its period's number since the epoch) is claimed with
//! `SET NX`: the first scheduler to claim it runs the job, the others skip
//! that tick. A run also holds the job's lock, a key with a random token and
//! an expiry, released only by its owner (compare-and-delete in Lua), so a
//! run that outlasts its period is never overlapped by the next tick, and a
//! crashed owner's lock expires by itself.

use std::sync::LazyLock;
use std::time::Duration;

use coupon_core::RedisStore;
use redis::Script;

static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
    )
});

/// A held lock; release it with [`Lock::release`].
#[derive(Debug)]
pub struct Lock {
    key: String,
    token: String,
}

/// Claims `tick` of `job`; true for the one scheduler that should run it.
pub async fn claim_tick(
    redis: &RedisStore,
    job: &str,
    tick: i64,
    period: Duration,
) -> redis::RedisResult<bool> {
    let key = redis.keys().global(&format!("job:{job}:tick:{tick}"));
    let mut conn = redis.conn().await?;
    let claimed: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(std::process::id())
        .arg("NX")
        .arg("PX")
        .arg((period * 10).as_millis() as u64)
        .query_async(&mut conn)
        .await?;
    Ok(claimed.is_some())
}

/// Takes `job`'s lock for at most `ttl`, or `None` if another run holds it.
pub async fn acquire(
    redis: &RedisStore,
    job: &str,
    ttl: Duration,
) -> redis::RedisResult<Option<Lock>> {
    let key = redis.keys().global(&format!("lock:{job}"));
    let token = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
    let mut conn = redis.conn().await?;
    let taken: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(&token)
        .arg("NX")
        .arg("PX")
        .arg(ttl.as_millis() as u64)
        .query_async(&mut conn)
        .await?;
    Ok(taken.map(|_| Lock { key, token }))
}

impl Lock {
    /// Releases the lock if this run still owns it.
    pub async fn release(self, redis: &RedisStore) -> redis::RedisResult<bool> {
        let mut conn = redis.conn().await?;
        let deleted: i64 = RELEASE
            .key(&self.key)
            .arg(&self.token)
            .invoke_async(&mut conn)
            .await?;
        Ok(deleted == 1)
    }
}
