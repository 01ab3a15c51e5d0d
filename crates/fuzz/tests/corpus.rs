//! Replays the seed corpus and every saved crash through the fuzz targets, then runs each
//! target on bounded random input and on mutations of its seeds.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sluice_fuzz::{TARGETS, run};

// The server's allocator. The Kafka codec reserves a vector for an array's declared length
// before reading it; mimalloc reserves such a block lazily (nothing resident), as in the
// server, where the system allocator would abort the process on a length like 2^31.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The `fuzz/` directory at the root of the repository.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted; none when the directory does not exist.
fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("read corpus file");
            (path, bytes)
        })
        .collect()
}

#[test]
fn every_seed_and_saved_crash_passes() {
    for target in TARGETS {
        let seeds = inputs("corpus", target);
        assert!(
            seeds.len() >= 3,
            "{target}: expected seeds in fuzz/corpus/{target}"
        );
        for (path, bytes) in seeds.iter().chain(&inputs("regressions", target)) {
            eprintln!("{target}: {}", path.display());
            run(target, bytes);
        }
    }
}

/// Random bytes, and seeds with bytes overwritten, inserted, removed or cut off.
fn input_strategy(seeds: Vec<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    let random = prop::collection::vec(any::<u8>(), 0..600).boxed();
    if seeds.is_empty() {
        return random;
    }
    let mutated = (
        prop::sample::select(seeds),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(mut seed, edits, cut, truncate)| {
            for (at, byte, how) in edits {
                if seed.is_empty() {
                    seed.push(byte);
                    continue;
                }
                let i = at.index(seed.len());
                match how {
                    0 => seed[i] = byte,
                    1 => seed.insert(i, byte),
                    2 => {
                        seed.remove(i);
                    }
                    _ => seed[i] ^= 1 << (byte % 8),
                }
            }
            if truncate && !seed.is_empty() {
                seed.truncate(cut.index(seed.len()));
            }
            seed
        })
        .boxed();
    prop_oneof![1 => random, 3 => mutated].boxed()
}

/// Runs `target` on `cases` generated inputs; a panic fails the test with the input.
fn fuzz(target: &str, cases: u32) {
    let seeds = inputs("corpus", target)
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&input_strategy(seeds), |input| {
        run(target, &input);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{target}: {failure}");
    }
}

#[test]
fn batch_decode_survives_random_and_mutated_input() {
    fuzz("batch_decode", 3000);
}

#[test]
fn segment_recovery_survives_random_and_mutated_input() {
    fuzz("segment_recovery", 300);
}

#[test]
fn request_validation_survives_random_and_mutated_input() {
    fuzz("request_validation", 3000);
}

#[test]
fn kafka_request_survives_random_and_mutated_input() {
    fuzz("kafka_request", 3000);
}
