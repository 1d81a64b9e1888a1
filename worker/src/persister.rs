//! The persister: a Kafka consumer group that writes issue events into
//! MySQL.
//!
//! It takes messages in batches and decodes each once. A message it cannot
//! decode goes to the dead-letter topic with the reason and never stops the
//! partition; so do the issues no row can hold (their coupon or user does
//! not exist, or their time is one MySQL cannot store), as an event of just
//! those issues, while the rest of their message is written. It writes all
//! issues of the batch with multi-row inserts in one transaction
//! (idempotent on UNIQUE(user_id, coupon_id), with `remaining_quantity`
//! recomputed in the same transaction), and only after the commit and the
//! dead letters stores the offsets (`enable.auto.offset.store=false`;
//! stored offsets are committed in the background and synchronously on
//! shutdown).
//! While MySQL or the dead-letter topic is down it holds the batch and
//! retries with backoff; a consumer error in the middle of a batch ends the
//! batch there, and what was received is persisted, never dropped.
//!
//! Invariants kept here: 2 (UNIQUE key), 4 (offsets only after the rows are
//! committed: a crash replays, never skips), 7 (remaining = total - rows).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coupon_core::coupons::{self, NewIssue};
use coupon_core::domain::CouponId;
use coupon_core::events::{Event, Issue, Payload};
use coupon_core::{kafka, metrics as names, Config};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::statistics::Statistics;
use rdkafka::Message;
use sqlx::MySqlPool;
use tokio_util::sync::CancellationToken;

/// Most messages per batch.
const MAX_BATCH: usize = 500;
/// How long a batch waits for more messages once it has one.
const LINGER: Duration = Duration::from_millis(20);

pub struct Persister {
    config: Arc<Config>,
    db: MySqlPool,
    consumer: StreamConsumer<LagGauge>,
    dlq: kafka::Producer,
}

/// Sets the consumer-lag gauge from librdkafka's statistics (every
/// second): messages between this persister's position and the high
/// watermark, summed over its assigned partitions, as the consumer's own
/// fetches saw them (no extra request to the broker). Left unset until the
/// group has assigned partitions, so the gauge's presence also says the
/// persister is consuming.
pub struct LagGauge;

impl ClientContext for LagGauge {
    fn stats(&self, statistics: Statistics) {
        let mut assigned = false;
        let mut lag = 0i64;
        for partition in statistics
            .topics
            .values()
            .flat_map(|topic| topic.partitions.values())
            .filter(|p| p.partition >= 0 && p.desired)
        {
            assigned = true;
            lag += partition.consumer_lag.max(0);
        }
        if assigned {
            metrics::gauge!(names::CONSUMER_LAG).set(lag as f64);
        }
    }
}

impl ConsumerContext for LagGauge {}

/// Most distinct reasons a dead-letter header spells out.
const REASONS_SHOWN: usize = 5;

/// The distinct `reasons`, joined with "; ", the first [`REASONS_SHOWN`] of
/// them and then how many more.
fn reasons_in_brief<'a>(reasons: impl Iterator<Item = &'a str>) -> String {
    let mut distinct: Vec<&str> = Vec::new();
    for reason in reasons {
        if !distinct.contains(&reason) {
            distinct.push(reason);
        }
    }
    let more = distinct.len().saturating_sub(REASONS_SHOWN);
    let mut brief = distinct[..distinct.len().min(REASONS_SHOWN)].join("; ");
    if more > 0 {
        brief.push_str(&format!("; and {more} more"));
    }
    brief
}

/// What one batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersistReport {
    pub messages: usize,
    pub issues: usize,
    pub inserted: u64,
    /// Messages sent to the dead-letter topic: undecodable ones, and
    /// events of the issues refused.
    pub dead_lettered: usize,
    /// Issues no row can hold (their coupon or user does not exist, or
    /// their time is out of range), sent to the dead-letter topic.
    pub refused: usize,
}

