//! cargo-fuzz entry point of `sluice_fuzz::kafka_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::kafka_request(data));
