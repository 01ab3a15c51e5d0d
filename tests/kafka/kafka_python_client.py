"""kafka-python as a test client: produce, consume (see records.py), and offsets:

    offsets --bootstrap HOST:PORT --topic T --times MS[,MS...]
        prints {"event": "offsets", "beginning": {partition: offset}, "end": {...},
        "for_times": {ms: {partition: {"offset": o, "timestamp": t} or null}}}
        from beginning_offsets, end_offsets and offsets_for_times.

    committed --bootstrap HOST:PORT --topic T --group G
        prints {"event": "committed", "offsets": {partition: offset or null}}: the group's
        committed offsets (OffsetFetch), without joining it.
"""

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

import records


def produce(args, outgoing):
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, **args.settings)
    futures = []
    for record in outgoing:
        futures.append(
            producer.send(
                args.topic,
                value=records.raw(record["value"]),
                key=records.raw(record.get("key")),
                headers=records.headers_of(record),
                partition=record.get("partition"),
                timestamp_ms=record.get("timestamp"),
            )
        )
    producer.flush()
    for index, future in enumerate(futures):
        try:
            metadata = future.get(timeout=0)
        except Exception as err:  # noqa: BLE001 - any failure is reported, not raised
            records.failed(index, err)
        else:
            records.delivered(index, metadata.partition, metadata.offset)
    producer.close()


def partitions(client, topic):
    return [TopicPartition(topic, p) for p in sorted(client.partitions_for_topic(topic) or [])]


def consume(args):
    client = KafkaConsumer(bootstrap_servers=args.bootstrap, enable_auto_commit=False, **args.settings)
    tps = partitions(client, args.topic)
    ends = {tp.partition: end for tp, end in client.end_offsets(tps).items()}
    progress = records.Progress(args, ends)
    client.assign(tps)
    client.seek_to_beginning()
    while not progress.done():
        if progress.expired():
            return False
        for tp, batch in client.poll(timeout_ms=200).items():
            for msg in batch:
                records.consumed(
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    msg.key,
                    msg.value,
                    msg.headers,
                    msg.timestamp,
                    msg.timestamp_type == 1,
                )
                progress.record(tp.partition, msg.offset)
    client.close()
    return True


def offsets(args):
    client = KafkaConsumer(bootstrap_servers=args.bootstrap, **args.settings)
    tps = partitions(client, args.topic)

    def by_partition(found):
        return {tp.partition: value for tp, value in found.items()}

    for_times = {}
    for ms in args.times.split(","):
        found = client.offsets_for_times({tp: int(ms) for tp in tps})
        for_times[ms] = by_partition(
            {
                tp: None if at is None else {"offset": at.offset, "timestamp": at.timestamp}
                for tp, at in found.items()
            }
        )
    records.emit(
        "offsets",
        beginning=by_partition(client.beginning_offsets(tps)),
        end=by_partition(client.end_offsets(tps)),
        for_times=for_times,
    )
    client.close()


def offsets_arguments(parser):
    parser.add_argument("--times", required=True)


def committed(args):
    client = KafkaConsumer(
        bootstrap_servers=args.bootstrap, group_id=args.group, enable_auto_commit=False, **args.settings
    )
    tps = partitions(client, args.topic)
    records.emit("committed", offsets={tp.partition: client.committed(tp) for tp in tps})
    client.close()


def committed_arguments(parser):
    parser.add_argument("--group", required=True)


if __name__ == "__main__":
    records.main(
        produce,
        consume,
        offsets=(offsets, offsets_arguments),
        committed=(committed, committed_arguments),
    )
