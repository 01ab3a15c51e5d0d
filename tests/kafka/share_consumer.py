"""A Kafka share consumer (KIP-932) through librdkafka's ShareConsumer (confluent-kafka 2.15+,
a preview API), for the share group tests.

    consume --bootstrap HOST:PORT --topic T --group G [--ack MODE] [--count N]
            [--idle S] [--timeout S] [--pace-ms MS] [--set KEY=VALUE]...
        joins share group G reading T and prints {"event": "record", "partition", "offset",
        "value", "delivery_count", "ack"} for each record it gets, acknowledging each
        explicitly as MODE says:
            accept          accept every record (the default)
            release-first   release a record on its first delivery, accept it after
            release         release every record
            reject-odd      reject records whose value ends in an odd digit, accept the rest
            hold            acknowledge nothing and poll no more once records came
                            (to be killed)
        It spends --pace-ms on each record (the work a worker does). It prints
        {"event": "joined"} after its first poll, and stops (committing its
        acknowledgements and leaving the group) once N records came, or once S seconds
        (--idle, default 3) passed without a record; exits with status 3 when --timeout
        seconds pass first.
"""

import argparse
import json
import sys
import time

from confluent_kafka import AcknowledgeType, ShareConsumer


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


def decide(mode, value, delivery_count):
    """The acknowledgement for a record, by mode; None: none."""
    if mode == "accept":
        return AcknowledgeType.ACCEPT
    if mode == "release":
        return AcknowledgeType.RELEASE
    if mode == "release-first":
        return AcknowledgeType.RELEASE if delivery_count == 1 else AcknowledgeType.ACCEPT
    if mode == "reject-odd":
        return AcknowledgeType.REJECT if int(value[-1]) % 2 else AcknowledgeType.ACCEPT
    if mode == "hold":
        return None
    raise ValueError(f"unknown --ack mode {mode}")


NAMES = {AcknowledgeType.ACCEPT: "accept", AcknowledgeType.RELEASE: "release",
         AcknowledgeType.REJECT: "reject", None: "none"}


def setting(text):
    key, _, value = text.partition("=")
    try:
        return key, int(value)
    except ValueError:
        return key, value


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["consume"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--ack", default="accept")
    parser.add_argument("--count", type=int)
    parser.add_argument("--idle", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--pace-ms", type=float, default=0.0)
    parser.add_argument("--set", action="append", default=[], type=setting)
    args = parser.parse_args()

    config = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "share.acknowledgement.mode": "explicit",
        "log_level": 3,
    }
    config.update(dict(args.set))
    consumer = ShareConsumer(config)
    consumer.subscribe([args.topic])
    started = time.monotonic()
    last_record = None
    seen = 0
    joined = False
    while True:
        now = time.monotonic()
        if now - started > args.timeout:
            emit("timeout", seen=seen)
            consumer.close()
            sys.exit(3)
        if args.count is not None and seen >= args.count:
            break
        if args.ack == "hold" and seen > 0:
            # Held until killed: explicit mode refuses another poll before acknowledging,
            # and the client keeps heartbeating meanwhile.
            time.sleep(0.1)
            continue
        if now - (last_record or started) > args.idle:
            break
        messages = consumer.poll(0.5)
        if not joined:
            joined = True
            emit("joined")
        for message in messages:
            if message.error():
                emit("error", error=str(message.error()))
                continue
            value = message.value().decode()
            time.sleep(args.pace_ms / 1000)
            ack = decide(args.ack, value, message.delivery_count())
            if ack is not None:
                consumer.acknowledge(message, ack)
            emit("record", partition=message.partition(), offset=message.offset(),
                 value=value, delivery_count=message.delivery_count(), ack=NAMES[ack])
            seen += 1
            last_record = time.monotonic()
    results = consumer.commit_sync(10)
    for partition, error in (results or {}).items():
        if error is not None:
            emit("ack_failed", partition=partition.partition, error=str(error))
    consumer.close()
    emit("done", seen=seen)


if __name__ == "__main__":
    main()
