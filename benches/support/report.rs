//! The scenarios of the end-to-end benchmark and its outputs: the printed table, the JSON
//! summary and the HTML report with inline SVG charts (no scripts, no external files).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// One `sluice bench` run of the matrix.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    /// Name in the table, unique in the matrix.
    pub(crate) name: String,
    /// `sluice bench` arguments, mode first (without topic, server and output).
    pub(crate) args: Vec<String>,
    /// A `sluice bench` run to do first on the same topic (replay: the data to replay).
    pub(crate) setup: Vec<String>,
}

impl Scenario {
    /// A scenario running `sluice bench MODE ARGS`.
    pub(crate) fn new(name: &str, mode: &str, args: &[&str]) -> Self {
        Scenario {
            name: name.to_owned(),
            args: std::iter::once(mode)
                .chain(args.iter().copied())
                .map(str::to_owned)
                .collect(),
            setup: Vec::new(),
        }
    }

    /// The topic of the scenario: its name in lower case, with `-` for anything but letters
    /// and digits.
    pub(crate) fn topic(&self) -> String {
        let mut topic = String::from("bench-");
        for c in self.name.chars() {
            if c.is_ascii_alphanumeric() {
                topic.push(c.to_ascii_lowercase());
            } else if !topic.ends_with('-') {
                topic.push('-');
            }
        }
        topic.trim_end_matches('-').to_owned()
    }

    /// Whether the scenario measures throughput (closed loop) rather than latency at a rate.
    fn is_throughput(&self) -> bool {
        !self.args.iter().any(|a| a == "--rate")
    }
}

/// A scenario and the summary `sluice bench --output json` printed for it.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// What ran.
    pub(crate) scenario: Scenario,
    /// What it printed.
    pub(crate) result: Value,
}

impl Outcome {
    fn number(&self, field: &str) -> f64 {
        self.result[field].as_f64().unwrap_or(f64::NAN)
    }

    /// p50, p90, p99, p99.9 and max in milliseconds.
    fn latencies(&self) -> [f64; 5] {
        LATENCY_FIELDS.map(|field| {
            self.result["latency_ms"][field]
                .as_f64()
                .unwrap_or(f64::NAN)
        })
    }
}

/// Fields of `latency_ms`, in order, and their labels.
const LATENCY_FIELDS: [&str; 5] = ["p50", "p90", "p99", "p999", "max"];
const LATENCY_LABELS: [&str; 5] = ["p50", "p90", "p99", "p99.9", "max"];
/// Colours of the latency markers, in the order of [`LATENCY_FIELDS`].
const LATENCY_COLOURS: [&str; 5] = ["#1b9e77", "#7570b3", "#d95f02", "#e7298a", "#444444"];

/// One line about a result, for the progress output.
pub(crate) fn short(result: &Value) -> String {
    if let Some(error) = result.get("error") {
        return format!("failed: {error}");
    }
    let number = |field: &str| result[field].as_f64().unwrap_or(f64::NAN);
    format!(
        "{:>12.0} records/s {:>9.1} MB/s  p99 {:.3} ms",
        number("records_per_sec"),
        number("mb_per_sec"),
        result["latency_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
    )
}

/// The results as an aligned text table.
pub(crate) fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<34} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "scenario",
        "records",
        "records/s",
        "MB/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms"
    );
    for outcome in outcomes {
        if let Some(error) = outcome.result.get("error") {
            let _ = writeln!(out, "{:<34} failed: {error}", outcome.scenario.name);
            continue;
        }
        let [p50, p90, p99, p999, max] = outcome.latencies();
        let _ = writeln!(
            out,
            "{:<34} {:>10.0} {:>12.0} {:>9.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            outcome.scenario.name,
            outcome.number("records"),
            outcome.number("records_per_sec"),
            outcome.number("mb_per_sec"),
            p50,
            p90,
            p99,
            p999,
            max
        );
    }
    out
}

