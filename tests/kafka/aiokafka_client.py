"""aiokafka as a test client: produce and consume (see records.py)."""

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

import records


async def produce_all(args, outgoing):
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, **args.settings)
    await producer.start()
    try:
        futures = []
        for record in outgoing:
            futures.append(
                await producer.send(
                    args.topic,
                    value=records.raw(record["value"]),
                    key=records.raw(record.get("key")),
                    partition=record.get("partition"),
                    timestamp_ms=record.get("timestamp"),
                    headers=records.headers_of(record),
                )
            )
        await producer.flush()
        for index, future in enumerate(futures):
            try:
                metadata = await future
            except Exception as err:  # noqa: BLE001 - any failure is reported, not raised
                records.failed(index, err)
            else:
                records.delivered(index, metadata.partition, metadata.offset)
    finally:
        await producer.stop()


async def consume_all(args):
    client = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap, enable_auto_commit=False, **args.settings
    )
    await client.start()
    try:
        await client.topics()
        tps = [TopicPartition(args.topic, p) for p in sorted(client.partitions_for_topic(args.topic) or [])]
        ends = {tp.partition: end for tp, end in (await client.end_offsets(tps)).items()}
        progress = records.Progress(args, ends)
        client.assign(tps)
        await client.seek_to_beginning(*tps)
        while not progress.done():
            if progress.expired():
                return False
            for tp, batch in (await client.getmany(timeout_ms=200)).items():
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
        return True
    finally:
        await client.stop()


def produce(args, outgoing):
    asyncio.run(produce_all(args, outgoing))


def consume(args):
    return asyncio.run(consume_all(args))


if __name__ == "__main__":
    records.main(produce, consume)
