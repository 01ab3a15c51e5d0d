#!/usr/bin/env bash
# Installs kcat (the Debian package `kcat`), the librdkafka command-line client the Kafka
# tests drive. Does nothing when it is installed; installs it with apt-get when running as
# root (as CI does); otherwise says how to install it and leaves it missing, so that
# tests/kafka_kcat.rs skips on a developer machine (it fails instead when it runs as root or
# under CI).
set -euo pipefail
if command -v kcat >/dev/null 2>&1; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "setup-kcat.sh: kcat is not installed and this is not root; skipping" \
    "(install it with: sudo apt-get install kcat)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Package lists may be missing in a fresh container: fetch them when the package is unknown.
if ! apt-get install -y --no-install-recommends kcat; then
  apt-get update
  apt-get install -y --no-install-recommends kcat
fi
command -v kcat >/dev/null
