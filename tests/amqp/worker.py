#!/usr/bin/env python
"""RabbitMQ tutorial 2 (work queues), the worker: takes one task at a time from
`task_queue` (prefetch 1), works a second per dot in it (times the first argument, 1 by
default), then acknowledges it. Prints `ready` once it consumes, then `received` (with the
redelivered flag) and `done` for each task."""

import sys
import time

from harness import connect, emit, text

seconds_per_dot = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0

connection = connect()
channel = connection.channel()

channel.queue_declare(queue='task_queue', durable=True)


def callback(ch, method, properties, body):
    emit('received', body=text(body), redelivered=method.redelivered)
    time.sleep(body.count(b'.') * seconds_per_dot)
    emit('done', body=text(body))
    ch.basic_ack(delivery_tag=method.delivery_tag)


channel.basic_qos(prefetch_count=1)
channel.basic_consume(queue='task_queue', on_message_callback=callback)
emit('ready')

channel.start_consuming()
