//! Fetching several partitions in one call: byte budgets, waiting for `min_bytes`, and
//! per-partition errors.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_broker::{Broker, BrokerError, FetchMany, NewRecord, PartitionFetch};

use crate::common::TestBroker;

fn partition(topic: &str, partition: u32, offset: u64, max_bytes: usize) -> PartitionFetch {
    PartitionFetch {
        topic: topic.to_owned(),
        partition,
        offset,
        max_bytes,
    }
}

fn request(partitions: Vec<PartitionFetch>, max_bytes: usize, min_bytes: usize) -> FetchMany {
    FetchMany {
        partitions,
        max_bytes,
        min_bytes,
        max_wait: Duration::from_millis(500),
    }
}

/// Appends `count` batches of one `size`-byte record each to `partition`.
async fn fill(broker: &Broker, topic: &str, partition: u32, count: usize, size: usize) {
    for _ in 0..count {
        broker
            .produce(topic, Some(partition), [NewRecord::new(vec![7u8; size])])
            .await
            .expect("produce");
    }
}

async fn topic_with(partitions: u32) -> TestBroker {
    let t = TestBroker::new();
    t.broker
        .create_topic("t", partitions, &BTreeMap::new())
        .await
        .expect("create topic");
    t
}

#[tokio::test]
async fn budgets_split_the_answer_and_the_first_batch_always_comes_whole() {
    let t = topic_with(3).await;
    fill(&t.broker, "t", 0, 4, 1000).await;
    fill(&t.broker, "t", 1, 4, 1000).await;
    fill(&t.broker, "t", 2, 4, 1000).await;

    // A total budget of about two and a half batches: partition 0 fills two, partition 1
    // gets none (its next batch does not fit), partition 2 neither.
    let answer = t
        .broker
        .fetch_many(&request(
            vec![
                partition("t", 0, 0, 2500),
                partition("t", 1, 0, 1 << 20),
                partition("t", 2, 0, 1 << 20),
            ],
            2500,
            1,
        ))
        .await
        .expect("fetch");
    let sizes: Vec<usize> = answer
        .iter()
        .map(|p| p.result.as_ref().expect("readable").batches.len())
        .collect();
    assert!(sizes[0] > 0 && sizes[0] <= 2500, "{sizes:?}");
    assert_eq!(sizes[1..], [0, 0], "{sizes:?}");
    assert!(sizes.iter().sum::<usize>() <= 2500);

    // Limits smaller than one batch still return the first batch whole (KIP-74).
    let answer = t
        .broker
        .fetch_many(&request(
            vec![partition("t", 1, 0, 10), partition("t", 2, 0, 10)],
            10,
            1,
        ))
        .await
        .expect("fetch");
    let first = answer[0].result.as_ref().expect("readable");
    assert_eq!(first.records().count(), 1);
    assert!(first.batches.len() > 10);
    assert!(
        answer[1]
            .result
            .as_ref()
            .expect("readable")
            .batches
            .is_empty()
    );
}

#[tokio::test]
async fn an_unreadable_partition_answers_with_its_error_and_the_others_with_data() {
    let t = topic_with(2).await;
    fill(&t.broker, "t", 1, 2, 10).await;
    let started = Instant::now();
    let answer = t
        .broker
        .fetch_many(&FetchMany {
            max_wait: Duration::from_secs(10),
            ..request(
                vec![
                    partition("missing", 0, 0, 1 << 20),
                    partition("t", 7, 0, 1 << 20),
                    partition("t", 0, 5, 1 << 20),
                    partition("t", 1, 0, 1 << 20),
                ],
                1 << 20,
                1 << 20,
            )
        })
        .await
        .expect("fetch");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "errors answer at once"
    );
    assert!(matches!(
        answer[0].result,
        Err(BrokerError::TopicNotFound { .. })
    ));
    assert!(matches!(
        answer[1].result,
        Err(BrokerError::PartitionNotFound { .. })
    ));
    assert!(matches!(
        answer[2].result,
        Err(BrokerError::OffsetOutOfRange { requested: 5, .. })
    ));
    let data = answer[3].result.as_ref().expect("readable");
    assert_eq!(data.records().count(), 2);
    assert_eq!((answer[3].topic.as_str(), answer[3].partition), ("t", 1));
}

#[tokio::test]
async fn waits_for_min_bytes_until_an_append_to_a_requested_partition() {
    let t = topic_with(2).await;
    let broker = Arc::clone(&t.broker);
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let answer = broker
            .fetch_many(&FetchMany {
                max_wait: Duration::from_secs(20),
                ..request(vec![partition("t", 1, 0, 1 << 20)], 1 << 20, 1)
            })
            .await
            .expect("fetch");
        (started.elapsed(), answer)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // An append to another partition does not answer the fetch.
    fill(&t.broker, "t", 0, 1, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "woken by another partition's append"
    );
    fill(&t.broker, "t", 1, 1, 10).await;
    let (elapsed, answer) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("answered after the append")
        .expect("task");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert_eq!(
        answer[0].result.as_ref().expect("data").records().count(),
        1
    );
}

#[tokio::test]
async fn answers_with_what_is_there_at_the_deadline() {
    let t = topic_with(1).await;
    fill(&t.broker, "t", 0, 1, 10).await;
    let started = Instant::now();
    let answer = t
        .broker
        .fetch_many(&FetchMany {
            max_wait: Duration::from_millis(200),
            ..request(vec![partition("t", 0, 0, 1 << 20)], 1 << 20, 1 << 20)
        })
        .await
        .expect("fetch");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert_eq!(
        answer[0].result.as_ref().expect("data").records().count(),
        1
    );
}
