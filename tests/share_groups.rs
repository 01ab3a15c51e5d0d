//! Share groups against the real binary, through the Rust client's `ShareConsumer`: workers
//! killed while holding records, poison records reaching the dead-letter topic, lock
//! renewal and expiry, auto-accept, and a SIGKILL of the server mid-run.
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use common::*;
use sluice_client::{
    Client, Code, ConsumerRecord, Error, NewTopic, OffsetReset, Position, ProducerRecord,
    ShareConsumer, ShareRecord,
};

/// Longest a test waits for the queue to drain.
const PATIENCE: Duration = Duration::from_secs(20);

async fn connect(server: &Server) -> Result<Client> {
    Ok(Client::connect(server.url()).await?)
}

fn value(record: &ShareRecord) -> String {
    String::from_utf8_lossy(&record.record.value).into_owned()
}

/// Produces `values` to `topic` and waits until each is stored.
async fn produce(client: &Client, topic: &str, values: &[String]) -> Result<()> {
    let producer = client.producer().build()?;
    let sent: Vec<_> = values
        .iter()
        .map(|v| producer.send(ProducerRecord::new(topic, v.clone())))
        .collect();
    for send in sent {
        send.await?;
    }
    Ok(())
}

/// A worker of group `group` on `topic` that starts at the earliest record.
fn worker(client: &Client, group: &str, topic: &str, prefetch: u32) -> ShareConsumer {
    client
        .share_consumer(group)
        .topic(topic)
        .prefetch(prefetch)
        .offset_reset(OffsetReset::Earliest)
        .build()
}

/// The sums of waiting, in-flight, accepted and dead-lettered records over the group's
/// partitions.
async fn queue(client: &Client, group: &str) -> Result<(u64, u64, u64, u64)> {
    let described = client.admin().describe_share_group(group).await?;
    Ok(described
        .partitions
        .iter()
        .fold((0, 0, 0, 0), |(w, f, a, d), p| {
            (
                w + p.waiting,
                f + p.in_flight,
                a + p.accepted,
                d + p.dead_lettered,
            )
        }))
}

/// A small deterministic generator for the kill moments; the seed is printed.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        eprintln!("seed {seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// What the workers saw, shared by them and the test.
#[derive(Debug, Default)]
struct Journal {
    /// Every delivery: (worker, value, delivery count), in order.
    deliveries: Vec<(usize, String, u32)>,
    /// Acceptances the server confirmed durable: (worker, value).
    confirmed: Vec<(usize, String)>,
    /// Records each worker received and has not had confirmed yet: held, or their
    /// acceptance on its way.
    pending: HashMap<usize, Vec<String>>,
    /// Workers processing records they hold (not yet acknowledged).
    processing: BTreeSet<usize>,
    /// Set by the test once the queue is drained.
    done: bool,
}

type Shared = Arc<Mutex<Journal>>;

fn lock(journal: &Shared) -> Result<std::sync::MutexGuard<'_, Journal>> {
    journal
        .lock()
        .map_err(|_| anyhow::anyhow!("a worker panicked"))
}

