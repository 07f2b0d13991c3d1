"""Messages out, the second half of the hot path, on the I/O loop only: a decision's
events are published with confirms, and the delivery is acked once every one of them is
confirmed (or rejected when one is refused; see the ack table in ``worker.consumer``).

Confirms are pipelined: a message's outcome events are published without waiting, and the
broker's (possibly ``multiple``) acks are matched to the inbound message by publish
sequence number; a mandatory copy carries an ``x-copy-id`` so that a basic.return finds
its delivery. The bookkeeping lives on the ``worker.subscription`` (numbers are per
channel). A decision whose publish the broker refuses closes a partition's channel instead
of a requeue, which would send the message behind the project's later ones.

A mixin of ``worker.consumer.Consumer``; it reads the consumer's ``generation``, the
decisions the lanes made (``_decided``, under ``_state_lock``), and, for a partition, lets
``worker.ownership`` finish a release once its work is acked.
"""

from __future__ import annotations

import uuid

import structlog
from pika.exceptions import AMQPError
from pika.spec import Basic

from worker import metrics
from worker.guard import consumer_callback as guarded
from worker.messages import COPY_ID, Decision
from worker.subscription import Subscription
from worker.topology import close_keeping_order

# The consumer's rooms log as the one logger operators know and filter on.
log = structlog.get_logger("worker.consumer")


class Confirms:
    @guarded
    def _drain_decided(self) -> None:
        with self._state_lock:
            decided = list(self._decided)
            self._decided.clear()
            self._wake_pending = False
        touched: dict[int, Subscription] = {}
        for generation, sub, tag, decision in decided:
            self._publish_then_ack(generation, sub, tag, decision)
            touched[id(sub)] = sub
        for sub in touched.values():
            self._send_acks(sub)
            if sub.releasing:
                self._finish_release(sub)

    def _publish_then_ack(
        self, generation: int, sub: Subscription, tag: int, decision: Decision
    ) -> None:
        channel = sub.channel
        if generation != self.generation or channel is None or not channel.is_open:
            return
        if decision.reject or not _writable(decision):
            # A header pika cannot write (a producer's odd type): the copy with our verdict
            # cannot be made, so the broker dead-letters the original, with x-death saying why.
            log.error("decision_unwritable_rejected", delivery_tag=tag)
            self._forget(sub, tag)
            channel.basic_reject(tag, requeue=False)
            return
        try:
            self._publish_decision(sub, channel, tag, decision)
        except AMQPError as exc:  # the channel is going away: the broker will redeliver
            log.warning("publish_failed", delivery_tag=tag, error=type(exc).__name__)

    def _publish_decision(self, sub: Subscription, channel, tag: int, decision: Decision) -> None:
        if not decision.publishes:
            sub.ackable.add(tag)
            return
        sub.outstanding[tag] = len(decision.publishes)
        for publish in decision.publishes:
            seq = sub.next_seq
            sub.next_seq += 1
            sub.seq_to_tag[seq] = tag
            properties = publish.properties
            if publish.mandatory:
                copy_id = uuid.uuid4().hex
                properties.headers = {**(properties.headers or {}), COPY_ID: copy_id}
                sub.copies[copy_id] = seq
                sub.copy_ids[seq] = copy_id
            channel.basic_publish(
                publish.exchange,
                publish.routing_key,
                publish.body,
                properties,
                mandatory=publish.mandatory,
            )

    @guarded
    def _on_return(self, sub: Subscription, _channel, method, properties, _body) -> None:
        # RabbitMQ sends basic.return before the basic.ack of the same publish.
        seq = sub.copies.get((properties.headers or {}).get(COPY_ID))
        tag = sub.seq_to_tag.get(seq) if seq else None
        log.error("copy_unroutable", routing_key=method.routing_key, reply=method.reply_text)
        if tag is not None:
            sub.failed_tags.add(tag)

    @guarded
    def _on_confirm(self, sub: Subscription, frame) -> None:
        method = frame.method
        acked = isinstance(method, Basic.Ack)
        if method.multiple:
            seqs = []
            for seq in sub.seq_to_tag:  # insertion order is publish order
                if seq > method.delivery_tag:
                    break
                seqs.append(seq)
        else:
            seqs = [method.delivery_tag]
        for seq in seqs:
            tag = sub.seq_to_tag.pop(seq, None)
            sub.copies.pop(sub.copy_ids.pop(seq, None), None)
            if tag is None:
                continue
            if not acked:
                sub.failed_tags.add(tag)
            sub.outstanding[tag] -= 1
            if sub.outstanding[tag] == 0:
                self._settle(sub, tag)
        self._send_acks(sub)
        if sub.releasing:
            self._finish_release(sub)

    def _settle(self, sub: Subscription, tag: int) -> None:
        del sub.outstanding[tag]
        if tag not in sub.failed_tags:
            sub.ackable.add(tag)
            return
        sub.failed_tags.discard(tag)
        log.warning("publish_refused_requeued", delivery_tag=tag)
        metrics.DECISIONS_REFUSED.inc()
        if sub.ordered:
            # A requeue would put it behind the project's later messages: the channel
            # closes instead, and the broker puts all it held back at the head, in order,
            # each delivery counted; the partition is subscribed again.
            with self._state_lock:
                sub.reopen = True
            if sub.is_open:
                close_keeping_order(sub.channel)
            return
        self._forget(sub, tag)
        # reject, not nack: a requeue that must count as a delivery, so that a message
        # whose outcome the broker refuses every time meets the delivery limit (RabbitMQ
        # 4.3+ counts basic.reject and not basic.nack).
        sub.channel.basic_reject(tag, requeue=True)

    def _forget(self, sub: Subscription, tag: int) -> None:
        """A delivery leaves our hands other than by ``_send_acks`` (rare: a linear search)."""
        with self._state_lock:
            sub.started.discard(tag)
        sub.unacked.remove(tag)
        sub.window.released(sub.sizes.pop(tag, 0))

    def _send_acks(self, sub: Subscription) -> None:
        """Acks what is ackable: the run of oldest deliveries with one ``multiple`` ack (far
        fewer frames, and the broker refills the prefetch window in one burst), the rest one
        by one, so that a message held by a slow vendor call never holds back the others."""
        if not sub.ackable:
            return
        channel = sub.channel
        if channel is None or not channel.is_open:  # the broker hands these out again
            sub.ackable.clear()
            return
        highest = None
        released = sub.window.released
        while sub.unacked and sub.unacked[0] in sub.ackable:
            highest = sub.unacked.popleft()
            released(sub.sizes.pop(highest, 0))
        with self._state_lock:
            sub.started.difference_update(sub.ackable)
        try:
            if highest is not None:
                channel.basic_ack(highest, multiple=True)
            for tag in sub.ackable:
                if tag <= (highest or 0):
                    continue  # in the run just acked
                sub.unacked.remove(tag)
                released(sub.sizes.pop(tag, 0))
                channel.basic_ack(tag)
        except AMQPError as exc:  # the channel is going away: the broker will redeliver
            log.warning("ack_failed", error=type(exc).__name__)
        sub.ackable.clear()


def _writable(decision: Decision) -> bool:
    """False when pika could not encode the properties of one of the decision's copies. Our
    own outcome events are always writable; a failure copy carries the producer's headers."""
    try:
        for publish in decision.publishes:
            if publish.mandatory:
                publish.properties.encode()
    except Exception:
        return False
    return True
