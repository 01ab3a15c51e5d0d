//! `sluice top`: a live view of topics, consumer groups and share groups, read from the server's `/metrics`
//! endpoint. Rates are counter deltas between two scrapes; latency quantiles come from the
//! histogram buckets that filled between them.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::CredentialArgs;
use super::output::Table;

/// Flags of `sluice top`.
#[derive(Debug, clap::Args)]
pub(crate) struct TopArgs {
    /// The server's metrics endpoint (`sluice serve --metrics-listen`)
    #[arg(
        long,
        env = "SLUICE_METRICS",
        default_value = "http://127.0.0.1:9644",
        value_name = "URL"
    )]
    metrics: String,
    #[command(flatten)]
    credentials: CredentialArgs,
    /// Seconds between refreshes (and between the two scrapes of --once)
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    interval: f64,
    /// Print one snapshot, with rates over one interval, and exit
    #[arg(long)]
    once: bool,
}

/// Clears the terminal and moves the cursor home.
const CLEAR_SCREEN: &str = "\x1b[2J\x1b[H";
/// Longest wait for the endpoint's answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
const MB: f64 = 1_000_000.0;

pub(crate) async fn run(args: TopArgs) -> Result<()> {
    // Not `from_secs_f64`, which panics on an interval too long for a `Duration`.
    let interval = Duration::try_from_secs_f64(args.interval)
        .ok()
        .filter(|interval| !interval.is_zero())
        .with_context(|| {
            format!(
                "--interval must be a positive number of seconds, got {}",
                args.interval
            )
        })?;
    let mut endpoint = Endpoint::parse(&args.metrics)?;
    if let Some((user, password)) = args.credentials.given()? {
        // Plain http: a password may cross only the loopback interface.
        ensure!(
            endpoint.is_loopback(),
            "refusing to send the password of {user} in clear to {}: sluice top speaks plain http, so run it on the server's host against a loopback metrics address",
            endpoint.host
        );
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        endpoint.authorization = Some(format!("Basic {token}"));
    }
    let mut previous = endpoint.scrape().await?;
    loop {
        tokio::time::sleep(interval).await;
        let current = endpoint.scrape().await?;
        let mut out = io::stdout().lock();
        if !args.once {
            write!(out, "{CLEAR_SCREEN}")?;
        }
        draw(&mut out, &args.metrics, &previous, &current)?;
        out.flush()?;
        if args.once {
            return Ok(());
        }
        previous = current;
    }
}

