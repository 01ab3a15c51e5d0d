#!/usr/bin/env python
"""RabbitMQ tutorial 2 (work queues), the producer: sends its arguments as one persistent
message to the durable queue `task_queue`."""

import sys

import pika

from harness import connect, emit

connection = connect()
channel = connection.channel()

channel.queue_declare(queue='task_queue', durable=True)

message = ' '.join(sys.argv[1:]) or "Hello World!"
channel.basic_publish(
    exchange='',
    routing_key='task_queue',
    body=message,
    properties=pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent
    ))
emit('sent', body=message)
connection.close()
