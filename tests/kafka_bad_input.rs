//! Bad input on the Kafka listener, written by hand over plain TCP: an oversized frame
//! (`kafka.max_request_bytes`), a truncated frame, a malformed header, an unknown API key
//! and an unsupported version each close only their own connection (one log line for the
//! oversized frame); ApiVersions in a version from the future gets UNSUPPORTED_VERSION in a
//! version 0 answer listing the APIs; a Metadata request claiming a huge topic count
//! neither crashes nor hangs the server.
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use common::Server;

const API_VERSIONS: i16 = 18;
const METADATA: i16 = 3;
/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;
/// `kafka.max_request_bytes` of the server of the oversized-frame test.
const LIMIT: usize = 4096;

/// A request frame: size, then a request header version 1 (API key, version, correlation
/// id, client id), then `body`.
fn frame(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let client_id = b"bad-input";
    let mut payload = Vec::new();
    payload.extend_from_slice(&api_key.to_be_bytes());
    payload.extend_from_slice(&version.to_be_bytes());
    payload.extend_from_slice(&correlation_id.to_be_bytes());
    payload.extend_from_slice(&i16::try_from(client_id.len()).unwrap_or(0).to_be_bytes());
    payload.extend_from_slice(client_id);
    payload.extend_from_slice(body);
    let mut out = u32::try_from(payload.len())
        .unwrap_or(0)
        .to_be_bytes()
        .to_vec();
    out.extend(payload);
    out
}

fn connect(addr: &str) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

/// Reads one response frame (without its size).
fn read_frame(stream: &mut TcpStream) -> Result<Vec<u8>> {
    let mut size = [0u8; 4];
    stream
        .read_exact(&mut size)
        .context("read a response size")?;
    let mut body = vec![0u8; usize::try_from(u32::from_be_bytes(size))?];
    stream
        .read_exact(&mut body)
        .context("read a response body")?;
    Ok(body)
}

/// An ApiVersions response in version 0: correlation id, error code, and the APIs as
/// (key, min, max).
#[derive(Debug)]
struct ApiVersions {
    correlation_id: i32,
    error_code: i16,
    apis: Vec<(i16, i16, i16)>,
}

fn parse_api_versions_v0(body: &[u8]) -> Result<ApiVersions> {
    let i16_at = |at: usize| -> Result<i16> {
        let bytes = body.get(at..at + 2).context("response cut short")?;
        Ok(i16::from_be_bytes([bytes[0], bytes[1]]))
    };
    let i32_at = |at: usize| -> Result<i32> {
        let bytes = body.get(at..at + 4).context("response cut short")?;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    };
    let count = usize::try_from(i32_at(6)?)?;
    ensure!(
        body.len() == 10 + 6 * count,
        "{} bytes for {count} APIs",
        body.len()
    );
    let apis = (0..count)
        .map(|i| {
            let at = 10 + 6 * i;
            Ok((i16_at(at)?, i16_at(at + 2)?, i16_at(at + 4)?))
        })
        .collect::<Result<_>>()?;
    Ok(ApiVersions {
        correlation_id: i32_at(0)?,
        error_code: i16_at(4)?,
        apis,
    })
}

/// Asks ApiVersions in version 0 on `stream` and checks the answer is a success.
fn api_versions_answered(stream: &mut TcpStream, correlation_id: i32) -> Result<ApiVersions> {
    stream.write_all(&frame(API_VERSIONS, 0, correlation_id, &[]))?;
    let answer = parse_api_versions_v0(&read_frame(stream)?)?;
    ensure!(
        answer.correlation_id == correlation_id && answer.error_code == 0,
        "{answer:?}"
    );
    ensure!(
        answer.apis.iter().any(|&(key, _, _)| key == METADATA),
        "{answer:?}"
    );
    Ok(answer)
}

/// A fresh connection still gets answers.
fn server_answers(addr: &str) -> Result<()> {
    api_versions_answered(&mut connect(addr)?, 1).map(drop)
}