/// A `/metrics` URL: `http://host:port[/path]` (the path defaults to `/metrics`).
#[derive(Debug)]
struct Endpoint {
    host: String,
    path: String,
    /// The `authorization` header's value (basic credentials), if any.
    authorization: Option<String>,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint> {
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => bail!("--metrics: only http is supported, not {scheme}"),
            None => url,
        };
        let (host, path) = match rest.find('/') {
            Some(at) if at + 1 < rest.len() => (&rest[..at], &rest[at..]),
            Some(at) => (&rest[..at], "/metrics"),
            None => (rest, "/metrics"),
        };
        ensure!(!host.is_empty(), "--metrics: no host in {url:?}");
        Ok(Endpoint {
            host: host.to_owned(),
            path: path.to_owned(),
            authorization: None,
        })
    }

    /// Whether the host is on this machine's loopback interface (`localhost` or a loopback
    /// address).
    fn is_loopback(&self) -> bool {
        let name = self
            .host
            .rsplit_once(':')
            .map_or(self.host.as_str(), |(name, _)| name);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        name == "localhost"
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// GETs the endpoint once (HTTP/1.1, one connection per scrape).
    async fn scrape(&self) -> Result<Scrape> {
        let body = tokio::time::timeout(SCRAPE_TIMEOUT, self.get())
            .await
            .with_context(|| format!("{}{}: no answer within 10 s", self.host, self.path))??;
        Ok(Scrape {
            at: Instant::now(),
            samples: parse(&body),
        })
    }

    async fn get(&self) -> Result<String> {
        let mut stream = TcpStream::connect(&self.host)
            .await
            .with_context(|| format!("cannot reach the metrics endpoint {}", self.host))?;
        let authorization = self
            .authorization
            .as_ref()
            .map(|value| format!("Authorization: {value}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n{authorization}Connection: close\r\n\r\n",
            self.path, self.host
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let response = String::from_utf8_lossy(&response);
        let (head, body) = response
            .split_once("\r\n\r\n")
            .context("malformed HTTP response")?;
        let status = head.split_whitespace().nth(1).unwrap_or_default();
        ensure!(
            status == "200",
            "{}{} answered {status}",
            self.host,
            self.path
        );
        Ok(body.to_owned())
    }
}

/// One sample: family name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of one scrape and when it was taken.
#[derive(Debug)]
struct Scrape {
    at: Instant,
    samples: Vec<Sample>,
}

impl Scrape {
    /// Samples of family `name`.
    fn family<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// Sum of the samples of `name` whose `label` is `value`.
    fn sum_where(&self, name: &str, label: &str, value: &str) -> f64 {
        self.family(name)
            .filter(|s| s.labels.get(label).is_some_and(|v| v == value))
            .map(|s| s.value)
            // Not `sum()`: an empty float sum is -0.
            .fold(0.0, |total, v| total + v)
    }

    /// Sum of every sample of `name` (0 without any).
    fn sum(&self, name: &str) -> f64 {
        self.family(name).fold(0.0, |total, s| total + s.value)
    }

    /// Distinct values of `label` in family `name`, sorted.
    fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .family(name)
            .filter_map(|s| s.labels.get(label).cloned())
            .collect();
        values.sort();
        values.dedup();
        values
    }

    /// Cumulative bucket counts of histogram `name`, by upper bound.
    fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = self
            .family(&bucket)
            .filter_map(|s| {
                let le = s.labels.get("le")?;
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((bound, s.value))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }
}

/// Parses the Prometheus text format; lines that do not parse are skipped.
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.trim().rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let Some((name, labels)) = series.split_once('{') else {
        return Some(Sample {
            name: series.to_owned(),
            labels: BTreeMap::new(),
            value,
        });
    };
    let mut parsed = BTreeMap::new();
    let mut rest = labels.strip_suffix('}')?;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut label = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => label.push('\n'),
                    c => label.push(c),
                },
                (at, '"') => break at,
                (_, c) => label.push(c),
            }
        };
        parsed.insert(key.trim_start_matches(',').to_owned(), label);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some(Sample {
        name: name.to_owned(),
        labels: parsed,
        value,
    })
}

