//! Every request error the broker reports, with messages naming the field and the limit.

use std::fs;
use std::time::Duration;

use crate::common::{TestBroker, overrides, values};
use sluice_broker::{BrokerError, CorruptSource, NewRecord, OffsetSpec};
use sluice_storage::StorageError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topics_and_partitions() {
    let t = TestBroker::new();
    let b = &t.broker;
    b.create_topic("two", 2, &overrides(&[]))
        .await
        .expect("create");

    let not_found = |r: Result<(), BrokerError>| matches!(r, Err(BrokerError::TopicNotFound { ref topic }) if topic == "nope");
    assert!(not_found(
        b.produce("nope", None, values(&["x"])).await.map(|_| ())
    ));
    assert!(not_found(
        b.fetch("nope", 0, 0, 0, Duration::ZERO).await.map(|_| ())
    ));
    assert!(not_found(b.delete_topic("nope").await));
    assert!(not_found(b.describe_topic("nope").map(|_| ())));
    assert!(not_found(b.partition_count("nope").map(|_| ())));
    assert!(not_found(
        b.list_offset("nope", 0, OffsetSpec::Latest).map(|_| ())
    ));

    let missing = |r: Result<(), BrokerError>| match r {
        Err(
            e @ BrokerError::PartitionNotFound {
                partition: 2,
                partitions: 2,
                ..
            },
        ) => e.to_string(),
        other => panic!("{other:?}"),
    };
    let message = missing(b.produce("two", Some(2), values(&["x"])).await.map(|_| ()));
    assert_eq!(
        message,
        "topic \"two\" has no partition 2: it has partitions 0..2"
    );
    missing(b.fetch("two", 2, 0, 0, Duration::ZERO).await.map(|_| ()));
    missing(b.list_offset("two", 2, OffsetSpec::Earliest).map(|_| ()));
    let huge = b.produce("two", Some(u32::MAX), values(&["x"])).await;
    assert!(
        matches!(
            huge,
            Err(BrokerError::PartitionNotFound {
                partition: u32::MAX,
                partitions: 2,
                ..
            })
        ),
        "{huge:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_creation_is_validated() {
    let t = TestBroker::with(|c| {
        c.limits.max_partitions = 8;
        c.limits.max_topic_name_len = 10;
    });
    let b = &t.broker;
    b.create_topic("dup", 1, &overrides(&[]))
        .await
        .expect("create");
    let exists = b.create_topic("dup", 3, &overrides(&[])).await;
    assert!(
        matches!(exists, Err(BrokerError::TopicExists { ref topic }) if topic == "dup"),
        "{exists:?}"
    );

    for name in ["", ".", "..", "a/b", "has space", "elevenchars"] {
        let err = b.create_topic(name, 1, &overrides(&[])).await;
        assert!(
            matches!(err, Err(BrokerError::InvalidTopicName { name: ref n, .. }) if n == name),
            "{name:?}: {err:?}"
        );
    }

    for count in [0, 9] {
        let err = b.create_topic("parts", count, &overrides(&[])).await;
        match err {
            Err(e @ BrokerError::InvalidPartitionCount { max: 8, .. }) => assert_eq!(
                e.to_string(),
                format!("partition count {count} is outside the allowed range 1..=8")
            ),
            other => panic!("{other:?}"),
        }
    }

    let bad_configs = [
        ("cleanup.policy", "delete"),
        ("segment.bytes", "100"),
        ("flush.policy", "sometimes"),
        ("retention.ms", "soon"),
    ];
    for (key, value) in bad_configs {
        let err = b.create_topic("cfg", 1, &overrides(&[(key, value)])).await;
        assert!(
            matches!(err, Err(BrokerError::InvalidConfig { key: ref k, value: ref v, .. }) if k == key && v == value),
            "{key}={value}: {err:?}"
        );
    }
    // Nothing was created by the failures.
    assert_eq!(b.list_topics().len(), 1);
    let topics = fs::read_dir(t.dir.path().join("topics"))
        .expect("topics")
        .count();
    assert_eq!(topics, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_requests_are_validated_before_writing() {
    let t = TestBroker::with(|c| c.limits.max_records_per_request = 5);
    let b = &t.broker;
    b.create_topic("small", 1, &overrides(&[("max.message.bytes", "1000")]))
        .await
        .expect("create");

    let empty: Vec<NewRecord> = Vec::new();
    assert!(matches!(
        b.produce("small", None, empty).await,
        Err(BrokerError::EmptyBatch)
    ));

    let too_many = values(&["1", "2", "3", "4", "5", "6", "7"]);
    match b.produce("small", None, too_many).await {
        Err(e @ BrokerError::TooManyRecords { count: 7, limit: 5 }) => assert_eq!(
            e.to_string(),
            "request of 7 records exceeds max_records_per_request = 5"
        ),
        other => panic!("{other:?}"),
    }

    let oversized = vec![
        NewRecord::new("fine"),
        NewRecord::new(vec![0u8; 990]).with_key("0123456789a"),
    ];
    match b.produce("small", Some(0), oversized).await {
        Err(
            e @ BrokerError::RecordTooLarge {
                size: 1001,
                limit: 1000,
            },
        ) => assert_eq!(
            e.to_string(),
            "record of 1001 bytes exceeds max.message.bytes = 1000"
        ),
        other => panic!("{other:?}"),
    }
    let at_limit = vec![NewRecord::new(vec![0u8; 990]).with_header("0123", "456789")];
    b.produce("small", Some(0), at_limit)
        .await
        .expect("exactly at the limit");

    // Only the accepted request was written.
    let info = b.describe_topic("small").expect("describe");
    assert_eq!(info.partitions[0].log_end_offset, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_outside_the_log_are_out_of_range() {
    let t = TestBroker::new();
    t.broker
        .create_topic("r", 1, &overrides(&[]))
        .await
        .expect("create");
    t.broker
        .produce("r", None, values(&["a", "b"]))
        .await
        .expect("produce");
    let err = t.broker.fetch("r", 0, 3, 0, Duration::from_secs(5)).await;
    match err {
        Err(
            e @ BrokerError::OffsetOutOfRange {
                requested: 3,
                log_start_offset: 0,
                high_watermark: 2,
            },
        ) => assert_eq!(
            e.to_string(),
            "offset 3 is out of range: valid offsets are 0..=2"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_data_is_reported_not_served() {
    let t = TestBroker::new();
    t.broker
        .create_topic("c", 1, &overrides(&[]))
        .await
        .expect("create");
    t.broker
        .produce("c", None, values(&["precious value"]))
        .await
        .expect("produce");
    // Damage on disk is caught by the CRC check of a batch's first read after its segment is
    // opened (what this run appended was checked as it was written), so corrupt it between a
    // clean shutdown, which leaves no recovery scan to do, and the next start.
    t.broker.shutdown().await.expect("shutdown");
    let partition_dir = t.dir.path().join("topics/c/0");
    let segment = fs::read_dir(&partition_dir)
        .expect("partition dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .expect("segment file");
    let mut bytes = fs::read(&segment).expect("read segment");
    let last = bytes.len() - 3;
    bytes[last] ^= 0xff;
    fs::write(&segment, &bytes).expect("write segment");
    let t = t.restart();

    let result = t.broker.fetch("c", 0, 0, 0, Duration::ZERO).await;
    assert!(
        matches!(
            result,
            Err(BrokerError::Corrupt {
                source: CorruptSource::Stored(StorageError::Corrupt { .. })
            })
        ),
        "{result:?}"
    );
}
