#!/usr/bin/env python
"""RabbitMQ tutorial 5 (topics), the publisher: `emit_log_topic.py ROUTING_KEY MESSAGE...`
sends MESSAGE to the topic exchange `topic_logs`."""

import sys

from harness import connect, emit

connection = connect()
channel = connection.channel()

channel.exchange_declare(exchange='topic_logs', exchange_type='topic')

routing_key = sys.argv[1] if len(sys.argv) > 2 else 'anonymous.info'
message = ' '.join(sys.argv[2:]) or 'Hello World!'
channel.basic_publish(
    exchange='topic_logs', routing_key=routing_key, body=message)
emit('sent', routing_key=routing_key, body=message)
connection.close()
