#!/usr/bin/env python
"""Delayed retry, RabbitMQ's TTL-plus-dead-letter pattern: the queue `delay` has an
x-message-ttl of 300 ms and dead-letters to the direct exchange `retry`, routing key
`work`; nobody consumes `delay`. A message published there reaches the queue `work`
(bound to `retry`) once it expired: `arrived` prints its body, the x-death reason and
whether it took at least the TTL; `after` prints the ready count of `delay`."""

import time

from harness import connect, emit, text

connection = connect()
channel = connection.channel()
channel.exchange_declare(exchange='retry', exchange_type='direct')
channel.queue_declare(queue='work')
channel.queue_bind(exchange='retry', queue='work', routing_key='work')
channel.queue_declare(queue='delay', arguments={
    'x-message-ttl': 300,
    'x-dead-letter-exchange': 'retry',
    'x-dead-letter-routing-key': 'work',
})
channel.confirm_delivery()
sent = time.monotonic()
channel.basic_publish(exchange='', routing_key='delay', body='try again')
for method, properties, body in channel.consume('work', auto_ack=True, inactivity_timeout=10):
    if method is None:
        emit('timeout')
        break
    waited = time.monotonic() - sent
    emit('arrived', body=text(body), reason=properties.headers['x-death'][0]['reason'],
         waited_the_ttl=waited >= 0.3)
    break
channel.cancel()
emit('after', delay=channel.queue_declare(queue='delay', passive=True).method.message_count)
connection.close()
