//! Kafka client settings shared by the processes, the producer they share,
//! topic creation and a reachability probe.
//!
//! The local broker (tansu, memory engine) advances a partition's high
//! watermark by one per produce *batch*; a consumer group that resumes from
//! a committed offset would then skip records. With
//! `KAFKA_ONE_MESSAGE_PER_BATCH=true` (the local default) every record goes
//! in a batch of its own and offsets stay exact; real Kafka turns it off.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::ToBytes;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::Config;

/// Settings every client of ours shares.
pub fn base_config(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka_brokers)
        .set("socket.connection.setup.timeout.ms", "3000")
        .set("reconnect.backoff.max.ms", "2000")
        .set("topic.metadata.refresh.interval.ms", "10000");
    c
}

/// The idempotent producer: acks from all in-sync replicas, no duplicates on
/// retry, order kept per partition.
pub fn producer_config(config: &Config) -> ClientConfig {
    let mut c = base_config(config);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "none")
        .set(
            "message.timeout.ms",
            config.kafka_message_timeout.as_millis().to_string(),
        )
        .set("linger.ms", "2");
    if config.kafka_one_message_per_batch {
        c.set("batch.num.messages", "1");
    }
    c
}

/// The idempotent producer ([`producer_config`]), replaced by a new one when
/// it can no longer send.
///
/// That happens two ways, and in both every later send fails at once:
/// - the broker fences the producer. When a message timed out, librdkafka
///   bumps the producer epoch on its own, as Kafka allows an idempotent
///   producer to; tansu does not know the new epoch and answers every later
///   produce with `ProducerFenced` (seen in a fault run: the broker frozen
///   past the message timeout). librdkafka takes that for an error of the
///   message, not of the producer, so it never recovers by itself;
/// - librdkafka raises a fatal error (say `ProducerFenced` in answer to its
///   request for a producer id).
///
/// So after a failed send that left the producer fenced or fatally failed,
/// the next send goes to a new producer, with a producer id of its own.
/// Nothing is lost by it: the failed sends were failures to their callers,
/// who send again (the relay acknowledges an outbox entry only after its
/// delivery), and the persister's insert is idempotent.
#[derive(Clone)]
pub struct Producer {
    config: ClientConfig,
    current: Arc<Mutex<FutureProducer>>,
}

impl Producer {
    pub fn new(config: &Config) -> Result<Self, KafkaError> {
        let config = producer_config(config);
        let current = config.create()?;
        Ok(Self {
            config,
            current: Arc::new(Mutex::new(current)),
        })
    }

    /// The producer sends go to now.
    pub fn current(&self) -> FutureProducer {
        self.current.lock().expect("lock").clone()
    }

    /// Sends one record and waits for its delivery report; `queue_timeout`
    /// bounds the wait for room in the local queue.
    pub async fn send<K, P>(
        &self,
        record: FutureRecord<'_, K, P>,
        queue_timeout: Duration,
    ) -> Result<(), KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let producer = self.current();
        let error = match producer.send(record, queue_timeout).await {
            Ok(_) => return Ok(()),
            Err((error, _)) => error,
        };
        if let Some(why) = cannot_send_again(&producer, &error) {
            if self.replace(&producer, &why) {
                // Dropping the last handle waits for librdkafka's threads.
                tokio::task::spawn_blocking(move || drop(producer));
            }
        }
        Err(error)
    }

    /// Replaces `dead` with a new producer, unless another send replaced it
    /// already; true if this call did. If no new producer can be built,
    /// `dead` stays and the next failed send tries again.
    fn replace(&self, dead: &FutureProducer, why: &str) -> bool {
        let mut current = self.current.lock().expect("lock");
        if current.client().native_ptr() != dead.client().native_ptr() {
            return false;
        }
        match self.config.create() {
            Ok(fresh) => {
                tracing::warn!(
                    reason = why,
                    "the Kafka producer can no longer send; replaced it with a new one"
                );
                *current = fresh;
                true
            }
            Err(e) => {
                tracing::error!(reason = why, error = %e, "the Kafka producer can no longer send, and no new one could be built");
                false
            }
        }
    }

    /// Waits up to `timeout` for the records in flight to be delivered.
    pub fn flush(&self, timeout: Duration) {
        let _ = self.current().flush(timeout);
    }
}

/// Why `producer`, whose send failed with `error`, will fail every send
/// from now on; `None` if it may well succeed the next time.
fn cannot_send_again(producer: &FutureProducer, error: &KafkaError) -> Option<String> {
    if let Some((code, reason)) = producer.client().fatal_error() {
        return Some(format!("fatal error {code:?}: {reason}"));
    }
    match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::Fenced,
        ) => Some(error.to_string()),
        _ => None,
    }
}

/// A consumer that stores offsets only when told to, after the work is done
/// (`enable.auto.offset.store=false`), and commits stored offsets in the
/// background.
pub fn consumer_config(config: &Config, group: &str) -> ClientConfig {
    let mut c = base_config(config);
    c.set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "500")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Outlasts a broker that stalls for 10 s (the fault runs): with
        // 10 s the consumer dropped its own session, and its rejoin on the
        // local broker took a minute. A crashed worker that comes back is
        // not waited for either way (static membership, see the persister).
        .set("session.timeout.ms", "30000")
        .set("isolation.level", "read_committed");
    c
}

pub fn admin_client(
    config: &Config,
) -> Result<AdminClient<DefaultClientContext>, rdkafka::error::KafkaError> {
    base_config(config).create()
}

/// Creates the event and dead-letter topics if they are missing. Topics that
/// exist already are left as they are.
pub async fn ensure_topics(config: &Config) -> anyhow::Result<()> {
    let admin = admin_client(config)?;
    let topics = [config.kafka_topic.as_str(), config.kafka_dlq_topic.as_str()];
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                config.kafka_partitions,
                TopicReplication::Fixed(config.kafka_replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics(&new, &options).await?;
    for result in results {
        match result {
            Ok(topic) => {
                tracing::info!(%topic, partitions = config.kafka_partitions, "created Kafka topic")
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("creating Kafka topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// Asks the brokers for their metadata: answers only when at least one is
/// reachable. The call blocks, so it runs off the async threads.
pub async fn probe(
    admin: &std::sync::Arc<AdminClient<DefaultClientContext>>,
    timeout: Duration,
) -> Result<(), String> {
    let admin = admin.clone();
    tokio::task::spawn_blocking(move || {
        admin
            .inner()
            .fetch_metadata(None, timeout)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}
