//! Hello World with Sluice in Rust: a producer sends "Hello World!" to topic `hello`, a
//! consumer reads it back and prints it.
//!
//! Start a server first (`cargo run --release -- serve`), then run
//! `cargo run --example hello`. The server URL is taken from `SLUICE_SERVER`
//! (default `http://127.0.0.1:50051`).

use sluice_client::{Client, Code, NewTopic, Position, ProducerRecord};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("SLUICE_SERVER").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let client = Client::connect(url).await?;
    match client.admin().create_topic(NewTopic::new("hello", 1)).await {
        Err(err) if err.code() != Some(Code::AlreadyExists) => return Err(err.into()),
        _ => {}
    }

    // Producer: the future resolves once the server has stored the record.
    let producer = client.producer().build()?;
    let sent = producer
        .send(ProducerRecord::new("hello", "Hello World!"))
        .await?;
    println!(
        " [x] Sent 'Hello World!' to hello/{} at offset {}",
        sent.partition, sent.offset
    );

    // Consumer: read that partition from that offset.
    let mut consumer = client
        .consumer("hello")
        .partition(sent.partition)
        .start(Position::Offset(sent.offset))
        .build();
    let record = consumer.next().await?;
    println!(
        " [x] Received '{}' at offset {}",
        String::from_utf8_lossy(&record.value),
        record.offset
    );
    Ok(())
}
