//! Kafka client settings shared by the processes, topic creation and a
//! reachability probe.
//!
//! The local broker (tansu, memory engine) advances a partition's high
//! watermark by one per produce *batch*; a consumer group that resumes from
//! a committed offset would then skip records. With
//! `KAFKA_ONE_MESSAGE_PER_BATCH=true` (the local default) every record goes
//! in a batch of its own and offsets stay exact; real Kafka turns it off.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
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
