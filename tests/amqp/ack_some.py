#!/usr/bin/env python
"""`ack_some.py QUEUE K`: consumes the durable QUEUE one message at a time (prefetch 1)
with manual acknowledgements, acknowledges the first K messages, and keeps the next one
unacknowledged. Then, on the same channel, declares QUEUE passively: the server answers
only after it handled the acknowledgements sent before, so its `ready` line (the queue's
ready message count) comes once all K are settled. It then holds the unacknowledged
message until it is killed."""

import sys

from harness import connect, emit, text

queue, ack_count = sys.argv[1], int(sys.argv[2])

connection = connect()
channel = connection.channel()
channel.queue_declare(queue=queue, durable=True)
channel.basic_qos(prefetch_count=1)

acked = 0
for method, properties, body in channel.consume(queue):
    if acked < ack_count:
        channel.basic_ack(delivery_tag=method.delivery_tag)
        acked += 1
        emit('acked', body=text(body), redelivered=method.redelivered)
        continue
    emit('holding', body=text(body), redelivered=method.redelivered)
    break

declared = channel.queue_declare(queue=queue, durable=True, passive=True)
emit('ready', messages=declared.method.message_count,
     consumers=declared.method.consumer_count)
while True:
    connection.sleep(1)
