"""librdkafka (through confluent-kafka) as a test client: produce, consume (see records.py),
create-topic (CreateTopics through the admin client) and acls (CreateAcls, DescribeAcls and
DeleteAcls through the admin client)."""

import sys
import time

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

import records


def produce(args, outgoing):
    producer = Producer({"bootstrap.servers": args.bootstrap, **args.settings})

    def report(index):
        def on_delivery(err, msg):
            if err is None:
                records.delivered(index, msg.partition(), msg.offset())
            else:
                records.failed(index, err)

        return on_delivery

    for index, record in enumerate(outgoing):
        extra = {}
        if record.get("partition") is not None:
            extra["partition"] = record["partition"]
        if record.get("timestamp") is not None:
            extra["timestamp"] = record["timestamp"]
        while True:
            try:
                producer.produce(
                    args.topic,
                    value=records.raw(record["value"]),
                    key=records.raw(record.get("key")),
                    headers=records.headers_of(record) or None,
                    on_delivery=report(index),
                    **extra,
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        if args.pace_ms:
            time.sleep(args.pace_ms / 1000)
    # Every record gets a report, at the latest when message.timeout.ms passes.
    while len(producer) > 0:
        producer.flush(1)


def consumer(args):
    # No group: assign() and explicit start offsets need no coordinator.
    return Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            **args.settings,
        }
    )


def consume(args):
    client = consumer(args)
    metadata = client.list_topics(args.topic, timeout=10).topics[args.topic]
    if metadata.error is not None:
        raise KafkaException(metadata.error)
    partitions = sorted(metadata.partitions)
    ends = {}
    for p in partitions:
        _, high = client.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10)
        ends[p] = high
    progress = records.Progress(args, ends)
    client.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])
    while not progress.done():
        if progress.expired():
            return False
        msg = client.poll(0.2)
        if msg is None:
            continue
        if msg.error() is not None:
            raise KafkaException(msg.error())
        kind, timestamp = msg.timestamp()
        records.consumed(
            msg.topic(),
            msg.partition(),
            msg.offset(),
            msg.key(),
            msg.value(),
            msg.headers(),
            timestamp,
            kind == TIMESTAMP_LOG_APPEND_TIME,
        )
        progress.record(msg.partition(), msg.offset())
    client.close()
    return True


def create_topic(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap, **args.settings})
    config = dict(pair.split("=", 1) for pair in args.topic_config)
    topic = NewTopic(args.topic, num_partitions=args.partitions, config=config)
    for name, future in admin.create_topics([topic]).items():
        future.result(timeout=10)
        records.emit("created", topic=name)


def create_topic_arguments(parser):
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--topic-config", action="append", default=[], metavar="KEY=VALUE")


def binding_fields(binding):
    return {
        "resource_type": binding.restype.name,
        "name": binding.name,
        "pattern": binding.resource_pattern_type.name,
        "principal": binding.principal,
        "host": binding.host,
        "operation": binding.operation.name,
        "permission": binding.permission_type.name,
    }


def acls(args):
    """Allows `--principal` each `--operation` on topic prefix `--topic`, lists the ACLs that
    apply to topic `--topic`-x, then deletes the principal's ACLs; emits each step."""
    admin = AdminClient({"bootstrap.servers": args.bootstrap, **args.settings})
    created = [
        AclBinding(
            ResourceType.TOPIC,
            args.topic,
            ResourcePatternType.PREFIXED,
            args.principal,
            "*",
            AclOperation[operation.upper()],
            AclPermissionType.ALLOW,
        )
        for operation in args.operation
    ]
    for binding, future in admin.create_acls(created).items():
        future.result(timeout=10)
        records.emit("created", **binding_fields(binding))
    applying = AclBindingFilter(
        ResourceType.TOPIC,
        args.topic + "-x",
        ResourcePatternType.MATCH,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    for binding in admin.describe_acls(applying).result(timeout=10):
        records.emit("described", **binding_fields(binding))
    principal = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        args.principal,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    for _, future in admin.delete_acls([principal]).items():
        for binding in future.result(timeout=10):
            records.emit("deleted", **binding_fields(binding))


def acls_arguments(parser):
    parser.add_argument("--principal", required=True)
    parser.add_argument("--operation", action="append", required=True)


if __name__ == "__main__":
    try:
        records.main(
            produce,
            consume,
            **{
                "create-topic": (create_topic, create_topic_arguments),
                "acls": (acls, acls_arguments),
            },
        )
    except KafkaException as err:
        sys.exit(f"error: {err}")
