"""The consumer: one pika SelectConnection whose I/O loop owns the socket, and a pool of
lanes (``worker.lanes``) that does the work, one lane per project.

Ack policy, the whole of it (``worker.processing`` decides what a message's decision holds):

| event                                         | broker action                               |
|-----------------------------------------------|---------------------------------------------|
| decision ready, every publish confirmed       | basic.ack                                   |
| a publish nacked, or a mandatory one returned | basic.nack requeue=True (the quorum queue's |
|                                               | delivery limit stops a loop)                |
| connection lost before the ack                | none: the broker redelivers; the journal    |
|                                               | makes the second run harmless               |
| shutdown: lanes drained within the grace      | acks as above, then close                   |
| shutdown: grace expired                       | close; unacked messages go back to the queue|

Threading: pika is not thread-safe. Lanes only compute a decision; they hand it to the I/O
loop with ``add_callback_threadsafe``, and only the I/O loop publishes and acks. Vendor calls
of a minute therefore never starve heartbeats. Confirms are pipelined: a message's outcome
events are published without waiting, and the broker's (possibly ``multiple``) acks are
matched to the inbound message by publish sequence number.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import uuid
from collections import deque
from typing import Any

import pika
import structlog
from pika.exceptions import AMQPError
from pika.spec import Basic

from schemas.errors import Unreadable
from schemas.inbound import parse_inbound
from worker.lanes import Lanes
from worker.messages import COPY_ID, Decision, Delivery
from worker.processing import Processor
from worker.topology import Topology, connection_parameters, declare_all

log = structlog.get_logger()


class Consumer:
    def __init__(
        self,
        *,
        amqp_url: str,
        topology: Topology,
        processor: Processor,
        concurrency: int,
        prefetch: int | None = None,
        heartbeat: int = 10,
        shutdown_grace: float = 30.0,
    ):
        self.amqp_url = amqp_url
        self.topology = topology
        self.processor = processor
        self.lanes = Lanes(concurrency, name="worker")
        # Deliveries the broker may hand over before their acks. A deep window lets the I/O
        # loop take deliveries in large batches, which is most of its cost per event (bench
        # (b): about a quarter more events/s at 512 than at 128); the cap keeps one worker
        # from hoarding a queue that several share.
        self.prefetch = prefetch or min(1000, max(64, concurrency * 32))
        self.heartbeat = heartbeat
        self.shutdown_grace = shutdown_grace
        self.stopping = False
        self.generation = 0
        self._connection: pika.SelectConnection | None = None
        self._channel = None
        self._consumer_tag: str | None = None
        # Decisions the lanes have made, waiting for the I/O loop. The loop is woken once for
        # all that pile up while it is busy, not once per decision.
        self._decided: deque[tuple[int, int, Decision]] = deque()
        self._decided_lock = threading.Lock()
        self._wake_pending = False
        self._reset_confirms()

    def _reset_confirms(self) -> None:
        self._next_seq = 1
        self._seq_to_tag: dict[int, int] = {}  # publish sequence number -> inbound delivery tag
        self._outstanding: dict[int, int] = {}  # inbound delivery tag -> confirms awaited
        self._failed_tags: set[int] = set()
        self._copies: dict[str, int] = {}  # x-copy-id of a mandatory publish -> its sequence
        self._copy_ids: dict[int, str] = {}  # and back, to forget it once confirmed
        self._unacked: deque[int] = deque()  # delivery tags not yet acked, in delivery order
        self._ackable: set[int] = set()  # of those, the ones whose outcomes are confirmed
        with self._decided_lock:  # decisions for a closed connection: the broker redelivers
            self._decided.clear()
            self._wake_pending = False

    # -- lifecycle --------------------------------------------------------------------------
    def run(self) -> None:
        """Consumes until ``stop()``; reconnects with backoff whenever the connection drops."""
        backoff = 0.5
        while not self.stopping:
            started = time.monotonic()
            try:
                declare_all(self.amqp_url, self.topology)
                self.generation += 1
                self._reset_confirms()
                self._connection = pika.SelectConnection(
                    connection_parameters(
                        self.amqp_url,
                        self.heartbeat,
                        f"provisioner-worker {self.topology.namespace}",
                    ),
                    on_open_callback=self._on_connection_open,
                    on_open_error_callback=self._on_connection_lost,
                    on_close_callback=self._on_connection_lost,
                )
                self._connection.ioloop.start()
            except AMQPError as exc:
                log.warning("broker_unreachable", error=type(exc).__name__)
            if self.stopping:
                break
            backoff = 0.5 if time.monotonic() - started > 30 else min(backoff * 2, 30)
            log.warning("reconnecting", in_seconds=backoff)
            time.sleep(backoff)
        self.lanes.close()
        log.info("worker_stopped")

    def stop(self) -> None:
        """Safe from a signal handler or another thread."""
        self.stopping = True
        connection = self._connection
        if connection is not None:
            with contextlib.suppress(Exception):  # the loop may already be gone
                connection.ioloop.add_callback_threadsafe(self._begin_shutdown)

    def _on_connection_open(self, connection) -> None:
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_channel_open(self, channel) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm)
        channel.basic_qos(prefetch_count=self.prefetch, callback=self._on_qos)

    def _on_qos(self, _frame) -> None:
        if self.stopping:
            self._begin_shutdown()
            return
        self._consumer_tag = self._channel.basic_consume(
            self.topology.work_queue, self._on_message, auto_ack=False
        )
        log.info("consuming", queue=self.topology.work_queue, prefetch=self.prefetch)

    def _on_channel_closed(self, _channel, reason) -> None:
        (log.info if self.stopping else log.warning)("channel_closed", reason=str(reason))
        if self._connection and self._connection.is_open:
            self._connection.close()

    def _on_connection_lost(self, connection, reason=None) -> None:
        if not self.stopping:
            log.warning("connection_lost", reason=str(reason))
        self._channel = None
        connection.ioloop.stop()

    def _begin_shutdown(self) -> None:
        log.info("shutting_down", in_flight=self.lanes.pending, grace=self.shutdown_grace)
        if self._channel is not None and self._channel.is_open and self._consumer_tag:
            self._channel.basic_cancel(self._consumer_tag)
            self._consumer_tag = None
        self._wait_drained(time.monotonic() + self.shutdown_grace)

    def _wait_drained(self, deadline: float) -> None:
        drained = self.lanes.pending == 0 and not self._outstanding
        if drained or time.monotonic() >= deadline:
            if not drained:  # unacked messages return to the queue when we close
                log.warning("shutdown_grace_expired", in_flight=self.lanes.pending)
            if self._connection and self._connection.is_open:
                self._connection.close()
            elif self._connection:
                self._connection.ioloop.stop()
            return
        self._connection.ioloop.call_later(0.05, lambda: self._wait_drained(deadline))

    # -- messages in --------------------------------------------------------------------------
    def _on_message(self, _channel, method, properties, body: bytes) -> None:
        delivery = Delivery(
            body, properties, method.exchange, method.routing_key, method.redelivered
        )
        try:
            parsed = parse_inbound(body)
            key: Any = parsed.project_id
        except Unreadable as exc:
            parsed, key = exc, ("unreadable", method.delivery_tag)
        self._unacked.append(method.delivery_tag)
        job = functools.partial(self._work, self.generation, method.delivery_tag, delivery, parsed)
        self.lanes.submit(key, job)

    def _work(self, generation: int, tag: int, delivery: Delivery, parsed) -> None:
        """Runs on a lane thread."""
        if generation != self.generation:
            return  # that connection is gone; the broker hands the message out again
        context = {"delivery_tag": tag, "attempt": delivery.attempts_before + 1}
        if not isinstance(parsed, Unreadable):
            context.update(
                event_id=parsed.envelope.id, type=parsed.type, project_id=parsed.project_id
            )
        # A lane works one message at a time: its context is replaced, not stacked.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**context)
        decision = self.processor.process(delivery, parsed)
        log.info(decision.log, **decision.fields)
        with self._decided_lock:
            self._decided.append((generation, tag, decision))
            if self._wake_pending:
                return  # the loop has yet to drain: it takes this one too
            self._wake_pending = True
        try:
            self._connection.ioloop.add_callback_threadsafe(self._drain_decided)
        except Exception:
            log.warning("decision_dropped_connection_gone", delivery_tag=tag)

    # -- messages out (I/O loop only) ---------------------------------------------------------
    def _drain_decided(self) -> None:
        with self._decided_lock:
            decided = list(self._decided)
            self._decided.clear()
            self._wake_pending = False
        for generation, tag, decision in decided:
            self._publish_then_ack(generation, tag, decision)
        self._send_acks()

    def _publish_then_ack(self, generation: int, tag: int, decision: Decision) -> None:
        channel = self._channel
        if generation != self.generation or channel is None or not channel.is_open:
            return
        try:
            self._publish_decision(channel, tag, decision)
        except AMQPError as exc:  # the channel is going away: the broker will redeliver
            log.warning("publish_failed", delivery_tag=tag, error=type(exc).__name__)

    def _publish_decision(self, channel, tag: int, decision: Decision) -> None:
        if not decision.publishes:
            self._ackable.add(tag)
            return
        self._outstanding[tag] = len(decision.publishes)
        for publish in decision.publishes:
            seq = self._next_seq
            self._next_seq += 1
            self._seq_to_tag[seq] = tag
            properties = publish.properties
            if publish.mandatory:
                copy_id = uuid.uuid4().hex
                properties.headers = {**(properties.headers or {}), COPY_ID: copy_id}
                self._copies[copy_id] = seq
                self._copy_ids[seq] = copy_id
            channel.basic_publish(
                publish.exchange,
                publish.routing_key,
                publish.body,
                properties,
                mandatory=publish.mandatory,
            )

    def _on_return(self, _channel, method, properties, _body) -> None:
        # RabbitMQ sends basic.return before the basic.ack of the same publish.
        seq = self._copies.get((properties.headers or {}).get(COPY_ID))
        tag = self._seq_to_tag.get(seq) if seq else None
        log.error("copy_unroutable", routing_key=method.routing_key, reply=method.reply_text)
        if tag is not None:
            self._failed_tags.add(tag)

    def _on_confirm(self, frame) -> None:
        method = frame.method
        acked = isinstance(method, Basic.Ack)
        if method.multiple:
            seqs = []
            for seq in self._seq_to_tag:  # insertion order is publish order
                if seq > method.delivery_tag:
                    break
                seqs.append(seq)
        else:
            seqs = [method.delivery_tag]
        for seq in seqs:
            tag = self._seq_to_tag.pop(seq, None)
            self._copies.pop(self._copy_ids.pop(seq, None), None)
            if tag is None:
                continue
            if not acked:
                self._failed_tags.add(tag)
            self._outstanding[tag] -= 1
            if self._outstanding[tag] == 0:
                self._settle(tag)
        self._send_acks()

    def _settle(self, tag: int) -> None:
        del self._outstanding[tag]
        if tag in self._failed_tags:
            self._failed_tags.discard(tag)
            log.warning("publish_refused_requeued", delivery_tag=tag)
            self._unacked.remove(tag)  # rare: a linear search is fine
            self._channel.basic_nack(tag, requeue=True)
        else:
            self._ackable.add(tag)

    def _send_acks(self) -> None:
        """Acks what is ackable: the run of oldest deliveries with one ``multiple`` ack (far
        fewer frames, and the broker refills the prefetch window in one burst), the rest one
        by one, so that a message held by a slow vendor call never holds back the others."""
        if not self._ackable:
            return
        channel = self._channel
        if channel is None or not channel.is_open:  # the broker hands these out again
            self._ackable.clear()
            return
        highest = None
        while self._unacked and self._unacked[0] in self._ackable:
            highest = self._unacked.popleft()
            self._ackable.discard(highest)
        try:
            if highest is not None:
                channel.basic_ack(highest, multiple=True)
            for tag in self._ackable:
                self._unacked.remove(tag)
                channel.basic_ack(tag)
        except AMQPError as exc:  # the channel is going away: the broker will redeliver
            log.warning("ack_failed", error=type(exc).__name__)
        self._ackable.clear()