impl Persister {
    pub fn new(config: Arc<Config>, db: MySqlPool) -> anyhow::Result<Self> {
        // Static membership: after a crash, the restarted worker takes its
        // partitions back at once. Without it the dead member keeps them
        // until the coordinator evicts it, which on the local broker took
        // over a minute (worker kill -9 converged in 71 to 87 s, by the
        // scheduler's reconciliation; with it, in about 7 s).
        let consumer: StreamConsumer<LagGauge> =
            kafka::consumer_config(&config, &config.kafka_consumer_group)
                .set(
                    "group.instance.id",
                    format!("persister.{}", config.worker_id),
                )
                .set("statistics.interval.ms", "1000")
                .create_with_context(LagGauge)?;
        consumer.subscribe(&[config.kafka_topic.as_str()])?;
        let dlq = kafka::Producer::new(&config)?;
        Ok(Self {
            config,
            db,
            consumer,
            dlq,
        })
    }

    /// Sends `payload` to the dead-letter topic with `reason` in a header,
    /// retrying with backoff while the topic is unreachable. False when
    /// `shutdown` came first: nothing is stored, so the batch is redelivered
    /// after a restart.
    async fn dead_letter(
        &self,
        payload: Option<&[u8]>,
        key: Option<&[u8]>,
        reason: &str,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            let headers = OwnedHeaders::new().insert(Header {
                key: "reason",
                value: Some(reason),
            });
            let mut record =
                FutureRecord::<[u8], [u8]>::to(&self.config.kafka_dlq_topic).headers(headers);
            if let Some(payload) = payload {
                record = record.payload(payload);
            }
            if let Some(key) = key {
                record = record.key(key);
            }
            match self.dlq.send(record, Duration::from_secs(5)).await {
                Ok(()) => {
                    metrics::counter!(names::DLQ_MESSAGES).increment(1);
                    return true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "dead-letter topic unreachable; retrying");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Writes `issues` and, when that made fewer rows than it carried (a
    /// redelivery, or issues whose coupon or user does not exist), asks which
    /// of them no row can hold: (rows inserted, refused issues).
    async fn write(
        &self,
        issues: &[NewIssue],
    ) -> Result<(u64, Vec<(usize, coupons::Refusal)>), sqlx::Error> {
        let inserted = coupons::persist_issues(&self.db, issues).await?;
        let refused = if (inserted as usize) < issues.len() {
            coupons::refused_issues(&self.db, issues).await?
        } else {
            Vec::new()
        };
        Ok((inserted, refused))
    }

    /// Waits up to `wait` for a first message, takes what else is there
    /// (up to [`MAX_BATCH`]), persists the batch and stores its offsets.
    /// Returns `None` when no message came. Gives up (storing nothing) only
    /// when `shutdown` is cancelled while MySQL or the dead-letter topic is
    /// failing. A consumer error after the first message ends the batch
    /// there and the messages received are persisted: the consumer has
    /// moved past them, and a later batch's offsets would pass them over.
    pub async fn persist_once(
        &self,
        wait: Duration,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<PersistReport>> {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            m = tokio::time::timeout(wait, self.consumer.recv()) => match m {
                Err(_) => return Ok(None),
                Ok(m) => m?,
            },
        };
        let mut batch = vec![first];
        let deadline = Instant::now() + LINGER;
        while batch.len() < MAX_BATCH {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.consumer.recv()).await {
                Ok(Ok(m)) => batch.push(m),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error; persisting the batch so far");
                    break;
                }
                Err(_) => break,
            }
        }

        let mut report = PersistReport {
            messages: batch.len(),
            ..Default::default()
        };
        let mut events: Vec<Option<(CouponId, Vec<Issue>)>> = Vec::with_capacity(batch.len());
        for message in &batch {
            match Event::decode(message.payload()) {
                Ok(Event {
                    payload: Payload::CouponIssued { coupon_id, issues },
                    ..
                }) => events.push(Some((coupon_id, issues))),
                Err(e) => {
                    tracing::error!(
                        partition = message.partition(),
                        offset = message.offset(),
                        error = %e,
                        "undecodable event sent to the dead-letter topic"
                    );
                    let sent = self
                        .dead_letter(message.payload(), message.key(), &e.to_string(), shutdown)
                        .await;
                    if !sent {
                        return Ok(None);
                    }
                    report.dead_lettered += 1;
                    events.push(None);
                }
            }
        }

        // The issues a row can hold, each with the (message, issue) it came
        // from; per message, the issues refused and why.
        let mut issues = Vec::new();
        let mut origin = Vec::new();
        let mut refused: Vec<Vec<(usize, String)>> = vec![Vec::new(); batch.len()];
        for (m, event) in events.iter().enumerate() {
            let Some((coupon, list)) = event else {
                continue;
            };
            for (n, issue) in list.iter().enumerate() {
                match coupons::storable_time(issue.issued_at_ms) {
                    Some(issued_at) => {
                        issues.push(NewIssue {
                            coupon: *coupon,
                            user: issue.user_id,
                            issued_at,
                        });
                        origin.push((m, n));
                    }
                    None => refused[m].push((
                        n,
                        format!(
                            "issued_at_ms {} is not a time this system stores (1970 to 9999)",
                            issue.issued_at_ms
                        ),
                    )),
                }
            }
        }
        report.issues = issues.len();

        let mut backoff = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            match self.write(&issues).await {
                Ok((inserted, refusals)) => {
                    report.inserted = inserted;
                    metrics::histogram!(names::PERSIST_DURATION)
                        .record(started.elapsed().as_secs_f64());
                    metrics::histogram!(names::PERSIST_BATCH_SIZE).record(issues.len() as f64);
                    metrics::counter!(names::PERSISTED_ROWS).increment(inserted);
                    for (i, why) in refusals {
                        let (m, n) = origin[i];
                        refused[m].push((n, why.to_string()));
                    }
                    break;
                }
                Err(e) => {
                    metrics::counter!(names::PERSIST_ERRORS).increment(1);
                    tracing::warn!(error = %e, retry_in = ?backoff, issues = issues.len(), "MySQL write failed; retrying");
                    tokio::select! {
                        // Nothing stored: the batch is redelivered after restart.
                        _ = shutdown.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }

        // A message with refused issues goes to the dead-letter topic as an
        // event of just those issues, with the reasons; the rest of it is in
        // MySQL. Before the offsets move, so a crash here replays it.
        for (m, list) in refused.iter_mut().enumerate() {
            let Some((coupon, carried)) = &events[m] else {
                continue;
            };
            if list.is_empty() {
                continue;
            }
            // In the order the message carried them.
            list.sort_by_key(|(n, _)| *n);
            let reason = reasons_in_brief(list.iter().map(|(_, why)| why.as_str()));
            let message = &batch[m];
            tracing::error!(
                partition = message.partition(),
                offset = message.offset(),
                coupon = %coupon,
                refused = list.len(),
                reason = %reason,
                "issues no row can hold sent to the dead-letter topic"
            );
            let payload = Event::issued(
                *coupon,
                list.iter().map(|(n, _)| carried[*n].clone()).collect(),
            )
            .encode();
            if !self
                .dead_letter(Some(&payload), message.key(), &reason, shutdown)
                .await
            {
                return Ok(None);
            }
            report.refused += list.len();
            report.dead_lettered += 1;
        }

        // The rows are committed: now the offsets may move past them.
        let mut last: HashMap<(String, i32), i64> = HashMap::new();
        for message in &batch {
            let entry = last
                .entry((message.topic().to_owned(), message.partition()))
                .or_insert(-1);
            *entry = (*entry).max(message.offset());
        }
        for ((topic, partition), offset) in last {
            self.consumer.store_offset(&topic, partition, offset)?;
        }
        Ok(Some(report))
    }

    /// Runs until `shutdown`, then commits the stored offsets synchronously.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        while !shutdown.is_cancelled() {
            if let Err(e) = self
                .persist_once(Duration::from_millis(500), &shutdown)
                .await
            {
                tracing::warn!(error = format!("{e:#}"), "persister batch failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        self.commit();
        Ok(())
    }

    /// Commits what was stored; called on shutdown (and by tests that stop a
    /// persister in the middle of a stream).
    pub fn commit(&self) {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => tracing::info!("persister committed its offsets"),
            // Nothing stored yet is not an error worth more than a note.
            Err(e) => tracing::info!(error = %e, "persister commit on shutdown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reasons_in_brief_are_distinct_and_few() {
        assert_eq!(reasons_in_brief(["a", "b", "a"].into_iter()), "a; b");
        let many: Vec<String> = (0..8).map(|n| format!("user {n} does not exist")).collect();
        assert_eq!(
            reasons_in_brief(many.iter().map(String::as_str)),
            "user 0 does not exist; user 1 does not exist; user 2 does not exist; \
             user 3 does not exist; user 4 does not exist; and 3 more"
        );
    }
}
