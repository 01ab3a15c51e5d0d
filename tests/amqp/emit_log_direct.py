#!/usr/bin/env python
"""RabbitMQ tutorial 4 (routing), the publisher: `emit_log_direct.py SEVERITY MESSAGE...`
sends MESSAGE to the direct exchange `direct_logs` with SEVERITY as routing key."""

import sys

from harness import connect, emit

connection = connect()
channel = connection.channel()

channel.exchange_declare(exchange='direct_logs', exchange_type='direct')

severity = sys.argv[1] if len(sys.argv) > 1 else 'info'
message = ' '.join(sys.argv[2:]) or 'Hello World!'
channel.basic_publish(
    exchange='direct_logs', routing_key=severity, body=message)
emit('sent', routing_key=severity, body=message)
connection.close()
