//! A real Kafka admin client (confluent-kafka's AdminClient) changes a topic's configs with
//! IncrementalAlterConfigs while the server runs: the change shows in DescribeConfigs as the
//! topic's own (source 1), applies to the next produce (`max.message.bytes`), survives a
//! restart, and each refused resource gets its own Kafka error.
mod common;

use std::process::Command;

use anyhow::{Context, Result, ensure};
use common::Server;
use common::kafka::{python, root};
use serde_json::{Value, json};

/// DescribeConfigs' `config_source` of a topic's own setting and of a default.
const DYNAMIC_TOPIC_CONFIG: i64 = 1;
const DEFAULT_CONFIG: i64 = 5;

/// Runs tests/kafka/alter_configs.py and parses the JSON object it prints.
fn drive(bootstrap: &str, topic: &str, mode: &str) -> Result<Value> {
    let out = Command::new(python()?)
        .arg(root().join("tests/kafka/alter_configs.py"))
        .args([bootstrap, topic, mode])
        .output()
        .context("run alter_configs.py")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "alter_configs.py {mode} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).with_context(|| format!("parse {stdout:?}"))
}

/// Checks a refusal is `[error name, message]` with that name and a message holding `needle`.
fn refused(seen: &Value, step: &str, name: &str, needle: &str) -> Result<()> {
    let refusal = &seen[step];
    ensure!(refusal[0] == name, "{step}: expected {name}, got {refusal}");
    let message = refusal[1].as_str().unwrap_or_default();
    ensure!(
        message.contains(needle),
        "{step}: {message:?} lacks {needle:?}"
    );
    Ok(())
}

#[test]
fn admin_client_alters_topic_configs_live_and_describe_tells_overrides() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?.to_owned();

    let seen = drive(&bootstrap, "settings", "alter")?;
    ensure!(
        seen["created"]["retention.ms"] == json!(["604800000", DEFAULT_CONFIG]),
        "{}",
        seen["created"]
    );
    ensure!(seen["set"].is_null(), "set refused: {}", seen["set"]);
    let after_set = &seen["after_set"];
    ensure!(
        after_set["retention.ms"] == json!(["600000", DYNAMIC_TOPIC_CONFIG])
            && after_set["max.message.bytes"] == json!(["2048", DYNAMIC_TOPIC_CONFIG])
            && after_set["segment.bytes"][1] == DEFAULT_CONFIG,
        "{after_set}"
    );
    // The lowered limit holds from the next produce request, without a restart.
    ensure!(
        seen["produce_large"] == "MSG_SIZE_TOO_LARGE",
        "{}",
        seen["produce_large"]
    );
    ensure!(seen["produce_small"].is_null(), "{}", seen["produce_small"]);
    ensure!(seen["validate_only"].is_null(), "{}", seen["validate_only"]);
    ensure!(
        seen["after_validate_only"] == *after_set,
        "validate_only changed the topic: {}",
        seen["after_validate_only"]
    );
    refused(&seen, "invalid", "INVALID_CONFIG", "segment.bytes")?;
    refused(&seen, "append", "INVALID_REQUEST", "APPEND")?;
    refused(&seen, "missing", "UNKNOWN_TOPIC_OR_PART", "no-such-topic")?;
    refused(&seen, "broker", "INVALID_REQUEST", "config file")?;
    ensure!(
        seen["delete"].is_null(),
        "delete refused: {}",
        seen["delete"]
    );
    ensure!(
        seen["after_delete"]["max.message.bytes"] == json!(["1048576", DEFAULT_CONFIG])
            && seen["after_delete"]["retention.ms"] == json!(["600000", DYNAMIC_TOPIC_CONFIG]),
        "{}",
        seen["after_delete"]
    );
    ensure!(
        seen["produce_large_again"].is_null(),
        "{}",
        seen["produce_large_again"]
    );

    // The overrides are the topic's metadata: a restart keeps them.
    ensure!(server.stop()?.success(), "clean shutdown");
    let server = Server::start(dir.path(), &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?;
    let described = drive(bootstrap, "settings", "describe")?;
    ensure!(
        described["described"] == seen["after_delete"],
        "after the restart: {}",
        described["described"]
    );
    Ok(())
}
