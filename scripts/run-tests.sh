#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, storage crash tests and the end-to-end
# tests that start the real `sluice` binary. Installs what the tests need first (a Python
# virtual environment with grpcio for the non-Rust client example and the Kafka clients, and
# kcat).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
scripts/setup-kcat.sh
cargo test --workspace --locked "$@"
