//! Queues: a topic read by the share group of the same name, with a definition; declared,
//! measured, purged, trimmed and deleted, durable ones kept across restarts and transient
//! ones dropped, records and all.

use sluice_broker::{BrokerError, QueueSpec};

use crate::common::{TestBroker, values};

fn transient(name: &str) -> QueueSpec {
    QueueSpec {
        durable: false,
        ..QueueSpec::new(name)
    }
}

#[tokio::test]
async fn a_declared_queue_keeps_what_is_published_before_its_consumers_come() {
    let t = TestBroker::new();
    let status = t
        .broker
        .declare_queue(QueueSpec::new("jobs"))
        .await
        .expect("declare");
    assert_eq!(status.messages, 0);
    t.broker
        .produce("jobs", None, values(&["a", "b", "c"]))
        .await
        .expect("produce");
    assert_eq!(t.broker.queue_status("jobs").expect("status").messages, 3);
    // Redeclaring the same is a no-op; another definition is refused naming the field.
    t.broker
        .declare_queue(QueueSpec::new("jobs"))
        .await
        .expect("redeclare");
    let err = t
        .broker
        .declare_queue(transient("jobs"))
        .await
        .expect_err("inequivalent");
    assert!(err.to_string().contains("durable"), "{err}");

    assert_eq!(t.broker.drop_queue_head("jobs", 1).await.expect("trim"), 1);
    assert_eq!(t.broker.queue_status("jobs").expect("status").messages, 2);
    assert_eq!(t.broker.purge_queue("jobs").await.expect("purge"), 2);
    assert_eq!(t.broker.queue_status("jobs").expect("status").messages, 0);

    t.broker
        .produce("jobs", None, values(&["d"]))
        .await
        .expect("produce");
    let refused = t.broker.delete_queue("jobs", true).await;
    assert!(matches!(
        refused,
        Err(BrokerError::QueueNotEmpty { messages: 1, .. })
    ));
    assert_eq!(
        t.broker.delete_queue("jobs", false).await.expect("delete"),
        1
    );
    assert!(matches!(
        t.broker.queue_status("jobs"),
        Err(BrokerError::QueueNotFound { .. })
    ));
    assert!(
        t.broker.partition_count("jobs").is_err(),
        "the topic went too"
    );
}

#[tokio::test]
async fn durable_queues_keep_their_messages_and_transient_ones_go_after_a_restart() {
    for crash in [false, true] {
        let t = TestBroker::new();
        t.broker
            .declare_queue(QueueSpec::new("kept"))
            .await
            .expect("declare");
        t.broker
            .declare_queue(transient("passing"))
            .await
            .expect("declare");
        for queue in ["kept", "passing"] {
            t.broker
                .produce(queue, None, values(&["x", "y"]))
                .await
                .expect("produce");
        }
        if !crash {
            t.broker.shutdown().await.expect("shutdown");
        }
        let t = t.restart();
        t.broker.start_background();
        assert_eq!(
            t.broker.queue_status("kept").expect("kept").messages,
            2,
            "crash: {crash}"
        );
        assert!(
            t.broker.queue_definition("passing").is_none(),
            "crash: {crash}"
        );
        // Declared again, it starts empty: the old records went with the old queue.
        let again = t
            .broker
            .declare_queue(transient("passing"))
            .await
            .expect("redeclare");
        assert_eq!(again.messages, 0, "crash: {crash}");
    }
}
