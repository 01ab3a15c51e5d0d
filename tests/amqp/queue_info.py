#!/usr/bin/env python
"""Declares each queue named on the command line passively, on a channel of its own, and
prints {"event": "queue", "queue", "messages", "consumers"} (messages: those ready, not
those delivered and unacknowledged), or {"event": "closed", "queue", "code", "text"} when
the server closes the channel instead (404 for a queue that does not exist, 405 for
another connection's exclusive queue)."""

import sys

import pika

from harness import connect, emit

connection = connect()
for queue in sys.argv[1:]:
    channel = connection.channel()
    try:
        ok = channel.queue_declare(queue=queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as closed:
        emit('closed', queue=queue, code=closed.reply_code, text=closed.reply_text)
        continue
    emit('queue', queue=queue, messages=ok.method.message_count,
         consumers=ok.method.consumer_count)
    channel.close()
connection.close()
