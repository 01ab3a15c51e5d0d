//! cargo-fuzz entry point of `sluice_fuzz::segment_recovery`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::segment_recovery(data));
