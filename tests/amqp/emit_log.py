#!/usr/bin/env python
"""RabbitMQ tutorial 3 (publish/subscribe), the publisher: sends its arguments as one
message to the fanout exchange `logs`."""

import sys

from harness import connect, emit

connection = connect()
channel = connection.channel()

channel.exchange_declare(exchange='logs', exchange_type='fanout')

message = ' '.join(sys.argv[1:]) or "info: Hello World!"
channel.basic_publish(exchange='logs', routing_key='', body=message)
emit('sent', body=message)
connection.close()
