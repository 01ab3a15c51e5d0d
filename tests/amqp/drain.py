#!/usr/bin/env python
"""`drain.py QUEUE`: takes every message of QUEUE with basic.get, acknowledging each, and
prints `got` for each (body, redelivered flag, the message count the server reported
beside it) until the server answers get-empty; then prints `empty` with the ready message
count a passive declare reports (after the acknowledgements)."""

import sys

from harness import connect, emit, text

queue = sys.argv[1]

connection = connect()
channel = connection.channel()
while True:
    method, properties, body = channel.basic_get(queue=queue)
    if method is None:
        break
    emit('got', body=text(body), redelivered=method.redelivered,
         message_count=method.message_count,
         persistent=properties.delivery_mode == 2)
    channel.basic_ack(delivery_tag=method.delivery_tag)
declared = channel.queue_declare(queue=queue, passive=True)
emit('empty', messages=declared.method.message_count)
connection.close()
