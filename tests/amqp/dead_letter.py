#!/usr/bin/env python
"""Dead letters: the queue `work` is declared with x-dead-letter-exchange `dlx` and
x-dead-letter-routing-key `rejected`; the queue `rejected` is bound to the direct exchange
`dlx` with that key. `good 1`, `bad`, `good 2` are published to `work` (confirmed); a
consumer acknowledges the good ones and rejects `bad` without requeueing it (printing
`acked` / `rejected`). `bad` then reaches `rejected`: `dead_letter` prints what basic.get
finds there (body, exchange, routing key, the x-death header), and `after` the ready
message counts of both queues."""

import time

import pika

from harness import connect, emit, text

connection = connect()
channel = connection.channel()

channel.exchange_declare(exchange='dlx', exchange_type='direct')
channel.queue_declare(queue='rejected')
channel.queue_bind(exchange='dlx', queue='rejected', routing_key='rejected')
channel.queue_declare(queue='work', arguments={
    'x-dead-letter-exchange': 'dlx',
    'x-dead-letter-routing-key': 'rejected',
})

channel.confirm_delivery()
bodies = ['good 1', 'bad', 'good 2']
for body in bodies:
    channel.basic_publish(exchange='', routing_key='work', body=body)

channel.basic_qos(prefetch_count=1)
for method, properties, body in channel.consume('work'):
    if body == b'bad':
        channel.basic_reject(delivery_tag=method.delivery_tag, requeue=False)
        emit('rejected', body=text(body))
    else:
        channel.basic_ack(delivery_tag=method.delivery_tag)
        emit('acked', body=text(body))
    if method.delivery_tag == len(bodies):
        break
channel.cancel()


def plain(value):
    """A header value as JSON: bytes as text, timestamps dropped."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k != 'time'}
    return value


# Dead-lettering is asynchronous: poll `rejected` for up to 10 s.
deadline = time.monotonic() + 10
while True:
    method, properties, body = channel.basic_get(queue='rejected', auto_ack=True)
    if method is not None or time.monotonic() > deadline:
        break
    time.sleep(0.05)
if method is None:
    emit('no_dead_letter')
else:
    emit('dead_letter', body=text(body), exchange=method.exchange,
         routing_key=method.routing_key, redelivered=method.redelivered,
         x_death=plain((properties.headers or {}).get('x-death')))

counts = {}
for queue in ['work', 'rejected']:
    counts[queue] = channel.queue_declare(queue=queue, passive=True).method.message_count
emit('after', **counts)
connection.close()