/// Everything measured, with the machine and how the run was sized.
pub(crate) fn summary_json(outcomes: &[Outcome], quick: bool, elapsed: Duration) -> Value {
    let unix_seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    json!({
        "generated_unix_seconds": unix_seconds,
        "quick": quick,
        "seconds": elapsed.as_secs_f64(),
        "machine": {
            "cpus": std::thread::available_parallelism().map_or(0, usize::from),
            "memory_bytes": memory_bytes(),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
        },
        "units": "MB = 10^6 bytes; produce MB/s counts payload bytes, replay counts stored batch bytes; latency in ms",
        "scenarios": outcomes.iter().map(|o| json!({
            "name": o.scenario.name,
            "command": format!("sluice bench {}", o.scenario.args.join(" ")),
            "setup": if o.scenario.setup.is_empty() {
                Value::Null
            } else {
                Value::from(format!("sluice bench {}", o.scenario.setup.join(" ")))
            },
            "result": o.result,
        })).collect::<Vec<_>>(),
    })
}

/// Total memory from /proc/meminfo, if readable.
fn memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The HTML report: a throughput chart, a latency chart and the full table.
pub(crate) fn html(outcomes: &[Outcome], summary: &Value) -> String {
    let mut page = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Sluice benchmark</title>\n\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{padding:2px 8px;text-align:right}td:first-child,th:first-child{text-align:left}\
         tr:nth-child(even){background:#f4f4f4}</style></head><body>\n<h1>Sluice end-to-end benchmark</h1>\n",
    );
    let machine = &summary["machine"];
    let _ = writeln!(
        page,
        "<p>{} CPUs, {:.1} GiB memory, Linux {}; {} run, {:.0} s. Server and load generator on \
         one machine over loopback. MB = 10<sup>6</sup> bytes.</p>",
        machine["cpus"],
        machine["memory_bytes"].as_f64().unwrap_or(0.0) / f64::from(1u32 << 30),
        machine["kernel"].as_str().unwrap_or("?"),
        if summary["quick"] == true {
            "quick"
        } else {
            "full"
        },
        summary["seconds"].as_f64().unwrap_or(0.0),
    );
    page.push_str("<h2>Throughput</h2>\n");
    page.push_str(&throughput_svg(outcomes));
    page.push_str("<h2>Latency percentiles (log scale)</h2>\n");
    page.push_str(&latency_svg(outcomes));
    page.push_str(
        "<h2>All figures</h2>\n<table><tr><th>scenario</th><th>records</th><th>records/s</th>\
         <th>MB/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th>\
         <th>command</th></tr>\n",
    );
    for outcome in outcomes {
        let [p50, p90, p99, p999, max] = outcome.latencies();
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.1}</td><td>{p50:.3}</td><td>{p90:.3}</td>\
             <td>{p99:.3}</td><td>{p999:.3}</td><td>{max:.3}</td><td style=\"text-align:left\"><code>sluice bench {}</code></td></tr>",
            escape(&outcome.scenario.name),
            outcome.result["records"],
            outcome.number("records_per_sec"),
            outcome.number("mb_per_sec"),
            escape(&outcome.scenario.args.join(" ")),
        );
    }
    page.push_str("</table>\n</body></html>\n");
    page
}

/// Width of the label column of the charts.
const LABEL_WIDTH: f64 = 260.0;
/// Width of the plotting area.
const PLOT_WIDTH: f64 = 560.0;
/// Height of one row.
const ROW: f64 = 24.0;

