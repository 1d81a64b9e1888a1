//! The persister: a Kafka consumer group that writes issue events into
//! MySQL.
//!
//! It takes messages in batches, decodes each once (a message it cannot
//! decode goes to the dead-letter topic with the reason, and never stops the
//! partition), writes all issues of the batch with multi-row inserts in one
//! transaction (idempotent on UNIQUE(user_id, coupon_id), with
//! `remaining_quantity` recomputed in the same transaction), and only after
//! the commit stores the offsets (`enable.auto.offset.store=false`; stored
//! offsets are committed in the background and synchronously on shutdown).
//! While MySQL or the dead-letter topic is down it holds the batch and
//! retries with backoff; a consumer error in the middle of a batch ends the
//! batch there, and what was received is persisted, never dropped.
//!
//! Invariants kept here: 2 (UNIQUE key), 4 (offsets only after the rows are
//! committed: a crash replays, never skips), 7 (remaining = total - rows).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use coupon_core::coupons::{self, NewIssue};
use coupon_core::events::{Event, Payload};
use coupon_core::{metrics as names, Config};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
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
    dlq: FutureProducer,
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

/// What one batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersistReport {
    pub messages: usize,
    pub issues: usize,
    pub inserted: u64,
    pub dead_lettered: usize,
}

impl Persister {
    pub fn new(config: Arc<Config>, db: MySqlPool) -> anyhow::Result<Self> {
        // Static membership: after a crash, the restarted worker takes its
        // partitions back at once. Without it the dead member keeps them
        // until the coordinator evicts it, which on the local broker took
        // over a minute (worker kill -9 converged in 71 to 87 s, by the
        // scheduler's reconciliation; with it, in about 7 s).
        let consumer: StreamConsumer<LagGauge> =
            coupon_core::kafka::consumer_config(&config, &config.kafka_consumer_group)
                .set(
                    "group.instance.id",
                    format!("persister.{}", config.worker_id),
                )
                .set("statistics.interval.ms", "1000")
                .create_with_context(LagGauge)?;
        consumer.subscribe(&[config.kafka_topic.as_str()])?;
        let dlq = coupon_core::kafka::producer_config(&config).create()?;
        Ok(Self {
            config,
            db,
            consumer,
            dlq,
        })
    }

    async fn dead_letter(
        &self,
        payload: Option<&[u8]>,
        key: Option<&[u8]>,
        reason: &str,
    ) -> anyhow::Result<()> {
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
        self.dlq
            .send(record, Duration::from_secs(5))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("dead-letter topic: {e}"))?;
        metrics::counter!(names::DLQ_MESSAGES).increment(1);
        Ok(())
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
        let mut issues = Vec::new();
        for message in &batch {
            match Event::decode(message.payload()) {
                Ok(Event {
                    payload:
                        Payload::CouponIssued {
                            coupon_id,
                            issues: list,
                        },
                    ..
                }) => issues.extend(list.into_iter().filter_map(|issue| {
                    Some(NewIssue {
                        coupon: coupon_id,
                        user: issue.user_id,
                        issued_at: DateTime::<Utc>::from_timestamp_millis(issue.issued_at_ms)?,
                    })
                })),
                Err(e) => {
                    tracing::error!(
                        partition = message.partition(),
                        offset = message.offset(),
                        error = %e,
                        "undecodable event sent to the dead-letter topic"
                    );
                    let mut backoff = Duration::from_millis(100);
                    while let Err(dlq) = self
                        .dead_letter(message.payload(), message.key(), &e.to_string())
                        .await
                    {
                        tracing::warn!(error = format!("{dlq:#}"), retry_in = ?backoff, "dead-letter topic unreachable; retrying");
                        tokio::select! {
                            // Nothing stored: the batch is redelivered after restart.
                            _ = shutdown.cancelled() => return Ok(None),
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                    report.dead_lettered += 1;
                }
            }
        }
        report.issues = issues.len();

        let mut backoff = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            match coupons::persist_issues(&self.db, &issues).await {
                Ok(inserted) => {
                    report.inserted = inserted;
                    metrics::histogram!(names::PERSIST_DURATION)
                        .record(started.elapsed().as_secs_f64());
                    metrics::histogram!(names::PERSIST_BATCH_SIZE).record(issues.len() as f64);
                    metrics::counter!(names::PERSISTED_ROWS).increment(inserted);
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
