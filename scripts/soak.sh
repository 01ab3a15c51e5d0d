#!/usr/bin/env bash
# The soak test at full length: 100 concurrent clients (producers, subscribers, consumer
# group members joining and leaving) against a release build of the server for 60 s
# (or SLUICE_SOAK_SECS). CI runs the same test for 15 s.
set -euo pipefail
cd "$(dirname "$0")/.."
SLUICE_SOAK_SECS="${SLUICE_SOAK_SECS:-60}" \
    cargo test --release --workspace --test soak -- --nocapture
