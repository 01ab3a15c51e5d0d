#!/usr/bin/env python
"""RabbitMQ tutorial 3 (publish/subscribe), the subscriber: an exclusive queue named by
the server, bound to the fanout exchange `logs`. Prints `ready` (with the queue's name)
once it consumes, then `received` for each message."""

from harness import connect, emit, text

connection = connect()
channel = connection.channel()

channel.exchange_declare(exchange='logs', exchange_type='fanout')

result = channel.queue_declare(queue='', exclusive=True)
queue_name = result.method.queue

channel.queue_bind(exchange='logs', queue=queue_name)


def callback(ch, method, properties, body):
    emit('received', body=text(body), exchange=method.exchange,
         routing_key=method.routing_key, redelivered=method.redelivered)


channel.basic_consume(
    queue=queue_name, on_message_callback=callback, auto_ack=True)
emit('ready', queue=queue_name)

channel.start_consuming()