/// The `q` quantile of the observations histogram `name` got between two scrapes, by linear
/// interpolation within the bucket (as Prometheus's `histogram_quantile`); `None` without
/// observations.
fn quantile(before: &Scrape, after: &Scrape, name: &str, q: f64) -> Option<f64> {
    let earlier: BTreeMap<u64, f64> = before
        .buckets(name)
        .into_iter()
        .map(|(bound, count)| (bound.to_bits(), count))
        .collect();
    let delta: Vec<(f64, f64)> = after
        .buckets(name)
        .into_iter()
        .map(|(bound, count)| {
            let old = earlier.get(&bound.to_bits()).copied().unwrap_or(0.0);
            (bound, (count - old).max(0.0))
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let target = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (bound, count) in delta {
        if count >= target {
            if bound.is_infinite() {
                return Some(lower);
            }
            let share = if count > below {
                (target - below) / (count - below)
            } else {
                1.0
            };
            return Some(lower + (bound - lower) * share);
        }
        (lower, below) = (bound, count);
    }
    Some(lower)
}

/// Milliseconds with enough precision for sub-millisecond fsyncs, or `-`.
fn millis(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "-".to_owned(), |s| format!("{:.2} ms", s * 1000.0))
}

/// A duration in seconds for the delay column.
fn seconds(s: f64) -> String {
    format!("{s:.1}s")
}

fn draw(out: &mut impl Write, url: &str, before: &Scrape, after: &Scrape) -> io::Result<()> {
    let elapsed = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
    let rate = |name: &str, label: &str, value: &str| {
        (after.sum_where(name, label, value) - before.sum_where(name, label, value)).max(0.0)
            / elapsed
    };
    let fsyncs = (after.sum("sluice_fsync_duration_seconds_count")
        - before.sum("sluice_fsync_duration_seconds_count"))
    .max(0.0)
        / elapsed;
    writeln!(out, "sluice top - {url} - over the last {elapsed:.1} s")?;
    writeln!(
        out,
        "fsync p99 {} ({fsyncs:.0}/s)   produce p99 {}   fetch p99 {}   connections {:.0}",
        millis(quantile(
            before,
            after,
            "sluice_fsync_duration_seconds",
            0.99
        )),
        millis(quantile(
            before,
            after,
            "sluice_produce_duration_seconds",
            0.99
        )),
        millis(quantile(
            before,
            after,
            "sluice_fetch_duration_seconds",
            0.99
        )),
        after.sum("sluice_grpc_connections"),
    )?;
    writeln!(out)?;

    let mut topics = Table::new(&[
        "TOPIC",
        "PARTITIONS",
        "IN REC/S",
        "IN MB/S",
        "OUT REC/S",
        "OUT MB/S",
        "END OFFSET",
        "SIZE MB",
        "FAILED",
    ]);
    for topic in after.label_values("sluice_partition_high_watermark", "topic") {
        let partitions = after
            .family("sluice_partition_high_watermark")
            .filter(|s| s.labels.get("topic") == Some(&topic))
            .count();
        topics.row(vec![
            topic.clone(),
            partitions.to_string(),
            format!(
                "{:.0}",
                rate("sluice_partition_records_in_total", "topic", &topic)
            ),
            format!(
                "{:.2}",
                rate("sluice_partition_bytes_in_total", "topic", &topic) / MB
            ),
            format!(
                "{:.0}",
                rate("sluice_partition_records_out_total", "topic", &topic)
            ),
            format!(
                "{:.2}",
                rate("sluice_partition_bytes_out_total", "topic", &topic) / MB
            ),
            format!(
                "{:.0}",
                after.sum_where("sluice_partition_high_watermark", "topic", &topic)
            ),
            format!(
                "{:.1}",
                after.sum_where("sluice_partition_size_bytes", "topic", &topic) / MB
            ),
            format!(
                "{:.0}",
                after.sum_where("sluice_partition_failed", "topic", &topic)
            ),
        ]);
    }
    topics.write(out)?;
    writeln!(out)?;

    let mut groups = Table::new(&["GROUP", "MEMBERS", "LAG", "LAG REC/S", "MAX DELAY"]);
    for group in after.label_values("sluice_group_members", "group") {
        let lag_now = after.sum_where("sluice_group_lag_records", "group", &group);
        let lag_then = before.sum_where("sluice_group_lag_records", "group", &group);
        let delay = after
            .family("sluice_group_delay_seconds")
            .filter(|s| s.labels.get("group") == Some(&group))
            .map(|s| s.value)
            .fold(0.0, f64::max);
        groups.row(vec![
            group.clone(),
            format!(
                "{:.0}",
                after.sum_where("sluice_group_members", "group", &group)
            ),
            format!("{lag_now:.0}"),
            format!("{:+.0}", (lag_now - lag_then) / elapsed),
            seconds(delay),
        ]);
    }
    groups.write(out)?;
    writeln!(out)?;
    share_groups(out, before, after, elapsed)
}

/// The share groups: members, the queue's length (waiting records) and delay (age of the
/// oldest waiting record), records in flight, and accept and dead-letter rates.
fn share_groups(
    out: &mut impl Write,
    before: &Scrape,
    after: &Scrape,
    elapsed: f64,
) -> io::Result<()> {
    let rate = |name: &str, group: &str| {
        (after.sum_where(name, "group", group) - before.sum_where(name, "group", group)).max(0.0)
            / elapsed
    };
    let mut groups = Table::new(&[
        "SHARE GROUP",
        "MEMBERS",
        "WAITING",
        "IN FLIGHT",
        "ACCEPTED/S",
        "DEAD-LETTERED/S",
        "DELAY",
    ]);
    for group in after.label_values("sluice_share_group_members", "group") {
        let delay = after
            .family("sluice_share_group_delay_seconds")
            .filter(|s| s.labels.get("group") == Some(&group))
            .map(|s| s.value)
            .fold(0.0, f64::max);
        groups.row(vec![
            group.clone(),
            format!(
                "{:.0}",
                after.sum_where("sluice_share_group_members", "group", &group)
            ),
            format!(
                "{:.0}",
                after.sum_where("sluice_share_group_waiting_records", "group", &group)
            ),
            format!(
                "{:.0}",
                after.sum_where("sluice_share_group_in_flight_records", "group", &group)
            ),
            format!(
                "{:.0}",
                rate("sluice_share_group_accepted_records_total", &group)
            ),
            format!(
                "{:.0}",
                rate("sluice_share_group_dead_lettered_records_total", &group)
            ),
            seconds(delay),
        ]);
    }
    groups.write(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(text: &str) -> Scrape {
        Scrape {
            at: Instant::now(),
            samples: parse(text),
        }
    }

    #[test]
    fn only_loopback_endpoints_get_a_password() {
        for (url, loopback) in [
            ("127.0.0.1:9644", true),
            ("http://localhost:9644/metrics", true),
            ("[::1]:9644", true),
            ("10.0.0.5:9644", false),
            ("metrics.example.com:9644", false),
        ] {
            assert_eq!(
                Endpoint::parse(url).unwrap().is_loopback(),
                loopback,
                "{url}"
            );
        }
    }

    #[test]
    fn parses_samples_with_and_without_labels() {
        let samples = parse(
            "# HELP x y\n# TYPE x gauge\nsluice_grpc_connections 3\n\
             sluice_group_lag_records{group=\"g\",topic=\"a\\\"b\",partition=\"1\"} 42\n",
        );
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].name, "sluice_grpc_connections");
        assert_eq!(samples[0].value, 3.0);
        assert_eq!(samples[1].labels["topic"], "a\"b");
        assert_eq!(samples[1].labels["partition"], "1");
        assert_eq!(samples[1].value, 42.0);
    }

    #[test]
    fn quantile_interpolates_within_the_bucket_of_new_observations() {
        let before = scrape(
            "h_bucket{le=\"0.001\"} 10\nh_bucket{le=\"0.01\"} 10\nh_bucket{le=\"+Inf\"} 10\n",
        );
        let after = scrape(
            "h_bucket{le=\"0.001\"} 10\nh_bucket{le=\"0.01\"} 110\nh_bucket{le=\"+Inf\"} 110\n",
        );
        let p50 = quantile(&before, &after, "h", 0.5).expect("observations");
        assert!((p50 - 0.0055).abs() < 1e-9, "{p50}");
        assert_eq!(quantile(&after, &after, "h", 0.99), None);
    }

    #[test]
    fn share_groups_show_length_delay_and_rates() -> io::Result<()> {
        let before = scrape(
            "sluice_share_group_members{group=\"w\"} 2\n\
             sluice_share_group_accepted_records_total{group=\"w\",topic=\"t\",partition=\"0\"} 100\n",
        );
        let after = scrape(
            "sluice_share_group_members{group=\"w\"} 2\n\
             sluice_share_group_waiting_records{group=\"w\",topic=\"t\",partition=\"0\"} 30\n\
             sluice_share_group_waiting_records{group=\"w\",topic=\"t\",partition=\"1\"} 12\n\
             sluice_share_group_in_flight_records{group=\"w\",topic=\"t\",partition=\"0\"} 4\n\
             sluice_share_group_delay_seconds{group=\"w\",topic=\"t\",partition=\"0\"} 1.5\n\
             sluice_share_group_delay_seconds{group=\"w\",topic=\"t\",partition=\"1\"} 7.25\n\
             sluice_share_group_accepted_records_total{group=\"w\",topic=\"t\",partition=\"0\"} 300\n",
        );
        let mut out = Vec::new();
        share_groups(&mut out, &before, &after, 2.0)?;
        let text = String::from_utf8_lossy(&out);
        let row: Vec<&str> = text
            .lines()
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(row, ["w", "2", "42", "4", "100", "0", "7.2s"], "{text}");
        Ok(())
    }

    #[test]
    fn endpoint_urls_default_the_path() -> Result<()> {
        let e = Endpoint::parse("http://127.0.0.1:9644")?;
        assert_eq!(
            (e.host.as_str(), e.path.as_str()),
            ("127.0.0.1:9644", "/metrics")
        );
        let e = Endpoint::parse("localhost:1/other")?;
        assert_eq!(
            (e.host.as_str(), e.path.as_str()),
            ("localhost:1", "/other")
        );
        assert!(Endpoint::parse("https://x:1").is_err());
        Ok(())
    }
}
