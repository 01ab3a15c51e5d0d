#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS seconds each (default 60), starting from the seed
# corpus in fuzz/corpus/<target>/. Installs cargo-fuzz if missing. Uses the nightly toolchain
# when installed, else the stable one with RUSTC_BOOTSTRAP=1 (libFuzzer needs nightly flags).
# A crash leaves its input in fuzz/artifacts/<target>/: fix the bug, then keep the input in
# fuzz/regressions/<target>/, which `cargo test` replays.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(batch_decode segment_recovery request_validation kafka_request)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi

for target in "${targets[@]}"; do
    # Fuzz in a scratch copy of the seeds, so new corpus entries do not pile up in git.
    work="$(mktemp -d)"
    cp corpus/"$target"/* "$work"/
    echo "== $target: ${seconds}s"
    # The Kafka codec reserves a vector for an array's declared length before reading it
    # (up to 2^31 elements): a large reservation that is never touched. Resident memory,
    # not the size of one malloc, is what must stay bounded.
    cargo "${toolchain[@]}" fuzz run "$target" "$work" -- \
        -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -malloc_limit_mb=1048576
    rm -rf "$work"
done
