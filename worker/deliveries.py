"""Messages in, the first half of the hot path: a delivery is recorded on its
subscription and handed to the project's lane; the lane has the processor decide; the
decision waits for the store to be durable (``worker.durability``) and goes on to the I/O
loop, where ``worker.confirms`` publishes and acks it.

A mixin of ``worker.consumer.Consumer``. ``_on_message`` runs on the I/O loop, ``_work``
on a lane thread, ``_hand_over`` on the durability thread: the two threads meet the loop
only under the consumer's ``_state_lock``, which also holds the connection's
``generation``, so that a decision made for a connection that is gone is dropped.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import structlog

from schemas.errors import Unreadable
from worker import metrics
from worker.guard import consumer_callback as guarded
from worker.messages import Decision, Delivery
from worker.partitioning import read
from worker.subscription import Subscription

# The consumer's rooms log as the one logger operators know and filter on.
log = structlog.get_logger("worker.consumer")


class Deliveries:
    @guarded
    def _on_message(self, sub: Subscription, _channel, method, properties, body: bytes) -> None:
        tag = method.delivery_tag
        delivery = Delivery(
            body,
            properties,
            method.exchange,
            method.routing_key,
            method.redelivered,
            run_by=self.incarnation,
        )
        parsed, project_id = read(body)
        key: Any = project_id if project_id is not None else ("unreadable", sub.queue, tag)
        metrics.event_received(None if isinstance(parsed, Unreadable) else parsed.type)
        sub.deliveries += 1
        sub.unacked.append(tag)
        sub.sizes[tag] = len(body)
        window = sub.window
        window.delivered(len(body))
        if not sub.ordered and window.over_bytes() and sub.consumer_tag and not sub.resubscribing:
            self._unsubscribe(sub)  # pause at once; a tick resumes once half the bytes are done
        job = functools.partial(self._work, self.generation, sub, tag, delivery, parsed)
        self.lanes.submit(key, job)

    def _work(
        self, generation: int, sub: Subscription, tag: int, delivery: Delivery, parsed
    ) -> None:
        """Runs on a lane thread."""
        if generation != self.generation:
            return  # that connection is gone; the broker hands the message out again
        if self.stopping:
            return  # shutting down: no new vendor work; the message goes back when we close
        with self._state_lock:
            if generation != self.generation or tag in sub.given_back or sub.releasing:
                return  # given back to the queue unstarted, or its partition let go
            if sub.reopen:
                return  # its channel is closing to requeue in order: it comes back
            sub.started.add(tag)
        context = {"delivery_tag": tag, "attempt": delivery.attempts_before + 1}
        if not isinstance(parsed, Unreadable):
            context.update(
                event_id=parsed.envelope.id, type=parsed.type, project_id=parsed.project_id
            )
        # A lane works one message at a time: its context is replaced, not stacked, and
        # gone once the message is (a thread that runs a lane may run other work too).
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**context)
        try:
            began = time.monotonic()
            decision = self.processor.process(delivery, parsed)
            sub.window.worked(time.monotonic() - began)
            log.info(decision.log, **decision.fields)
        finally:
            structlog.contextvars.clear_contextvars()
        self._durable.submit((generation, sub, tag, decision))

    def _hand_over(self, item: tuple[int, Subscription, int, Decision]) -> None:
        """From the durability thread: the decision's state is on disk; to the I/O loop."""
        generation, _sub, tag, _decision = item
        with self._state_lock:
            if generation != self.generation:
                return  # the connection changed meanwhile: the broker redelivers
            self._decided.append(item)
            if self._wake_pending:
                return  # the loop has yet to drain: it takes this one too
            self._wake_pending = True
            connection = self._connection
        try:
            connection.ioloop.add_callback_threadsafe(self._drain_decided)
        except Exception:  # the loop is gone; the next connection starts afresh
            log.warning("decision_dropped_connection_gone", delivery_tag=tag)


def take_every_delivery(channel, on_message) -> None:
    """Every delivery on our channel goes to ``on_message``, whatever its consumer tag.

    pika (1.x, ``Channel._on_deliver``) rejects, with requeue, a delivery for a subscription
    we have cancelled whose cancel-ok has not arrived yet: the window resizes by cancelling
    and subscribing again, and each resize would bounce the deliveries in flight back to the
    queue, each bounce counting as a delivery (and, on a quorum queue, possibly overtaking
    nothing but still costing a round trip). It also drops, unacked, a delivery for a tag it
    does not know, which would then sit unacked until the connection closed. Both are
    deliveries on our channel, which we may work and ack like any other; the worker has one
    callback for all of them."""

    def on_deliver(method_frame, header_frame, body) -> None:
        on_message(channel, method_frame.method, header_frame.properties, body)

    channel._on_deliver = on_deliver
