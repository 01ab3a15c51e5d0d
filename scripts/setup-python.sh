#!/usr/bin/env bash
# Creates .venv with the Python packages the examples and tests use: grpcio and grpcio-tools
# (examples/python/requirements.txt), the Kafka clients the Kafka tests drive
# (tests/kafka/requirements.txt) and pika, the AMQP client the AMQP tests drive
# (tests/amqp/requirements.txt). Idempotent: does nothing when they are already installed
# (a confluent-kafka without the share consumer, older than the pinned 2.16, is upgraded).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -x .venv/bin/python ]] &&
  .venv/bin/python -c 'import grpc, grpc_tools, kafka, aiokafka, pika
from confluent_kafka import ShareConsumer' 2>/dev/null; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check \
  -r examples/python/requirements.txt -r tests/kafka/requirements.txt \
  -r tests/amqp/requirements.txt
