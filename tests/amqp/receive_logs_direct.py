#!/usr/bin/env python
"""RabbitMQ tutorial 4 (routing), the subscriber: `receive_logs_direct.py SEVERITY...`
binds an exclusive server-named queue to the direct exchange `direct_logs` once per
severity. Prints `ready` once it consumes, then `received` for each message."""

import sys

from harness import connect, emit, text

connection = connect()
channel = connection.channel()

channel.exchange_declare(exchange='direct_logs', exchange_type='direct')

result = channel.queue_declare(queue='', exclusive=True)
queue_name = result.method.queue

severities = sys.argv[1:]
if not severities:
    sys.stderr.write("Usage: %s [info] [warning] [error]\n" % sys.argv[0])
    sys.exit(1)

for severity in severities:
    channel.queue_bind(
        exchange='direct_logs', queue=queue_name, routing_key=severity)


def callback(ch, method, properties, body):
    emit('received', routing_key=method.routing_key, body=text(body))


channel.basic_consume(
    queue=queue_name, on_message_callback=callback, auto_ack=True)
emit('ready', queue=queue_name)

channel.start_consuming()
