"""What the Kafka client programs of these tests share: their command line, and records as
JSON lines.

Each client program (rdkafka_client.py, kafka_python_client.py, aiokafka_client.py) has the
same two commands:

    produce --bootstrap HOST:PORT --topic T [--set KEY=VALUE]... [--pace-ms MS]
        reads records to send from stdin, one JSON object a line
        ({"value": ..., "key": ..., "headers": [[name, value], ...], "timestamp": ms,
        "partition": n}; all but value optional), sends them in order and prints one line
        per record: {"event": "delivered", "index": i, "partition": p, "offset": o} or
        {"event": "failed", "index": i, "error": "..."}.

    consume --bootstrap HOST:PORT --topic T [--set KEY=VALUE]... [--count N] [--timeout S]
        assigns every partition of T (no group), reads from the beginning and prints
        {"event": "record", "topic", "partition", "offset", "key", "value", "headers",
        "timestamp", "timestamp_type"} for each record, until N records came (without
        --count: until every partition reached the end offset it had at the start). Exits
        with status 3 when the timeout passes first.

Keys, values and header values are text (UTF-8); a missing key is null. `--set` passes a
setting to the client library under its own name (numbers are passed as numbers).
"""

import argparse
import json
import sys
import time


def emit(event, **fields):
    """Prints one JSON line (flushed at once, so a test sees it while the program runs)."""
    print(json.dumps({"event": event, **fields}), flush=True)


def delivered(index, partition, offset):
    """Reports that record `index` of the input was acknowledged."""
    emit("delivered", index=index, partition=partition, offset=offset)


def failed(index, error):
    """Reports that record `index` of the input was not acknowledged."""
    emit("failed", index=index, error=str(error))


def consumed(topic, partition, offset, key, value, headers, timestamp, log_append_time):
    """Reports one consumed record; `headers` as (name, bytes) pairs."""
    emit(
        "record",
        topic=topic,
        partition=partition,
        offset=offset,
        key=text(key),
        value=text(value),
        headers=[[name, text(data)] for name, data in headers or []],
        timestamp=timestamp,
        timestamp_type="log_append" if log_append_time else "create",
    )


def text(data):
    """Bytes as text (None stays None)."""
    return None if data is None else data.decode()


def raw(value):
    """Text as bytes (None stays None)."""
    return None if value is None else value.encode()


def headers_of(record):
    """The headers of an input record as (name, bytes) pairs."""
    return [(name, raw(value)) for name, value in record.get("headers", [])]


def settings(pairs):
    """`--set` pairs as a dict; values that are integers become numbers."""
    out = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            out[name] = int(value)
        except ValueError:
            out[name] = value
    return out


class Progress:
    """How far a `consume` is: records seen against the count or the end offsets asked for."""

    def __init__(self, args, end_offsets):
        self.count = args.count
        self.ends = end_offsets
        self.seen = 0
        self.positions = {}
        self.deadline = time.monotonic() + args.timeout

    def record(self, partition, offset):
        """Counts one record."""
        self.seen += 1
        self.positions[partition] = offset + 1

    def done(self):
        """Whether every record asked for came."""
        if self.count is not None:
            return self.seen >= self.count
        return all(self.positions.get(p, 0) >= end for p, end in self.ends.items())

    def expired(self):
        """Whether the timeout passed; says so on stderr."""
        if time.monotonic() < self.deadline:
            return False
        wanted = self.count if self.count is not None else self.ends
        print(f"timed out with {self.seen} records (wanted {wanted})", file=sys.stderr)
        return True


def main(produce, consume, **more):
    """Runs the command named on the command line: `produce(args, records)`,
    `consume(args)`, or one of `more` (name -> (function, add_arguments))."""
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name):
        sub = commands.add_parser(name)
        sub.add_argument("--bootstrap", required=True)
        sub.add_argument("--topic", required=True)
        sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
        return sub

    command("produce").add_argument("--pace-ms", type=float, default=0)
    consume_args = command("consume")
    consume_args.add_argument("--count", type=int)
    consume_args.add_argument("--timeout", type=float, default=15)
    for name, (_, add_arguments) in more.items():
        add_arguments(command(name))
    args = parser.parse_args()
    args.settings = settings(args.set)
    if args.command == "produce":
        records = [json.loads(line) for line in sys.stdin if line.strip()]
        produce(args, records)
    elif args.command == "consume":
        if not consume(args):
            sys.exit(3)
    else:
        more[args.command][0](args)
