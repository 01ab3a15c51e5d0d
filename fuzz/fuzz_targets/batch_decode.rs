//! cargo-fuzz entry point of `sluice_fuzz::batch_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::batch_decode(data));
