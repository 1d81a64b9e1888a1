//! The local Kafka-compatible broker keeps exact offsets with our producer
//! settings: every record moves the high watermark by one, and a consumer
//! group resumes exactly where it committed. If this fails, the broker (or
//! its settings) is wrong, not the persister: see `coupon_core::kafka`.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use coupon_core::testing::TestEnv;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

const RECORDS: usize = 600;
const FIRST_CONSUMER_TAKES: usize = 200;
const DEADLINE: Duration = Duration::from_secs(60);

async fn receive(consumer: &StreamConsumer, count: usize) -> Vec<(i32, i64, usize)> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        let message = tokio::time::timeout(DEADLINE, consumer.recv())
            .await
            .expect("the broker delivers within the deadline")
            .expect("no consumer error");
        let id: usize = std::str::from_utf8(message.payload().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        consumer.store_offset_from_message(&message).unwrap();
        got.push((message.partition(), message.offset(), id));
    }
    got
}

#[tokio::test]
async fn a_consumer_group_resumes_exactly_where_it_committed() {
    let env = TestEnv::unmigrated(&[]);
    let config = &env.config;
    coupon_core::kafka::ensure_topics(config)
        .await
        .expect("create topics");
    let topic = config.kafka_topic.as_str();

    let producer: FutureProducer = coupon_core::kafka::producer_config(config)
        .create()
        .unwrap();
    let mut per_partition: BTreeMap<i32, i64> = BTreeMap::new();
    for id in 0..RECORDS {
        let payload = id.to_string();
        let key = format!("coupon-{}", id % 7);
        let delivery = producer
            .send(
                FutureRecord::to(topic).key(&key).payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .expect("delivered");
        *per_partition.entry(delivery.partition).or_default() += 1;
    }

    // Watermarks count records, not produce batches.
    let probe: StreamConsumer = coupon_core::kafka::consumer_config(config, "probe")
        .create()
        .unwrap();
    for (partition, count) in &per_partition {
        let (low, high) = probe
            .fetch_watermarks(topic, *partition, Duration::from_secs(10))
            .unwrap();
        assert_eq!(
            high - low,
            *count,
            "partition {partition}: one offset per record"
        );
    }

    let group = &config.kafka_consumer_group;
    let first: StreamConsumer = coupon_core::kafka::consumer_config(config, group)
        .create()
        .unwrap();
    first.subscribe(&[topic]).unwrap();
    let taken = receive(&first, FIRST_CONSUMER_TAKES).await;
    first.commit_consumer_state(CommitMode::Sync).unwrap();
    let mut committed = TopicPartitionList::new();
    for partition in per_partition.keys() {
        committed.add_partition(topic, *partition);
    }
    let committed = first
        .committed_offsets(committed, Duration::from_secs(10))
        .unwrap();
    first.unsubscribe();
    drop(first);

    for partition in per_partition.keys() {
        let processed = taken.iter().filter(|(p, _, _)| p == partition).count() as i64;
        let offset = committed
            .find_partition(topic, *partition)
            .map(|e| e.offset())
            .unwrap_or(Offset::Invalid);
        if processed > 0 {
            assert_eq!(offset, Offset::Offset(processed), "partition {partition}");
        }
    }

    let second: StreamConsumer = coupon_core::kafka::consumer_config(config, group)
        .create()
        .unwrap();
    second.subscribe(&[topic]).unwrap();
    let rest = receive(&second, RECORDS - FIRST_CONSUMER_TAKES).await;

    let ids: HashSet<usize> = taken.iter().chain(&rest).map(|(_, _, id)| *id).collect();
    assert_eq!(
        ids.len(),
        RECORDS,
        "every record once: nothing skipped, nothing repeated"
    );
    // And nothing more is waiting: the second consumer started at the commit.
    let extra = tokio::time::timeout(Duration::from_millis(1500), second.recv()).await;
    assert!(extra.is_err(), "no record delivered twice");
}
