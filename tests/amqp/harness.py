"""What the AMQP test programs share: where the server is, and their output as JSON lines.

Every program but the hello-world pair (send.py, receive.py: RabbitMQ's tutorial code as
it is, on localhost:5672) dials AMQP_ADDR (host:port; default localhost:5672, where the
tutorials connect), logs in as AMQP_USER with AMQP_PASSWORD (default guest/guest, pika's
own default) and prints one JSON object a line, flushed at once, so that a test sees each
event while the program runs. With AMQP_CA_CERT set (a PEM file of the CA that signed the
server's certificate, issued for `localhost`), they connect over TLS (AMQPS); with
AMQP_CLIENT_CERT and AMQP_CLIENT_KEY too, they present that client certificate and log in
with EXTERNAL (the certificate's name is the user) instead of a password.
"""

import json
import os
import ssl

import pika


def parameters():
    """Connection parameters for the server at AMQP_ADDR, as AMQP_USER (over TLS with
    AMQP_CA_CERT)."""
    host, _, port = os.environ.get('AMQP_ADDR', 'localhost:5672').rpartition(':')
    credentials = pika.PlainCredentials(os.environ.get('AMQP_USER', 'guest'),
                                        os.environ.get('AMQP_PASSWORD', 'guest'))
    ca = os.environ.get('AMQP_CA_CERT')
    if ca is None:
        return pika.ConnectionParameters(host=host, port=int(port), credentials=credentials)
    context = ssl.create_default_context(cafile=ca)
    cert = os.environ.get('AMQP_CLIENT_CERT')
    if cert is not None:
        context.load_cert_chain(cert, os.environ['AMQP_CLIENT_KEY'])
        credentials = pika.credentials.ExternalCredentials()
    return pika.ConnectionParameters(
        host=host, port=int(port), credentials=credentials,
        ssl_options=pika.SSLOptions(context, 'localhost'))


def connect():
    """A blocking connection to the server at AMQP_ADDR."""
    return pika.BlockingConnection(parameters())


def emit(event, **fields):
    """Prints one JSON line: {"event": event, **fields}."""
    print(json.dumps({'event': event, **fields}), flush=True)


def text(body):
    """A message body as text (the tests send UTF-8)."""
    return body.decode()
