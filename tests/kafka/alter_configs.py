"""Drives confluent-kafka's AdminClient against the Kafka listener: changes a topic's
configs with incremental_alter_configs and reads them back with describe_configs.

Prints one JSON object of what it saw; the Rust test (tests/kafka_alter_configs.rs) checks it.

    alter_configs.py BOOTSTRAP TOPIC alter      create TOPIC, change and probe its configs
    alter_configs.py BOOTSTRAP TOPIC describe   only describe TOPIC's configs
"""

import json
import sys

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

TIMEOUT = 30


def describe(admin, topic):
    """{key: [value, source]} of every config of `topic`."""
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(TIMEOUT)
    return {key: [entry.value, int(entry.source)] for key, entry in entries.items()}


def alter(admin, resource, entries, validate_only=False):
    """None when the change is accepted, else the Kafka error name and message."""
    resource = ConfigResource(resource[0], resource[1], incremental_configs=entries)
    future = admin.incremental_alter_configs([resource], validate_only=validate_only)[resource]
    try:
        future.result(TIMEOUT)
        return None
    except KafkaException as e:
        error = e.args[0]
        return [error.name(), error.str()]


def entry(key, op, value=None):
    return ConfigEntry(key, value, incremental_operation=op)


def produce(bootstrap, topic, size):
    """The delivery error name of one record of `size` bytes, or None when it landed."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    outcome = {}

    def delivered(err, _msg):
        outcome["error"] = err.name() if err else None

    producer.produce(topic, b"x" * size, on_delivery=delivered)
    producer.flush(TIMEOUT)
    return outcome.get("error", "NOT_DELIVERED")


def main():
    bootstrap, topic, mode = sys.argv[1:4]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if mode == "describe":
        print(json.dumps({"described": describe(admin, topic)}))
        return
    admin.create_topics([NewTopic(topic, 1)])[topic].result(TIMEOUT)
    seen = {"created": describe(admin, topic)}
    topic_resource = (ResourceType.TOPIC, topic)
    seen["set"] = alter(
        admin,
        topic_resource,
        [
            entry("retention.ms", AlterConfigOpType.SET, "600000"),
            entry("max.message.bytes", AlterConfigOpType.SET, "2048"),
        ],
    )
    seen["after_set"] = describe(admin, topic)
    seen["produce_large"] = produce(bootstrap, topic, 3000)
    seen["produce_small"] = produce(bootstrap, topic, 1000)
    seen["validate_only"] = alter(
        admin,
        topic_resource,
        [entry("segment.bytes", AlterConfigOpType.SET, "4096")],
        validate_only=True,
    )
    seen["after_validate_only"] = describe(admin, topic)
    seen["invalid"] = alter(
        admin, topic_resource, [entry("segment.bytes", AlterConfigOpType.SET, "12")]
    )
    seen["append"] = alter(
        admin, topic_resource, [entry("retention.ms", AlterConfigOpType.APPEND, "1")]
    )
    seen["missing"] = alter(
        admin,
        (ResourceType.TOPIC, "no-such-topic"),
        [entry("retention.ms", AlterConfigOpType.SET, "1")],
    )
    seen["broker"] = alter(
        admin,
        (ResourceType.BROKER, "0"),
        [entry("log.retention.ms", AlterConfigOpType.SET, "1")],
    )
    seen["delete"] = alter(
        admin, topic_resource, [entry("max.message.bytes", AlterConfigOpType.DELETE)]
    )
    seen["after_delete"] = describe(admin, topic)
    seen["produce_large_again"] = produce(bootstrap, topic, 3000)
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
