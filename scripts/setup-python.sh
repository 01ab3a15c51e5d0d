#!/usr/bin/env bash
# Creates .venv with the Python packages the examples and tests use: grpcio and grpcio-tools
# (examples/python/requirements.txt) and the Kafka clients the Kafka tests drive
# (tests/kafka/requirements.txt). Idempotent: does nothing when they are already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -x .venv/bin/python ]] &&
  .venv/bin/python -c 'import grpc, grpc_tools, kafka, confluent_kafka, aiokafka' 2>/dev/null; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check \
  -r examples/python/requirements.txt -r tests/kafka/requirements.txt
