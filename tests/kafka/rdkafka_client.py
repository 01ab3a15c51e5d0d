"""librdkafka (through confluent-kafka) as a test client: produce, consume (see records.py),
and create-topic (CreateTopics through the admin client)."""

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
from confluent_kafka.admin import AdminClient, NewTopic

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


if __name__ == "__main__":
    try:
        records.main(produce, consume, **{"create-topic": (create_topic, create_topic_arguments)})
    except KafkaException as err:
        sys.exit(f"error: {err}")
