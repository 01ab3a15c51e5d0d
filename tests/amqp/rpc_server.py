#!/usr/bin/env python
"""RabbitMQ tutorial 6 (RPC), the server: answers each request on `rpc_queue` (a number)
with its Fibonacci number, sent to the request's reply_to queue under its correlation_id,
then acknowledges the request. Prints `ready` once it consumes, then `request` for each."""

import pika

from harness import connect, emit

connection = connect()
channel = connection.channel()

channel.queue_declare(queue='rpc_queue')


def fib(n):
    if n == 0:
        return 0
    elif n == 1:
        return 1
    else:
        return fib(n - 1) + fib(n - 2)


def on_request(ch, method, props, body):
    n = int(body)
    emit('request', n=n, reply_to=props.reply_to,
         correlation_id=props.correlation_id)
    response = fib(n)

    ch.basic_publish(exchange='',
                     routing_key=props.reply_to,
                     properties=pika.BasicProperties(
                         correlation_id=props.correlation_id),
                     body=str(response))
    ch.basic_ack(delivery_tag=method.delivery_tag)


channel.basic_qos(prefetch_count=1)
channel.basic_consume(queue='rpc_queue', on_message_callback=on_request)
emit('ready')

channel.start_consuming()
