#!/usr/bin/env python
"""Single AMQP behaviours, one command each (`basics.py COMMAND`), each on queues of its
own name, printing JSON lines:

get         publishes `one`, `two`, `three` to `get_queue`; basic.get (manual ack) three
            times, printing `got` with the message count the server reported beside each
            (those still ready after it); then a fourth basic.get: `empty`.
nack        publishes `one`, `two`, `three` to `nack_queue`; a consumer (prefetch 3)
            receives all three (`delivered`), then nacks them at once (basic.nack of the
            last delivery tag with multiple and requeue set) and prints each redelivery
            (`redelivered`, acknowledging it) until all three came back.
purge       publishes five messages to `purge_queue`; queue.purge (`purged` with the count
            the server reported), then a passive declare (`after`).
missing     declares the queue `no_such_queue` passively: the server closes the channel
            (`closed`, with the code and text); the connection stays open and a new
            channel on it publishes to and gets from a new queue (`reused`).
redeclare   declares `flip_queue` non-durable, then durable (`closed`, with the code and
            text), then, on a new channel, non-durable again (`redeclared`).
"""

import sys

import pika

from harness import connect, emit, text


def publish(channel, queue, bodies):
    """Declares `queue` and publishes `bodies` to it, each confirmed."""
    channel.queue_declare(queue=queue)
    channel.confirm_delivery()
    for body in bodies:
        channel.basic_publish(exchange='', routing_key=queue, body=body)


def get(channel):
    publish(channel, 'get_queue', ['one', 'two', 'three'])
    for _ in range(3):
        method, properties, body = channel.basic_get(queue='get_queue')
        emit('got', body=text(body), message_count=method.message_count,
             redelivered=method.redelivered, delivery_tag=method.delivery_tag)
        channel.basic_ack(delivery_tag=method.delivery_tag)
    method, properties, body = channel.basic_get(queue='get_queue')
    emit('empty' if method is None else 'unexpected', body=body and text(body))


def nack(channel):
    publish(channel, 'nack_queue', ['one', 'two', 'three'])
    channel.basic_qos(prefetch_count=3)
    deliveries = channel.consume('nack_queue')
    tags = []
    for method, properties, body in deliveries:
        emit('delivered', body=text(body), redelivered=method.redelivered,
             delivery_tag=method.delivery_tag)
        tags.append(method.delivery_tag)
        if len(tags) == 3:
            break
    channel.basic_nack(delivery_tag=tags[-1], multiple=True, requeue=True)
    for count, (method, properties, body) in enumerate(deliveries, start=1):
        emit('redelivered', body=text(body), redelivered=method.redelivered,
             delivery_tag=method.delivery_tag)
        channel.basic_ack(delivery_tag=method.delivery_tag)
        if count == 3:
            break
    channel.cancel()
    emit('after', messages=channel.queue_declare(
        queue='nack_queue', passive=True).method.message_count)


def purge(channel):
    publish(channel, 'purge_queue', [f'message {i}' for i in range(5)])
    purged = channel.queue_purge(queue='purge_queue')
    emit('purged', message_count=purged.method.message_count)
    emit('after', messages=channel.queue_declare(
        queue='purge_queue', passive=True).method.message_count)


def closed(channel, declare):
    """Runs `declare` and prints how the server closed the channel (or that it did not)."""
    try:
        declare()
    except pika.exceptions.ChannelClosedByBroker as error:
        emit('closed', code=error.reply_code, text=error.reply_text,
             channel_open=channel.is_open)
        return
    emit('not_closed')


def missing(channel):
    closed(channel, lambda: channel.queue_declare(queue='no_such_queue', passive=True))
    again = channel.connection.channel()
    publish(again, 'after_missing', ['still here'])
    method, properties, body = again.basic_get(queue='after_missing', auto_ack=True)
    emit('reused', connection_open=channel.connection.is_open,
         body=body and text(body))


def redeclare(channel):
    channel.queue_declare(queue='flip_queue', durable=False)
    closed(channel, lambda: channel.queue_declare(queue='flip_queue', durable=True))
    again = channel.connection.channel()
    declared = again.queue_declare(queue='flip_queue', durable=False)
    emit('redeclared', queue=declared.method.queue,
         messages=declared.method.message_count)


COMMANDS = {'get': get, 'nack': nack, 'purge': purge, 'missing': missing,
            'redeclare': redeclare}

connection = connect()
COMMANDS[sys.argv[1]](connection.channel())
connection.close()
