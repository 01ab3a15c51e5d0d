#!/usr/bin/env python
"""Steps against a server with --auth, as the user of AMQP_USER and AMQP_PASSWORD
(see harness.py), each printing one JSON line. `secured.py STEP...` logs in (printing
`refused`, with the exception pika raised and its text, and stopping if the server
refuses the login; else `connected`), then runs the steps in order on one channel:

declare:QUEUE           queue.declare QUEUE: `declared`
passive:QUEUE           queue.declare QUEUE passively: `declared`
deadletter:QUEUE:TARGET queue.declare QUEUE with its dead letters going to queue TARGET
                        (the default exchange): `declared`
exchange:NAME           exchange.declare NAME (fanout): `exchange`
bind:QUEUE:EXCHANGE     queue.bind QUEUE to EXCHANGE: `bound`
purge:QUEUE             queue.purge QUEUE: `purged` with the count
delete:QUEUE            queue.delete QUEUE: `deleted` with the count
publish:QUEUE:BODY      with publisher confirms, publishes BODY to QUEUE through the
                        default exchange: `published`
get:QUEUE               basic.get with automatic acknowledgement: `got` (body, or null)
consume:QUEUE:COUNT     consumes COUNT messages, acknowledging each: `consumed` (bodies)
flood:QUEUE:COUNT:SIZE  publishes COUNT messages of SIZE bytes, confirmed, to QUEUE:
                        `flooded` with the seconds it took
follow:QUEUE            consumes QUEUE, acknowledging each message (`delivered` with the
                        body), until the server cancels the consumer: `cancelled`
drain:QUEUE:COUNT       consumes COUNT messages with automatic acknowledgement:
                        `drained` with how many came and the seconds it took
wait                    prints `waiting` and reads a line from stdin (the test changes
                        ACLs meanwhile)

A step the server refuses by closing the channel prints `closed` with the step, the code
and the text, and the next step runs on a new channel.
"""

import sys
import time

import pika

from harness import connect, emit, text


def declare(channel, queue):
    ok = channel.queue_declare(queue=queue)
    emit('declared', queue=ok.method.queue, messages=ok.method.message_count)


def passive(channel, queue):
    ok = channel.queue_declare(queue=queue, passive=True)
    emit('declared', queue=ok.method.queue, messages=ok.method.message_count)


def deadletter(channel, queue, target):
    ok = channel.queue_declare(queue=queue, arguments={
        'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': target})
    emit('declared', queue=ok.method.queue, messages=ok.method.message_count)


def exchange(channel, name):
    channel.exchange_declare(exchange=name, exchange_type='fanout')
    emit('exchange', exchange=name)


def bind(channel, queue, exchange_name):
    channel.queue_bind(queue=queue, exchange=exchange_name)
    emit('bound', queue=queue, exchange=exchange_name)


def purge(channel, queue):
    ok = channel.queue_purge(queue=queue)
    emit('purged', queue=queue, messages=ok.method.message_count)


def delete(channel, queue):
    ok = channel.queue_delete(queue=queue)
    emit('deleted', queue=queue, messages=ok.method.message_count)


def publish(channel, queue, body):
    channel.confirm_delivery()
    channel.basic_publish(exchange='', routing_key=queue, body=body)
    emit('published', queue=queue, body=body)


def get(channel, queue):
    method, properties, body = channel.basic_get(queue=queue, auto_ack=True)
    emit('got', queue=queue, body=None if method is None else text(body))


def consume(channel, queue, count):
    bodies = []
    for method, properties, body in channel.consume(queue, inactivity_timeout=10):
        if method is None:
            break
        bodies.append(text(body))
        channel.basic_ack(delivery_tag=method.delivery_tag)
        if len(bodies) == int(count):
            break
    channel.cancel()
    emit('consumed', queue=queue, bodies=bodies)


def flood(channel, queue, count, size):
    channel.confirm_delivery()
    body = b'x' * int(size)
    started = time.monotonic()
    for _ in range(int(count)):
        channel.basic_publish(exchange='', routing_key=queue, body=body)
    emit('flooded', queue=queue, seconds=time.monotonic() - started)


def drain(channel, queue, count):
    started = time.monotonic()
    received = 0
    for method, properties, body in channel.consume(queue, auto_ack=True,
                                                    inactivity_timeout=20):
        if method is None:
            break
        received += 1
        if received == int(count):
            break
    seconds = time.monotonic() - started
    channel.cancel()
    emit('drained', queue=queue, messages=received, seconds=seconds)


def follow(channel, queue):
    def on_message(ch, method, properties, body):
        ch.basic_ack(delivery_tag=method.delivery_tag)
        emit('delivered', queue=queue, body=text(body))

    channel.add_on_cancel_callback(lambda frame: emit('cancelled', queue=queue))
    channel.basic_consume(queue=queue, on_message_callback=on_message)
    # Returns once the server has cancelled the only consumer.
    channel.start_consuming()


def wait(channel):
    emit('waiting')
    sys.stdin.readline()


STEPS = {'declare': declare, 'passive': passive, 'deadletter': deadletter,
         'exchange': exchange,
         'bind': bind, 'purge': purge, 'delete': delete,
         'publish': publish, 'get': get, 'consume': consume, 'flood': flood,
         'drain': drain, 'follow': follow, 'wait': wait}

try:
    connection = connect()
except pika.exceptions.AMQPConnectionError as error:
    # pika wraps what the server said: the exception's class names its guess.
    emit('refused', error=type(error).__name__, text=str(error))
    sys.exit(0)
emit('connected')
channel = connection.channel()
for step in sys.argv[1:]:
    name, *args = step.split(':')
    if channel.is_closed:
        channel = connection.channel()
    try:
        STEPS[name](channel, *args)
    except pika.exceptions.ChannelClosedByBroker as closed:
        emit('closed', step=step, code=closed.reply_code, text=closed.reply_text)
connection.close()