/// Checks the server closes `stream` (end of stream or reset) without answering.
fn closed(stream: &mut TcpStream, what: &str) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
            ) =>
        {
            Ok(())
        }
        Ok(n) => bail!("{what}: answered {:?} instead of closing", &buf[..n]),
        Err(e) => bail!("{what}: the connection was not closed within 10 s ({e})"),
    }
}

/// Waits until the server's log has a line containing `needle`; the lines that do.
fn log_lines(server: &Server, needle: &str) -> Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<String> = server
            .stderr()
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect();
        if !found.is_empty() {
            return Ok(found);
        }
        ensure!(
            Instant::now() < deadline,
            "no log line with {needle:?}:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_oversized_frame_closes_only_its_connection_with_one_log_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let limit = LIMIT.to_string();
    let server = Server::start_with_env(
        dir.path(),
        &[("SLUICE_KAFKA_MAX_REQUEST_BYTES", &limit)],
        &[],
    )?;
    let addr = server.kafka_addr().context("no Kafka listener")?;
    let mut healthy = connect(addr)?;
    api_versions_answered(&mut healthy, 1)?;

    // Only the size is sent: the server must refuse it before waiting for (or allocating)
    // the body.
    let mut oversized = connect(addr)?;
    let size = u32::try_from(LIMIT + 1)?;
    oversized.write_all(&size.to_be_bytes())?;
    closed(&mut oversized, "a frame one byte over the limit")?;

    api_versions_answered(&mut healthy, 2)?;
    server_answers(addr)?;
    let lines = log_lines(&server, &format!("request frame of {size} bytes refused"))?;
    ensure!(lines.len() == 1, "{lines:?}");
    ensure!(
        lines[0].contains(&format!("the limit is {LIMIT} bytes"))
            && lines[0].contains("kafka.max_request_bytes"),
        "the log line should name the limit and its setting: {}",
        lines[0]
    );

    // Sizes a signed 32-bit field cannot hold, and zero, are refused the same way.
    for size in [0x7fff_ffff_u32, 0xffff_ffff, 0] {
        let mut bad = connect(addr)?;
        bad.write_all(&size.to_be_bytes())?;
        closed(&mut bad, &format!("a frame of declared size {size:#x}"))?;
    }
    api_versions_answered(&mut healthy, 3)?;
    Ok(())
}

#[test]
fn truncated_and_malformed_frames_close_their_connection() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let addr = server.kafka_addr().context("no Kafka listener")?;
    let mut healthy = connect(addr)?;
    api_versions_answered(&mut healthy, 1)?;

    // A frame that ends early: its size says 100 bytes, the client sends 10 and stops
    // writing.
    let mut truncated = connect(addr)?;
    let mut partial = 100u32.to_be_bytes().to_vec();
    partial.extend_from_slice(&frame(API_VERSIONS, 0, 7, &[])[4..14]);
    truncated.write_all(&partial)?;
    truncated.shutdown(Shutdown::Write)?;
    closed(&mut truncated, "a truncated frame")?;

    // A frame too short for a request header.
    let mut headless = connect(addr)?;
    headless.write_all(&[0, 0, 0, 3, 0, API_VERSIONS.to_be_bytes()[1], 0])?;
    closed(&mut headless, "a 3-byte frame")?;

    // A whole frame whose header's client id claims more bytes than the frame holds.
    let mut malformed = connect(addr)?;
    let mut bad_header = frame(API_VERSIONS, 0, 8, &[]);
    bad_header[12..14].copy_from_slice(&500i16.to_be_bytes());
    malformed.write_all(&bad_header)?;
    closed(
        &mut malformed,
        "a header with a client id longer than the frame",
    )?;

    api_versions_answered(&mut healthy, 2)?;
    server_answers(addr)
}

