//! Claims share Redis round trips: every claim that arrives while the
//! previous `enqueue.lua` call is in flight goes into the next one.
//!
//! One task per gateway owns the calls. It takes whatever claims are
//! waiting (up to [`MAX_BATCH`]), groups them by coupon in arrival order,
//! runs one script call per coupon (all pipelined on the shared
//! connection) and hands each claim its own answer. When claims are few a
//! batch holds one claim and costs what a direct call costs; in a storm
//! the batches grow by themselves, and Redis runs one script per batch
//! instead of one per claim.
//!
//! Order is kept: claims join a coupon's line in the order they reached
//! this task, which is the order their requests got this far. Each call is
//! atomic on its own, exactly as a single claim's was, so the invariants
//! the script keeps hold per claim unchanged.

use std::sync::{Arc, OnceLock};

use coupon_core::domain::{CouponId, UserId};
use coupon_core::metrics as names;
use coupon_core::scripts::{self, Claimant, Enqueued};
use coupon_core::RedisStore;
use futures::future::join_all;
use tokio::sync::{mpsc, oneshot};

use super::sold_out::SoldOut;

/// At most this many claims per pass (a few hundred microseconds of Redis
/// time, so other clients of Redis are not held up for long).
pub const MAX_BATCH: usize = 256;

struct Job {
    coupon: CouponId,
    daily_limit: u32,
    claimant: Claimant,
    reply: oneshot::Sender<redis::RedisResult<Enqueued>>,
}

/// The handle in [`crate::state::AppState`]; the task starts on first use.
#[derive(Clone, Default)]
pub struct Enqueuer {
    jobs: Arc<OnceLock<mpsc::UnboundedSender<Job>>>,
    sold_out: Arc<SoldOut>,
}

impl Enqueuer {
    /// Whether `user`'s claim on `coupon` at `now_ms` is `SOLD_OUT` without
    /// asking Redis ([`super::sold_out`]); counted when it is.
    pub fn turns_away(&self, coupon: CouponId, user: UserId, now_ms: i64) -> bool {
        let away = self.sold_out.turns_away(coupon, user, now_ms);
        if away {
            metrics::counter!(names::CLAIMS_SOLD_OUT_IN_GATEWAY).increment(1);
        }
        away
    }

    /// `enqueue.lua` for one claim, sharing the call with the claims around it.
    pub async fn enqueue(
        &self,
        redis: &RedisStore,
        coupon: CouponId,
        claimant: Claimant,
        daily_limit: u32,
    ) -> redis::RedisResult<Enqueued> {
        let jobs = self.jobs.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(run(redis.clone(), self.sold_out.clone(), receiver));
            sender
        });
        let (reply, answer) = oneshot::channel();
        let job = Job {
            coupon,
            daily_limit,
            claimant,
            reply,
        };
        if let Err(mpsc::error::SendError(job)) = jobs.send(job) {
            // The task is gone (its runtime shut down): a call of its own,
            // boxed so that every claim's future does not carry its space.
            return Box::pin(scripts::enqueue_one(
                redis,
                coupon,
                job.claimant,
                daily_limit,
            ))
            .await;
        }
        answer.await.unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "the enqueue task stopped before answering",
            )))
        })
    }
}

async fn run(
    redis: RedisStore,
    sold_out: Arc<SoldOut>,
    mut receiver: mpsc::UnboundedReceiver<Job>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        metrics::histogram!(names::ENQUEUE_BATCH_SIZE).record(jobs.len() as f64);
        join_all(by_coupon(&mut jobs).map(|group| call(&redis, &sold_out, group))).await;
    }
}

/// The jobs grouped by coupon and daily limit, each group in arrival order.
fn by_coupon(jobs: &mut Vec<Job>) -> impl Iterator<Item = Vec<Job>> {
    let mut groups: Vec<Vec<Job>> = Vec::new();
    for job in jobs.drain(..) {
        let same =
            |g: &&mut Vec<Job>| g[0].coupon == job.coupon && g[0].daily_limit == job.daily_limit;
        match groups.iter_mut().find(same) {
            Some(group) => group.push(job),
            None => groups.push(vec![job]),
        }
    }
    groups.into_iter()
}

/// One script call for one coupon's jobs; every job gets its answer, or
/// the call's error. A `SOLD_OUT` among the answers tells `sold_out`.
async fn call(redis: &RedisStore, sold_out: &Arc<SoldOut>, group: Vec<Job>) {
    let (coupon, daily_limit) = (group[0].coupon, group[0].daily_limit);
    let (claimants, replies): (Vec<Claimant>, Vec<_>) =
        group.into_iter().map(|j| (j.claimant, j.reply)).unzip();
    match scripts::enqueue_many(redis, coupon, &claimants, daily_limit).await {
        Ok(answers) => {
            if answers.contains(&Enqueued::SoldOut) {
                sold_out.heard(redis, coupon);
            }
            for (reply, answer) in replies.into_iter().zip(answers) {
                // A claimant that went away (client disconnected) is still
                // in line, as after any claim; nobody to tell.
                let _ = reply.send(Ok(answer));
            }
        }
        Err(e) => {
            // The error is not Clone: each claim gets one of the same kind
            // and text.
            let text = e.to_string();
            for reply in replies {
                let copy = redis::RedisError::from((e.kind(), "enqueue failed", text.clone()));
                let _ = reply.send(Err(copy));
            }
        }
    }
}
