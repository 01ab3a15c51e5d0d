#!/usr/bin/env python
"""RabbitMQ tutorial 5 (topics), the subscriber: `receive_logs_topic.py BINDING_KEY...`
binds an exclusive server-named queue to the topic exchange `topic_logs` once per binding
key (`*` is one word, `#` zero or more). Prints `ready` once it consumes, then `received`
for each message."""

import sys

from harness import connect, emit, text

connection = connect()
channel = connection.channel()

channel.exchange_declare(exchange='topic_logs', exchange_type='topic')

result = channel.queue_declare('', exclusive=True)
queue_name = result.method.queue

binding_keys = sys.argv[1:]
if not binding_keys:
    sys.stderr.write("Usage: %s [binding_key]...\n" % sys.argv[0])
    sys.exit(1)

for binding_key in binding_keys:
    channel.queue_bind(
        exchange='topic_logs', queue=queue_name, routing_key=binding_key)


def callback(ch, method, properties, body):
    emit('received', routing_key=method.routing_key, body=text(body))


channel.basic_consume(
    queue=queue_name, on_message_callback=callback, auto_ack=True)
emit('ready', queue=queue_name)

channel.start_consuming()