/// Horizontal bars of MB/s for the throughput scenarios, labelled with records/s.
fn throughput_svg(outcomes: &[Outcome]) -> String {
    let rows: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.scenario.is_throughput())
        .collect();
    let top = rows
        .iter()
        .map(|o| o.number("mb_per_sec"))
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max);
    let height = ROW * rows.len() as f64 + 30.0;
    let mut svg = svg_open(height);
    for (i, outcome) in rows.iter().enumerate() {
        let y = ROW * i as f64 + 4.0;
        let mb = outcome.number("mb_per_sec");
        let width = if mb.is_finite() {
            mb / top * PLOT_WIDTH
        } else {
            0.0
        };
        let _ = writeln!(
            svg,
            "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{name}</text>\
             <rect x=\"{LABEL_WIDTH}\" y=\"{y}\" width=\"{width:.1}\" height=\"{h}\" fill=\"#4e79a7\"/>\
             <text x=\"{vx:.1}\" y=\"{ty}\">{mb:.1} MB/s, {rps:.0} rec/s</text>",
            lx = LABEL_WIDTH - 6.0,
            ty = y + ROW * 0.6,
            name = escape(&outcome.scenario.name),
            h = ROW - 6.0,
            vx = LABEL_WIDTH + width + 4.0,
            rps = outcome.number("records_per_sec"),
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// One row per scenario: its latency percentiles as markers on a log axis, joined by a line.
fn latency_svg(outcomes: &[Outcome]) -> String {
    let values = outcomes
        .iter()
        .flat_map(Outcome::latencies)
        .filter(|v| v.is_finite() && *v > 0.0);
    let (low, high) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (low, high) = if low <= high {
        (low, high)
    } else {
        (0.01, 1.0)
    };
    let decades = (
        low.log10().floor() as i32,
        high.log10().ceil().max(low.log10().floor() + 1.0) as i32,
    );
    let span = f64::from(decades.1 - decades.0);
    let x = |ms: f64| LABEL_WIDTH + (ms.log10() - f64::from(decades.0)) / span * PLOT_WIDTH;
    let plot_height = ROW * outcomes.len() as f64;
    let mut svg = svg_open(plot_height + 50.0);
    for decade in decades.0..=decades.1 {
        let ms = 10f64.powi(decade);
        let at = x(ms);
        let _ = writeln!(
            svg,
            "<line x1=\"{at:.1}\" y1=\"0\" x2=\"{at:.1}\" y2=\"{plot_height}\" stroke=\"#ccc\"/>\
             <text x=\"{at:.1}\" y=\"{ty}\" text-anchor=\"middle\">{label} ms</text>",
            ty = plot_height + 14.0,
            label = format_ms(ms),
        );
    }
    for (i, outcome) in outcomes.iter().enumerate() {
        let y = ROW * i as f64 + ROW / 2.0;
        let points = outcome.latencies();
        let _ = write!(
            svg,
            "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{name}</text>",
            lx = LABEL_WIDTH - 6.0,
            ty = y + 4.0,
            name = escape(&outcome.scenario.name),
        );
        if points.iter().all(|v| v.is_finite() && *v > 0.0) {
            let _ = write!(
                svg,
                "<line x1=\"{:.1}\" y1=\"{y}\" x2=\"{:.1}\" y2=\"{y}\" stroke=\"#999\"/>",
                x(points[0]),
                x(points[4]),
            );
            for (value, colour) in points.iter().zip(LATENCY_COLOURS) {
                let _ = write!(
                    svg,
                    "<circle cx=\"{:.1}\" cy=\"{y}\" r=\"4\" fill=\"{colour}\"/>",
                    x(*value)
                );
            }
        }
        svg.push('\n');
    }
    let legend_y = plot_height + 34.0;
    for (i, (label, colour)) in LATENCY_LABELS.iter().zip(LATENCY_COLOURS).enumerate() {
        let lx = LABEL_WIDTH + 80.0 * i as f64;
        let _ = write!(
            svg,
            "<circle cx=\"{lx}\" cy=\"{legend_y}\" r=\"4\" fill=\"{colour}\"/>\
             <text x=\"{tx}\" y=\"{ty}\">{label}</text>",
            tx = lx + 8.0,
            ty = legend_y + 4.0,
        );
    }
    svg.push_str("\n</svg>\n");
    svg
}

/// The opening tag of a chart `height` pixels high.
fn svg_open(height: f64) -> String {
    let width = LABEL_WIDTH + PLOT_WIDTH + 200.0;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n"
    )
}

/// `ms` without trailing zeros (0.01, 0.1, 1, 10, ...).
fn format_ms(ms: f64) -> String {
    let text = format!("{ms:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `text` with the HTML special characters escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
