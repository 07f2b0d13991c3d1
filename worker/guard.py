"""A guard for pika callbacks: pika's I/O loop stops for good if a callback raises, so every
callback of the consumer and the intake router runs inside one of these."""

from __future__ import annotations

import functools

import structlog

log = structlog.get_logger()


def guard(event: str, close: str):
    """A decorator for an object's pika callbacks: an exception is logged as ``event`` (with
    the callback's name) and the object's method ``close`` ends its connection cleanly, so
    that its owner reconnects, instead of the exception escaping into pika's loop."""

    def decorate(callback):
        @functools.wraps(callback)
        def wrapper(self, *args, **kwargs):
            try:
                return callback(self, *args, **kwargs)
            except Exception:
                log.exception(event, callback=callback.__name__)
                getattr(self, close)()

        return wrapper

    return decorate


# The consumer's callbacks (``worker.consumer`` and its rooms): a failure closes its
# connection, and ``Consumer.run`` reconnects.
consumer_callback = guard("callback_failed", close="_close_connection")
