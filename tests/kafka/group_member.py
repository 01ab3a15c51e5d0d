"""A member of a Kafka consumer group for the group tests: kafka-python, subscribe(),
enable_auto_commit=False, and a synchronous commit after each record it processed.

    group_member.py --bootstrap HOST:PORT --topic T --group G --name NAME [--process-ms MS]

Prints one JSON line per event, each with "member" (NAME) and "t" (wall-clock ns):
    {"event": "assigned", "partitions": [...]}      after a rebalance gave it partitions
    {"event": "revoked", "partitions": [...]}       before a rebalance takes them
    {"event": "record", "partition", "offset", "value"}   as it starts processing a record
    {"event": "committed", "partition", "offset"}   once the commit of `offset` (the one
                                                    after the record) was acknowledged
    {"event": "commit_failed", "partition", "offset", "error"}
    {"event": "closed"}                              after close() (LeaveGroup)
It runs until it reads a line `leave` (or the end of its input), then closes the consumer.
"""

import argparse
import sys
import threading
import time

from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata
from kafka.errors import KafkaError

import records


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--process-ms", type=float, default=0)
    args = parser.parse_args()

    def emit(event, **fields):
        records.emit(event, member=args.name, t=time.time_ns(), **fields)

    leave = threading.Event()

    def watch_input():
        for line in sys.stdin:
            if line.strip() == "leave":
                break
        leave.set()

    threading.Thread(target=watch_input, daemon=True).start()

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit("revoked", partitions=sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned):
            emit("assigned", partitions=sorted(tp.partition for tp in assigned))

    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        client_id=args.name,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=200,
        max_poll_records=5,
    )
    consumer.subscribe([args.topic], listener=Listener())
    while not leave.is_set():
        for tp, batch in consumer.poll(timeout_ms=100).items():
            if not process(consumer, tp, batch, args.process_ms, emit, leave):
                break
    consumer.close(autocommit=False)
    emit("closed")


def process(consumer, tp, batch, process_ms, emit, leave):
    """Processes and commits the records of one partition in order; False when a commit
    failed (a rebalance: the rest goes to whoever owns the partition next) or it is told
    to leave."""
    for msg in batch:
        if leave.is_set():
            return False
        emit("record", partition=tp.partition, offset=msg.offset, value=records.text(msg.value))
        time.sleep(process_ms / 1000)
        try:
            consumer.commit({tp: OffsetAndMetadata(msg.offset + 1, "", -1)})
        except KafkaError as err:
            emit("commit_failed", partition=tp.partition, offset=msg.offset + 1, error=str(err))
            return False
        emit("committed", partition=tp.partition, offset=msg.offset + 1)
    return True


if __name__ == "__main__":
    main()