/// Runs worker `id` until the test says the queue is drained: takes up to 20 records,
/// "processes" them for a few milliseconds, accepts them all and waits until that is
/// durable.
async fn run_worker(id: usize, mut consumer: ShareConsumer, journal: Shared) -> Result<()> {
    loop {
        if lock(&journal)?.done {
            return Ok(consumer.close().await?);
        }
        let records = consumer.poll(20, Duration::from_millis(100)).await?;
        {
            let mut j = lock(&journal)?;
            for r in &records {
                j.deliveries.push((id, value(r), r.delivery_count));
            }
            j.pending
                .entry(id)
                .or_default()
                .extend(records.iter().map(value));
            if !records.is_empty() {
                j.processing.insert(id);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        lock(&journal)?.processing.remove(&id);
        for r in &records {
            consumer.accept(r)?;
        }
        consumer.commit().await?;
        let mut j = lock(&journal)?;
        let accepted = j.pending.remove(&id).unwrap_or_default();
        j.confirmed.extend(accepted.into_iter().map(|v| (id, v)));
    }
}

/// Waits until the group has accepted `total` records and holds or offers none.
async fn drained(client: &Client, group: &str, total: u64) -> Result<(u64, u64, u64, u64)> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let figures = queue(client, group).await?;
        let (waiting, in_flight, accepted, dead) = figures;
        if waiting == 0 && in_flight == 0 && accepted + dead >= total {
            return Ok(figures);
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "not drained: waiting {waiting}, in flight {in_flight}, accepted {accepted}, dead {dead}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_workers_two_killed_every_record_accepted_once_none_lost() -> Result<()> {
    const TOTAL: usize = 3000;
    const PREFETCH: u32 = 20;
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let client = connect(&server).await?;
    client
        .admin()
        .create_topic(NewTopic::new("jobs", 4))
        .await?;
    let values: Vec<String> = (0..TOTAL).map(|i| format!("job-{i}")).collect();
    produce(&client, "jobs", &values).await?;

    let journal: Shared = Arc::default();
    let mut workers = Vec::new();
    for id in 0..5 {
        // Each worker on a connection of its own, as separate processes would be.
        let own = connect(&server).await?;
        let consumer = worker(&own, "pool", "jobs", PREFETCH);
        workers.push(tokio::spawn(run_worker(id, consumer, Arc::clone(&journal))));
    }
    // Kill workers 0 and 1 at random moments while they process records they hold.
    let mut rng = Rng::seeded();
    let killed: BTreeSet<usize> = [0, 1].into();
    for &victim in &killed {
        tokio::time::sleep(Duration::from_millis(10 + rng.below(150))).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !lock(&journal)?.processing.contains(&victim) {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "worker {victim} never processed records"
            );
            tokio::task::yield_now().await;
        }
        workers[victim].abort();
    }
    let (_, _, accepted, dead) = drained(&client, "pool", TOTAL as u64).await?;
    lock(&journal)?.done = true;
    for (id, handle) in workers.into_iter().enumerate() {
        if !killed.contains(&id) {
            tokio::time::timeout(PATIENCE, handle)
                .await
                .with_context(|| format!("worker {id} did not finish"))???;
        }
    }
    ensure!(
        (accepted, dead) == (TOTAL as u64, 0),
        "accepted {accepted}, dead-lettered {dead} of {TOTAL}"
    );

    let journal = lock(&journal)?;
    // Accepted exactly once: no value is confirmed twice.
    let mut confirmed: BTreeMap<&str, usize> = BTreeMap::new();
    for (worker, value) in &journal.confirmed {
        if let Some(first) = confirmed.insert(value, *worker) {
            bail!("{value} accepted by worker {first} and by worker {worker}");
        }
    }
    // None lost: every value is confirmed, or was held by a killed worker, whose acceptance
    // may have become durable without it learning so.
    let in_doubt: BTreeSet<&str> = killed
        .iter()
        .filter_map(|w| journal.pending.get(w))
        .flatten()
        .map(String::as_str)
        .collect();
    let missing: Vec<&String> = values
        .iter()
        .filter(|v| !confirmed.contains_key(v.as_str()) && !in_doubt.contains(v.as_str()))
        .collect();
    ensure!(missing.is_empty(), "lost: {missing:?}");
    // Redeliveries: only of records no surviving worker had, each with its count grown,
    // and no more than the killed workers could hold.
    let mut last_count: HashMap<&str, (usize, u32)> = HashMap::new();
    let mut redelivered = BTreeSet::new();
    for (worker, value, count) in &journal.deliveries {
        if let Some((before, before_count)) = last_count.get(value.as_str()) {
            ensure!(
                killed.contains(before),
                "{value} delivered again after worker {before} (alive) got it"
            );
            ensure!(
                count > before_count,
                "{value}: count {count} after {before_count}"
            );
            redelivered.insert(value.as_str());
        } else if *count > 1 {
            // First seen again: the killed worker had it on its way, not returned yet.
            redelivered.insert(value.as_str());
        }
        last_count.insert(value, (*worker, *count));
    }
    // Each killed worker held records it had not acknowledged.
    ensure!(
        (killed.len()..=killed.len() * PREFETCH as usize).contains(&redelivered.len()),
        "{} records delivered more than once",
        redelivered.len()
    );
    eprintln!("{} records redelivered after the kills", redelivered.len());
    Ok(())
}

/// The value of header `key` of a record, as text.
fn header(record: &ConsumerRecord, key: &str) -> Option<String> {
    record
        .headers
        .iter()
        .find(|h| h.key == key)
        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_reach_the_dead_letter_topic_after_the_limit() -> Result<()> {
    const LIMIT: u32 = 3;
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let client = connect(&server).await?;
    let admin = client.admin();
    admin.create_topic(NewTopic::new("orders", 2)).await?;
    admin.create_topic(NewTopic::new("orders.dlq", 1)).await?;
    let values: Vec<String> = (0..20)
        .map(|i| match i % 10 {
            3 => format!("poison-release-{i}"),
            7 => format!("poison-reject-{i}"),
            _ => format!("order-{i}"),
        })
        .collect();
    let producer = client.producer().build()?;
    for (i, v) in values.iter().enumerate() {
        producer
            .send(
                ProducerRecord::new("orders", v.clone())
                    .key(format!("k{i}"))
                    .header("trace", format!("t{i}")),
            )
            .await?;
    }
    // Two workers: good records are accepted, poison ones always released or rejected.
    let mut workers: Vec<ShareConsumer> = (0..2)
        .map(|_| {
            client
                .share_consumer("billing")
                .topic("orders")
                .prefetch(5)
                .offset_reset(OffsetReset::Earliest)
                .delivery_attempt_limit(LIMIT)
                .dead_letter_topic("orders.dlq")
                .build()
        })
        .collect();
    let mut deliveries: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        for worker in &mut workers {
            for record in worker.poll(5, Duration::from_millis(50)).await? {
                let v = value(&record);
                deliveries
                    .entry(v.clone())
                    .or_default()
                    .push(record.delivery_count);
                if v.starts_with("poison-release") {
                    worker.release(&record)?;
                } else if v.starts_with("poison-reject") {
                    worker.reject(&record)?;
                } else {
                    worker.accept(&record)?;
                }
            }
            worker.commit().await?;
        }
        let (waiting, in_flight, accepted, dead) = queue(&client, "billing").await?;
        if waiting == 0 && in_flight == 0 && accepted + dead == values.len() as u64 {
            ensure!(
                (accepted, dead) == (16, 4),
                "accepted {accepted}, dead {dead}"
            );
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "not drained: waiting {waiting}, in flight {in_flight}, accepted {accepted}, dead {dead}"
        );
    }
    for worker in workers {
        worker.close().await?;
    }
    // Every record was delivered with counts 1, 2, ...: released poison up to the limit,
    // the others once.
    for v in &values {
        let counts = deliveries.get(v).cloned().unwrap_or_default();
        let times = if v.starts_with("poison-release") {
            LIMIT
        } else {
            1
        };
        ensure!(
            counts == (1..=times).collect::<Vec<u32>>(),
            "{v} delivered with counts {counts:?}"
        );
    }
    // The dead letters: key, value and headers kept, plus where they came from and why.
    let mut dlq = client
        .consumer("orders.dlq")
        .start(Position::Earliest)
        .build();
    let mut dead = BTreeMap::new();
    while dead.len() < 4 {
        let record = tokio::time::timeout(PATIENCE, dlq.next())
            .await
            .context("dead letters missing")??;
        dead.insert(String::from_utf8_lossy(&record.value).into_owned(), record);
    }
    let mut described = client.consumer("orders").start(Position::Earliest).build();
    let mut originals = BTreeMap::new();
    while originals.len() < values.len() {
        let record = tokio::time::timeout(PATIENCE, described.next())
            .await
            .context("originals missing")??;
        originals.insert(String::from_utf8_lossy(&record.value).into_owned(), record);
    }
    for (v, letter) in &dead {
        let original = originals.get(v).context("a dead letter of no record")?;
        let (reason, count) = if v.starts_with("poison-release") {
            ("delivery-limit", LIMIT)
        } else {
            ("rejected", 1)
        };
        ensure!(letter.key == original.key, "{v}: key {:?}", letter.key);
        ensure!(
            header(letter, "trace") == header(original, "trace"),
            "{v}: trace header"
        );
        let expected = [
            ("sluice.dlq.topic", "orders".to_owned()),
            ("sluice.dlq.partition", original.partition.to_string()),
            ("sluice.dlq.offset", original.offset.to_string()),
            ("sluice.dlq.delivery.count", count.to_string()),
            ("sluice.dlq.reason", reason.to_owned()),
        ];
        for (key, want) in expected {
            ensure!(
                header(letter, key).as_deref() == Some(want.as_str()),
                "{v}: {key} is {:?}, not {want}",
                header(letter, key)
            );
        }
    }
    // The metrics endpoint counts them per partition.
    let scraped = server.scrape()?;
    let counted: f64 = (0..2)
        .filter_map(|p| {
            let p = p.to_string();
            let labels = [
                ("group", "billing"),
                ("topic", "orders"),
                ("partition", p.as_str()),
            ];
            metric(
                &scraped,
                "sluice_share_group_dead_lettered_records_total",
                &labels,
            )
        })
        .sum();
    ensure!(counted == 4.0, "dead-lettered metric {counted}");
    let poison: BTreeSet<&String> = values.iter().filter(|v| v.starts_with("poison")).collect();
    ensure!(
        dead.keys().collect::<BTreeSet<_>>() == poison,
        "dead letters {:?}",
        dead.keys()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_expire_unless_renewed_and_auto_accept_accepts_on_poll_and_close() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let client = connect(&server).await?;
    client
        .admin()
        .create_topic(NewTopic::new("tasks", 1))
        .await?;
    let values: Vec<String> = (0..6).map(|i| format!("task-{i}")).collect();
    produce(&client, "tasks", &values).await?;

    // A lock of 600 ms: the record renewed twice stays held past it; the other expires, its
    // acceptance is refused, and it is delivered again.
    let mut slow = client
        .share_consumer("locks")
        .topic("tasks")
        .prefetch(2)
        .offset_reset(OffsetReset::Earliest)
        .record_lock_duration(Duration::from_millis(600))
        .build();
    let held = slow.poll(2, PATIENCE).await?;
    ensure!(held.len() == 2, "got {held:?}");
    let (renewed, expiring) = (&held[0], &held[1]);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        slow.renew(&[renewed]).await?;
    }
    slow.accept(renewed)?;
    slow.accept(expiring)?;
    match slow.commit().await {
        Err(Error::Refused(refused)) => {
            ensure!(refused.len() == 1, "{refused:?}");
            ensure!(refused[0].offset == expiring.record.offset, "{refused:?}");
            ensure!(refused[0].code == Code::FailedPrecondition, "{refused:?}");
        }
        other => bail!("the expired lock's acceptance was not refused: {other:?}"),
    }
    let again = slow.poll(1, PATIENCE).await?;
    ensure!(
        again.len() == 1 && value(&again[0]) == value(expiring) && again[0].delivery_count == 2,
        "{again:?}"
    );
    // Records this consumer does not hold cannot be acknowledged.
    let not_held = slow.accept(renewed).expect_err("accepted twice");
    ensure!(matches!(not_held, Error::InvalidArgument(_)), "{not_held}");
    slow.accept(&again[0])?;
    slow.close().await?;

    // Auto-accept: a poll accepts what the previous one returned, close the rest.
    let mut auto = client
        .share_consumer("locks")
        .topic("tasks")
        .auto_accept(true)
        .build();
    let first = auto.poll(2, PATIENCE).await?;
    ensure!(first.len() == 2, "{first:?}");
    let second = auto.poll(2, PATIENCE).await?;
    ensure!(second.len() == 2, "{second:?}");
    let (_, in_flight, accepted, _) = queue(&client, "locks").await?;
    ensure!(
        (accepted, in_flight) == (4, 2),
        "accepted {accepted}, in flight {in_flight}"
    );
    auto.close().await?;
    let (waiting, in_flight, accepted, _) = queue(&client, "locks").await?;
    ensure!(
        (waiting, in_flight, accepted) == (0, 0, 6),
        "waiting {waiting}, in flight {in_flight}, accepted {accepted}"
    );
    Ok(())
}

/// Server SIGKILLs in a row in the kill test (`SLUICE_SHARE_KILL_ROUNDS`, default 3).
fn kill_rounds() -> usize {
    std::env::var("SLUICE_SHARE_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_server_sigkills_accepted_records_stay_done_and_unaccepted_come_back() -> Result<()> {
    const TOTAL: usize = 1200;
    let dir = tempfile::tempdir()?;
    let mut server = Server::start(dir.path(), &[])?;
    let addr = server.addr.clone();
    let client = connect(&server).await?;
    client
        .admin()
        .create_topic(NewTopic::new("work", 3))
        .await?;
    let values: Vec<String> = (0..TOTAL).map(|i| format!("w-{i}")).collect();
    produce(&client, "work", &values).await?;

    let rounds = kill_rounds();
    let mut rng = Rng::seeded();
    // Acceptances confirmed durable before a kill: never delivered again.
    let mut confirmed: BTreeSet<String> = BTreeSet::new();
    // Received and not confirmed at a kill (held, or the acceptance on its way).
    let mut in_doubt: BTreeSet<String> = BTreeSet::new();
    // Held by a member that never acknowledged them, at a kill: their delivery count then.
    let mut held_at_kill: BTreeMap<String, u32> = BTreeMap::new();
    // The highest delivery count seen after each record was first held at a kill.
    let mut seen_after: BTreeMap<String, u32> = BTreeMap::new();
    // Checks one delivery against what the kills before it left.
    let check_delivery = |v: &str,
                          count: u32,
                          confirmed: &BTreeSet<String>,
                          held_at_kill: &BTreeMap<String, u32>,
                          seen_after: &mut BTreeMap<String, u32>|
     -> Result<()> {
        ensure!(!confirmed.contains(v), "{v} accepted, then delivered again");
        if held_at_kill.contains_key(v) {
            let seen = seen_after.entry(v.to_owned()).or_default();
            *seen = (*seen).max(count);
        }
        Ok(())
    };
    for round in 0..rounds {
        // A holder takes records and never acknowledges them; two workers accept theirs.
        let mut holder = worker(&connect(&server).await?, "crash", "work", 10);
        let held = holder.poll(10, PATIENCE).await?;
        for record in &held {
            check_delivery(
                &value(record),
                record.delivery_count,
                &confirmed,
                &held_at_kill,
                &mut seen_after,
            )?;
        }
        let journal: Shared = Arc::default();
        let round_client = connect(&server).await?;
        let workers: Vec<_> = (0..2)
            .map(|id| {
                let consumer = worker(&round_client, "crash", "work", 20);
                tokio::spawn(run_worker(id, consumer, Arc::clone(&journal)))
            })
            .collect();
        // SIGKILL the server at a random point of the round.
        let per_round = (TOTAL - 20) / rounds;
        let kill_at = 20 + rng.below(per_round as u64 / 2) as usize;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while lock(&journal)?.confirmed.len() < kill_at {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "round {round}: the workers stalled"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        server.kill()?;
        for handle in workers {
            handle.abort();
            let _ = handle.await;
        }
        drop(holder);
        let seen = std::mem::take(&mut *lock(&journal)?);
        for (_, v, count) in &seen.deliveries {
            check_delivery(v, *count, &confirmed, &held_at_kill, &mut seen_after)?;
        }
        confirmed.extend(seen.confirmed.into_iter().map(|(_, v)| v));
        in_doubt.extend(seen.pending.into_values().flatten());
        for record in &held {
            held_at_kill.insert(value(record), record.delivery_count);
        }
        server = Server::start_on(dir.path(), &addr, &[])?;
    }

    // After the last restart one consumer drains the queue.
    let client = connect(&server).await?;
    let mut last = worker(&client, "crash", "work", 10);
    let mut drained_values: BTreeSet<String> = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let records = last.poll(10, Duration::from_millis(500)).await?;
        for record in &records {
            check_delivery(
                &value(record),
                record.delivery_count,
                &confirmed,
                &held_at_kill,
                &mut seen_after,
            )?;
            ensure!(
                drained_values.insert(value(record)),
                "{} delivered twice while draining",
                value(record)
            );
            last.accept(record)?;
        }
        last.commit().await?;
        let (waiting, in_flight, _, _) = queue(&client, "crash").await?;
        if records.is_empty() && waiting == 0 && in_flight == 0 {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "not drained: {waiting} waiting"
        );
    }
    last.close().await?;

    // Not accepted: delivered again, unless its acceptance was on its way at a kill.
    let lost: Vec<&String> = values
        .iter()
        .filter(|v| {
            !confirmed.contains(*v) && !in_doubt.contains(*v) && !drained_values.contains(*v)
        })
        .collect();
    ensure!(lost.is_empty(), "lost: {lost:?}");
    // Held at a kill: delivered again with the delivery count kept (and grown).
    for (v, count) in &held_at_kill {
        let after = seen_after.get(v).copied();
        ensure!(
            after.is_some_and(|after| after > *count),
            "{v} held at a kill with count {count}, delivered after it with {after:?}"
        );
    }
    let (_, _, accepted, _) = queue(&client, "crash").await?;
    ensure!(accepted == TOTAL as u64, "accepted {accepted} of {TOTAL}");
    eprintln!(
        "{rounds} kills: {} confirmed before them, {} in doubt, {} held",
        confirmed.len(),
        in_doubt.len(),
        held_at_kill.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_joins_and_admin_calls_fail_naming_the_field_or_limit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let client = connect(&server).await?;
    let admin = client.admin();
    admin.create_topic(NewTopic::new("q", 1)).await?;
    let expect =
        |result: sluice_client::Result<Vec<ShareRecord>>, code: Code, needle: &str| match result {
            Err(err) if err.code() == Some(code) && err.to_string().contains(needle) => Ok(()),
            other => Err(anyhow::anyhow!(
                "wanted {code:?} naming {needle:?}, got {other:?}"
            )),
        };
    let poll_once =
        |mut consumer: ShareConsumer| async move { consumer.poll(1, Duration::from_secs(2)).await };
    expect(
        poll_once(client.share_consumer("g").topic("missing").build()).await,
        Code::NotFound,
        "missing",
    )?;
    expect(
        poll_once(client.share_consumer("g").topic("q").prefetch(0).build()).await,
        Code::InvalidArgument,
        "prefetch",
    )?;
    expect(
        poll_once(client.share_consumer("g").topic("q").prefetch(5000).build()).await,
        Code::InvalidArgument,
        "share.max_prefetch",
    )?;
    expect(
        poll_once(client.share_consumer("g").build()).await,
        Code::InvalidArgument,
        "join.topics",
    )?;
    expect(
        poll_once(
            client
                .share_consumer("g")
                .topic("q")
                .delivery_attempt_limit(0)
                .build(),
        )
        .await,
        Code::InvalidArgument,
        "share.delivery.attempt.limit",
    )?;
    expect(
        poll_once(client.share_consumer("a b").topic("q").build()).await,
        Code::InvalidArgument,
        "a b",
    )?;

    let missing = admin
        .describe_share_group("nobody")
        .await
        .expect_err("found");
    ensure!(missing.code() == Some(Code::NotFound), "{missing}");
    let mut member = client.share_consumer("g").topic("q").build();
    ensure!(member.poll(1, Duration::from_millis(100)).await?.is_empty());
    let busy = admin.delete_share_group("g").await.expect_err("deleted");
    ensure!(busy.code() == Some(Code::FailedPrecondition), "{busy}");
    let changes = sluice_client::ShareGroupSettings {
        record_lock_duration_ms: Some(u32::MAX),
        ..Default::default()
    };
    let too_long = admin
        .alter_share_group("g", changes)
        .await
        .expect_err("altered");
    ensure!(
        too_long.code() == Some(Code::InvalidArgument)
            && too_long
                .to_string()
                .contains("share.record.lock.duration.ms"),
        "{too_long}"
    );
    member.close().await?;
    admin.delete_share_group("g").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_stream_ends_unavailable_when_the_server_shuts_down() -> Result<()> {
    use sluice_proto::v1::share_groups_client::ShareGroupsClient;
    use sluice_proto::v1::{self as pb, share_consume_request, share_consume_response};

    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let client = connect(&server).await?;
    client.admin().create_topic(NewTopic::new("q", 1)).await?;
    let (requests, outgoing) = tokio::sync::mpsc::channel(4);
    let join = pb::ShareJoin {
        group: "g".into(),
        topics: vec!["q".into()],
        prefetch: 5,
        credit: 5,
        settings: None,
    };
    requests
        .send(pb::ShareConsumeRequest {
            kind: Some(share_consume_request::Kind::Join(join)),
        })
        .await?;
    let mut responses = ShareGroupsClient::new(server.channel().await?)
        .share_consume(tokio_stream::wrappers::ReceiverStream::new(outgoing))
        .await?
        .into_inner();
    let first = responses.message().await?.context("no joined")?;
    ensure!(
        matches!(first.kind, Some(share_consume_response::Kind::Joined(_))),
        "{first:?}"
    );
    let stopped = tokio::task::spawn_blocking(move || server.stop());
    let ended = tokio::time::timeout(PATIENCE, responses.message())
        .await
        .context("the stream did not end")?;
    match ended {
        Err(status) => ensure!(status.code() == tonic::Code::Unavailable, "{status:?}"),
        Ok(other) => bail!("the stream ended without a status: {other:?}"),
    }
    drop(requests);
    stopped.await??;
    Ok(())
}
