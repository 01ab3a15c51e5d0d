#!/usr/bin/env python
"""RabbitMQ tutorial 6 (RPC), the client: `rpc_client.py N...` asks `rpc_queue` for the
Fibonacci number of each N in turn, with an exclusive server-named callback queue as
reply_to and a fresh correlation_id per call, and prints `result` for each answer. A
reply whose correlation_id is not the one awaited is printed as `stray` (and ignored)."""

import sys
import uuid

import pika

from harness import connect, emit


class FibonacciRpcClient(object):

    def __init__(self):
        self.connection = connect()

        self.channel = self.connection.channel()

        result = self.channel.queue_declare(queue='', exclusive=True)
        self.callback_queue = result.method.queue

        self.channel.basic_consume(
            queue=self.callback_queue,
            on_message_callback=self.on_response,
            auto_ack=True)

        self.response = None
        self.corr_id = None

    def on_response(self, ch, method, props, body):
        if self.corr_id == props.correlation_id:
            self.response = body
        else:
            emit('stray', correlation_id=props.correlation_id, body=body.decode())

    def call(self, n):
        self.response = None
        self.corr_id = str(uuid.uuid4())
        self.channel.basic_publish(
            exchange='',
            routing_key='rpc_queue',
            properties=pika.BasicProperties(
                reply_to=self.callback_queue,
                correlation_id=self.corr_id,
            ),
            body=str(n))
        while self.response is None:
            self.connection.process_data_events(time_limit=None)
        return int(self.response)


fibonacci_rpc = FibonacciRpcClient()
for n in map(int, sys.argv[1:]):
    response = fibonacci_rpc.call(n)
    emit('result', n=n, result=response, reply_to=fibonacci_rpc.callback_queue,
         correlation_id=fibonacci_rpc.corr_id)
fibonacci_rpc.connection.close()
