//! Offsets by timestamp over Kafka (kafka-python's `offsets_for_times`, ListOffsets with a
//! time) for records produced by a Kafka client with explicit timestamps: the first offset
//! at or after each time with that record's timestamp, or none when no record is that
//! recent; and the earliest and latest offsets (`beginning_offsets`, `end_offsets`).
mod common;

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use common::kafka::{Client, Outgoing, parse_lines};
use common::{Server, create_topic};
use serde::Deserialize;

/// The first record's timestamp.
const T0: i64 = 1_700_000_000_000;

/// What `kafka_python_client.py offsets` prints.
#[derive(Debug, Deserialize)]
struct Offsets {
    beginning: BTreeMap<String, i64>,
    end: BTreeMap<String, i64>,
    for_times: BTreeMap<String, BTreeMap<String, Option<Found>>>,
}

/// An offset found for a time, and the timestamp of the record there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
struct Found {
    offset: i64,
    timestamp: i64,
}

#[test]
fn offsets_for_times_and_the_earliest_and_latest_offsets() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?;
    tokio::runtime::Runtime::new()?
        .block_on(async { create_topic(&mut server.admin().await?, "clock", 3, &[]).await })?;

    // Partition 0: twenty records a second apart, two of them with the same time;
    // partition 1: five records much later; partition 2: none.
    let mut times: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    times.insert(
        0,
        (0..20)
            .map(|i| T0 + 1000 * if i > 10 { i - 1 } else { i })
            .collect(),
    );
    times.insert(1, (0..5).map(|i| T0 + 100_000 + 1000 * i).collect());
    let records: Vec<Outgoing> = (0..20)
        .flat_map(|i| {
            times.iter().filter_map(move |(&partition, series)| {
                Some(Outgoing {
                    timestamp: Some(*series.get(i)?),
                    partition: Some(partition),
                    ..Outgoing::value(format!("p{partition} r{i}"))
                })
            })
        })
        .collect();
    // Two producer runs, so that a partition holds several batches of several records.
    let (first, rest) = records.split_at(9);
    for part in [first, rest] {
        Client::KafkaPython.produce_acknowledged(bootstrap, "clock", &[("acks", "all")], part)?;
    }

    let asked = [
        0,
        T0,
        T0 + 500,
        T0 + 10_000,
        T0 + 10_500,
        T0 + 18_000,
        T0 + 18_001,
        T0 + 104_000,
        T0 + 104_001,
        i64::from(i32::MAX) * 1_000,
    ];
    let list: Vec<String> = asked.iter().map(i64::to_string).collect();
    let lines =
        Client::KafkaPython.run("offsets", bootstrap, "clock", &["--times", &list.join(",")])?;
    let answers: Vec<Offsets> = parse_lines(&lines)?;
    let [answer] = answers.as_slice() else {
        anyhow::bail!("expected one answer, got {lines:?}");
    };

    let by_partition = |f: &dyn Fn(i32) -> i64| -> BTreeMap<String, i64> {
        (0..3).map(|p| (p.to_string(), f(p))).collect()
    };
    let count = |p: i32| {
        times
            .get(&p)
            .map_or(0, |t| i64::try_from(t.len()).unwrap_or(0))
    };
    ensure!(
        answer.beginning == by_partition(&|_| 0),
        "beginning offsets: {answer:?}"
    );
    ensure!(
        answer.end == by_partition(&count),
        "end offsets: {answer:?}"
    );

    for time in asked {
        let got = answer
            .for_times
            .get(&time.to_string())
            .with_context(|| format!("no answer for {time}"))?;
        for p in 0..3 {
            // The first record at or after the time (the timestamps only grow here).
            let expected = times.get(&p).and_then(|series| {
                let offset = series.iter().position(|&t| t >= time)?;
                Some(Found {
                    offset: i64::try_from(offset).ok()?,
                    timestamp: series[offset],
                })
            });
            let found = got.get(&p.to_string()).copied().flatten();
            ensure!(
                found == expected,
                "offsets_for_times({time}) on partition {p}: got {found:?}, expected {expected:?}"
            );
        }
    }
    Ok(())
}
