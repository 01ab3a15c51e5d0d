//! `sluice produce`: one record per line of standard input.

use std::collections::VecDeque;
use std::io::Write;

use anyhow::{Context as _, bail};
use sluice_client::{ProducerRecord, SendFuture};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use super::ConnectArgs;

/// Most records awaiting their acknowledgement before reading more input.
const MAX_OUTSTANDING: usize = 8192;

/// Flags of `sluice produce`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProduceArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Topic to produce to
    topic: String,
    /// Partition to produce every record to (default: by key, or spread over the partitions)
    #[arg(long, value_name = "P")]
    partition: Option<u32>,
    /// Split each line at the first SEP into key and value; a line without SEP is an error
    #[arg(long, value_name = "SEP", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    key_separator: Option<String>,
    /// Print `partition@offset` of every record once acknowledged
    #[arg(long, short)]
    verbose: bool,
}

/// Runs `sluice produce`: sends every line, then waits for every acknowledgement. A bad
/// line stops the input; the lines before it are still sent.
pub(crate) async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let producer = args.connect.connect().await?.producer().build()?;
    let mut input = BufReader::new(tokio::io::stdin());
    let mut outstanding: VecDeque<SendFuture> = VecDeque::new();
    let mut line = Vec::new();
    let mut number = 0u64;
    let mut bad_line = None;
    loop {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .await
            .context("cannot read standard input")?
            == 0
        {
            break;
        }
        number += 1;
        let text = strip_newline(&line);
        let mut record = match split_key(text, args.key_separator.as_deref()) {
            Some((key, value)) => {
                let record = ProducerRecord::new(args.topic.as_str(), value.to_vec());
                match key {
                    Some(key) => record.key(key.to_vec()),
                    None => record,
                }
            }
            None => {
                bad_line = Some(number);
                break;
            }
        };
        record.partition = args.partition;
        outstanding.push_back(producer.send(record));
        if outstanding.len() >= MAX_OUTSTANDING
            && let Some(oldest) = outstanding.pop_front()
        {
            acknowledged(oldest, args.verbose).await?;
        }
    }
    for pending in outstanding {
        acknowledged(pending, args.verbose).await?;
    }
    if let Some(number) = bad_line {
        let separator = args.key_separator.unwrap_or_default();
        bail!("line {number} has no key separator {separator:?}");
    }
    Ok(())
}

/// Waits for one record's acknowledgement and prints where it went if asked to.
async fn acknowledged(pending: SendFuture, verbose: bool) -> anyhow::Result<()> {
    let written = pending.await?;
    if verbose {
        writeln!(
            std::io::stdout().lock(),
            "{}@{}",
            written.partition,
            written.offset
        )?;
    }
    Ok(())
}

/// The line without its `\n` or `\r\n`.
fn strip_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Splits a line into key and value at the first `separator`. Without a separator the
/// whole line is the value; `None` if a separator is given but the line lacks it.
fn split_key<'a>(line: &'a [u8], separator: Option<&str>) -> Option<(Option<&'a [u8]>, &'a [u8])> {
    let Some(separator) = separator.map(str::as_bytes).filter(|s| !s.is_empty()) else {
        return Some((None, line));
    };
    let at = line
        .windows(separator.len())
        .position(|window| window == separator)?;
    Some((Some(&line[..at]), &line[at + separator.len()..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_separator() {
        assert_eq!(
            split_key(b"user-1:a:b", Some(":")),
            Some((Some(&b"user-1"[..]), &b"a:b"[..]))
        );
        assert_eq!(
            split_key(b"k::v", Some("::")),
            Some((Some(&b"k"[..]), &b"v"[..]))
        );
        assert_eq!(
            split_key(b":v", Some(":")),
            Some((Some(&b""[..]), &b"v"[..]))
        );
        assert_eq!(split_key(b"no separator", Some(":")), None);
        assert_eq!(split_key(b"a:b", None), Some((None, &b"a:b"[..])));
    }

    #[test]
    fn newlines_are_stripped() {
        assert_eq!(strip_newline(b"a\r\n"), b"a");
        assert_eq!(strip_newline(b"a\n"), b"a");
        assert_eq!(strip_newline(b"a"), b"a");
        assert_eq!(strip_newline(b"\n"), b"");
    }
}
