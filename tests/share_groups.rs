//! Share groups against the real binary, through the Rust client's `ShareConsumer`: workers
//! killed while holding records, poison records reaching the dead-letter topic, lock
//! renewal and expiry, auto-accept, and a SIGKILL of the server mid-run.
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use common::*;
use sluice_client::{Client, NewTopic, OffsetReset, ProducerRecord, ShareConsumer, ShareRecord};

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
