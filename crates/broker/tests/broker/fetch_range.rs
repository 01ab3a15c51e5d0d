//! `fetch_range`: the stored batches holding a range of offsets, whole.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_broker::{BrokerError, NewRecord};

use crate::common::TestBroker;

#[tokio::test]
async fn the_batches_holding_a_range_come_whole_and_nothing_past_it() {
    let t = TestBroker::new();
    t.broker
        .create_topic("t", 1, &BTreeMap::new())
        .await
        .expect("create topic");
    // Five batches of three records each: batch k holds offsets 3k..=3k+2.
    for k in 0..5 {
        t.broker
            .produce(
                "t",
                Some(0),
                (0..3).map(|i| NewRecord::new(format!("record-{k}-{i}"))),
            )
            .await
            .expect("produce");
    }
    let all = t
        .broker
        .fetch("t", 0, 0, 1 << 20, Duration::ZERO)
        .await
        .expect("fetch")
        .batches;
    assert_eq!(all.len() % 5, 0, "equal batches");
    let batch = all.len() / 5;

    let range = |first, last| t.broker.fetch_range("t", 0, first, last);
    // From inside batch 1 to inside batch 3: batches 1 to 3, whole.
    assert_eq!(
        range(4, 10).await.expect("range"),
        all.slice(batch..4 * batch)
    );
    assert_eq!(
        range(4, 4).await.expect("range"),
        all.slice(batch..2 * batch)
    );
    assert_eq!(
        range(3, 5).await.expect("range"),
        all.slice(batch..2 * batch)
    );
    // Past the high watermark: up to the end.
    assert_eq!(range(14, 100).await.expect("range"), all.slice(4 * batch..));
    assert!(range(5, 4).await.expect("empty").is_empty());
    assert!(matches!(
        range(16, 20).await,
        Err(BrokerError::OffsetOutOfRange { .. })
    ));
}