#[test]
fn an_unknown_api_or_an_unsupported_version_closes_the_connection() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let addr = server.kafka_addr().context("no Kafka listener")?;
    let mut healthy = connect(addr)?;
    let served = api_versions_answered(&mut healthy, 1)?;
    let &(_, _, metadata_max) = served
        .apis
        .iter()
        .find(|(key, _, _)| *key == METADATA)
        .context("Metadata is not served")?;

    let mut unknown = connect(addr)?;
    unknown.write_all(&frame(1000, 0, 2, &[]))?;
    closed(&mut unknown, "API key 1000")?;

    let mut unsupported = connect(addr)?;
    unsupported.write_all(&frame(METADATA, metadata_max + 1, 3, &[0, 0, 0, 0]))?;
    closed(
        &mut unsupported,
        &format!("Metadata version {}", metadata_max + 1),
    )?;

    api_versions_answered(&mut healthy, 4)?;
    server_answers(addr)
}

#[test]
fn api_versions_from_the_future_gets_unsupported_version_in_version_0() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let addr = server.kafka_addr().context("no Kafka listener")?;
    let mut stream = connect(addr)?;
    // A newer client's ApiVersions: a flexible header (no tagged fields), then a body in a
    // version this server does not know (here: client software name and version as compact
    // strings, and no tagged fields).
    let body = [
        0x00, 0x05, b'j', b'a', b'v', b'a', 0x04, b'9', b'.', b'9', 0x00,
    ];
    stream.write_all(&frame(API_VERSIONS, 99, 77, &body))?;
    let answer = parse_api_versions_v0(&read_frame(&mut stream)?)?;
    ensure!(
        answer.correlation_id == 77 && answer.error_code == UNSUPPORTED_VERSION,
        "{answer:?}"
    );
    let &(_, min, max) = answer
        .apis
        .iter()
        .find(|(key, _, _)| *key == API_VERSIONS)
        .context("ApiVersions is not listed")?;
    ensure!(min == 0 && (3..99).contains(&max), "{answer:?}");
    ensure!(
        answer
            .apis
            .iter()
            .all(|&(_, min, max)| 0 <= min && min <= max),
        "{answer:?}"
    );
    // The client then retries in a version it found in the list, on the same connection.
    api_versions_answered(&mut stream, 78).map(drop)
}

/// The address space a server may use in the warning test (`ulimit -v`, KiB).
const ADDRESS_SPACE_KIB: &str = "4000000";

#[test]
fn a_huge_topic_count_in_metadata_neither_crashes_nor_hangs_the_server() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // The codec reserves room for a count read off the wire before it checks the bytes
    // behind it; the server's allocator reserves such a block without committing memory
    // (docs/kafka.md), so nothing becomes resident and the request fails to decode.
    let mut server = Server::start_capturing_stderr(dir.path(), &[])?;
    let addr = server.kafka_addr().context("no Kafka listener")?.to_owned();
    server_answers(&addr)?;
    // Metadata version 0 whose topic array claims tens of millions of topics (and then
    // all 2^31 - 1) but holds one byte or none.
    for body in [
        &[0x03, 0x3c, 0x0c, 0x00, 0xb6][..],
        &[0x7f, 0xff, 0xff, 0xff],
    ] {
        let mut stream = connect(&addr)?;
        stream.write_all(&frame(METADATA, 0, 9, body))?;
        // Kafka closes the connection on a request it cannot parse; an answer would be
        // acceptable too, but not silence.
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset) => {}
            Err(e) => bail!("no answer and no close within 10 s for body {body:02x?}: {e}"),
        }
        // A process that aborts may take a moment to be gone.
        std::thread::sleep(Duration::from_millis(200));
        ensure!(
            server.is_running(),
            "the server died on a Metadata v0 request with body {body:02x?}:\n{}",
            server.stderr()
        );
        server_answers(&addr)?;
    }
    Ok(())
}

#[test]
fn an_address_space_limit_is_warned_about_at_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Under an address-space limit the reservation above fails and aborts the process: the
    // documented limitation, which the server names in its log when it starts.
    let limit = format!("ulimit -v {ADDRESS_SPACE_KIB} && exec \"$@\"");
    let server = Server::start_wrapped(&["sh", "-c", &limit, "sh"], dir.path(), &[])?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("ulimit -v") {
        ensure!(
            std::time::Instant::now() < deadline,
            "no warning about the address-space limit:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
