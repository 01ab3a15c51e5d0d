//! How consumed records are printed.

use std::io::{self, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use sluice_client::ConsumerRecord;

use super::output::write_json;

/// How `sluice consume` prints a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum Format {
    /// The value, as is, then a newline.
    #[default]
    Text,
    /// One JSON object per record: partition, offset, timestamp (ms since the Unix epoch),
    /// key, value and headers.
    Json,
}

/// Help text of `--format`.
pub(crate) const FORMAT_HELP: &str = "How to print each record. `text`: the value as is. \
`json`: one object per line with `partition`, `offset`, `timestamp` (ms since the Unix epoch), \
`key`, `value` and `headers` (a list of {`key`, `value`}). Bytes that are valid UTF-8 are \
printed as strings under `key`/`value`; other bytes are printed base64-encoded (standard \
alphabet, padded) under `key_base64`/`value_base64` instead. A record without a key has \
`\"key\": null`";

/// Writes `record` in `format`.
pub(crate) fn write_record(
    out: &mut impl Write,
    record: &ConsumerRecord,
    format: Format,
) -> io::Result<()> {
    match format {
        Format::Text => {
            out.write_all(&record.value)?;
            out.write_all(b"\n")
        }
        Format::Json => write_json(out, &record_json(record)),
    }
}

/// The JSON form of a record.
pub(crate) fn record_json(record: &ConsumerRecord) -> Value {
    let mut object = Map::new();
    object.insert("partition".into(), json!(record.partition));
    object.insert("offset".into(), json!(record.offset));
    object.insert("timestamp".into(), json!(record.timestamp_ms));
    match &record.key {
        Some(key) => insert_bytes(&mut object, "key", key),
        None => {
            object.insert("key".into(), Value::Null);
        }
    }
    insert_bytes(&mut object, "value", &record.value);
    let headers: Vec<Value> = record
        .headers
        .iter()
        .map(|header| {
            let mut h = Map::new();
            h.insert("key".into(), json!(header.key));
            insert_bytes(&mut h, "value", &header.value);
            Value::Object(h)
        })
        .collect();
    object.insert("headers".into(), Value::Array(headers));
    Value::Object(object)
}

/// Inserts `bytes` as a string under `name` if it is UTF-8, else base64 under `name_base64`.
fn insert_bytes(object: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => object.insert(name.into(), json!(text)),
        Err(_) => object.insert(format!("{name}_base64"), json!(BASE64.encode(bytes))),
    };
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use sluice_client::Header;

    use super::*;

    fn record(key: Option<&'static [u8]>, value: &'static [u8]) -> ConsumerRecord {
        ConsumerRecord {
            topic: Arc::from("t"),
            partition: 2,
            offset: 7,
            timestamp_ms: 1_767_225_600_000,
            key: key.map(Bytes::from_static),
            value: Bytes::from_static(value),
            headers: vec![Header {
                key: "bin".into(),
                value: Bytes::from_static(&[0xff, 0x00]),
            }],
        }
    }

    #[test]
    fn utf8_is_printed_as_text_and_other_bytes_as_base64() {
        let value = record_json(&record(Some(b"k"), &[0xc3, 0x28]));
        assert_eq!(
            value,
            json!({
                "partition": 2,
                "offset": 7,
                "timestamp": 1_767_225_600_000_i64,
                "key": "k",
                "value_base64": "wyg=",
                "headers": [{"key": "bin", "value_base64": "/wA="}],
            })
        );
        let keyless = record_json(&record(None, b"hello"));
        assert_eq!(keyless["key"], Value::Null);
        assert_eq!(keyless["value"], json!("hello"));
    }

    #[test]
    fn text_prints_the_value_only() -> io::Result<()> {
        let mut out = Vec::new();
        write_record(&mut out, &record(Some(b"k"), b"v"), Format::Text)?;
        assert_eq!(out, b"v\n");
        Ok(())
    }
}
