//! A tour of the client: create a topic, produce keyed records with many in flight, read
//! them back with a consumer, then once more as a member of a consumer group.
//!
//! Start a server first (`cargo run --release -- serve` in the repository root), then run
//! `cargo run -p sluice-client --example quickstart`. The server URL is taken from
//! `SLUICE_SERVER` (default `http://127.0.0.1:50051`). The example recreates the topic
//! `quickstart`.

use sluice_client::{Client, Code, GroupEvent, NewTopic, OffsetReset, Position, ProducerRecord};

const RECORDS: usize = 12;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("SLUICE_SERVER").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let client = Client::connect(url).await?;
    let admin = client.admin();

    // A fresh topic with three partitions.
    match admin.delete_topic("quickstart").await {
        Err(err) if err.code() != Some(Code::NotFound) => return Err(err.into()),
        _ => {}
    }
    admin
        .create_topic(NewTopic::new("quickstart", 3).config("retention.ms", "3600000"))
        .await?;

    // Send every record at once, then wait for the acknowledgements: records with the same
    // key land in the same partition, in the order they were sent.
    let producer = client.producer().build()?;
    let sends: Vec<_> = (0..RECORDS)
        .map(|i| {
            let customer = format!("customer-{}", i % 4);
            producer.send(
                ProducerRecord::new("quickstart", format!("order {i}"))
                    .key(customer)
                    .header("source", "quickstart"),
            )
        })
        .collect();
    for (i, send) in sends.into_iter().enumerate() {
        let written = send.await?;
        println!(
            "order {i:>2} -> partition {} offset {}",
            written.partition, written.offset
        );
    }

    // Read everything back from the beginning of every partition.
    let mut consumer = client
        .consumer("quickstart")
        .start(Position::Earliest)
        .build();
    for _ in 0..RECORDS {
        let record = consumer.next().await?;
        println!(
            "read {}@{}: {} = {}",
            record.partition,
            record.offset,
            String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()),
            String::from_utf8_lossy(&record.value)
        );
    }

    // A consumer group shares the partitions among its members and remembers how far
    // they got; this single member gets all of them.
    let mut member = client
        .group_consumer("quickstart-readers")
        .topic("quickstart")
        .offset_reset(OffsetReset::Earliest)
        .build();
    let mut read = 0;
    while read < RECORDS {
        match member.next().await? {
            GroupEvent::Assigned(partitions) => println!("group: assigned {partitions:?}"),
            GroupEvent::Revoked(partitions) => println!("group: revoked {partitions:?}"),
            GroupEvent::Record(_) => read += 1,
        }
    }
    member.commit().await?;
    member.close().await?;
    let group = admin.describe_group("quickstart-readers").await?;
    for partition in group.partitions {
        println!(
            "group: partition {} committed at {:?}, lag {}",
            partition.partition, partition.committed_offset, partition.lag
        );
    }
    Ok(())
}
