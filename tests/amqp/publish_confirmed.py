#!/usr/bin/env python
"""`publish_confirmed.py QUEUE N`: declares the durable QUEUE, puts the channel in confirm
mode and publishes `message 0` ... `message N-1` to it, persistent and mandatory, each
confirmed by the server before the next is sent (pika raises on a nack or a return).
Prints `confirmed` for each."""

import sys

import pika

from harness import connect, emit

queue, count = sys.argv[1], int(sys.argv[2])

connection = connect()
channel = connection.channel()
channel.queue_declare(queue=queue, durable=True)
channel.confirm_delivery()

for i in range(count):
    body = f'message {i}'
    channel.basic_publish(
        exchange='',
        routing_key=queue,
        body=body,
        properties=pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent),
        mandatory=True)
    emit('confirmed', body=body)
connection.close()
