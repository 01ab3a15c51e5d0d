//! cargo-fuzz entry point of `sluice_fuzz::request_validation`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::request_validation(data));
