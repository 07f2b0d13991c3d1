"""The intake router: moves NS.worker's messages into the partition queues, in order, one
process at a time.

Producers publish to NS.inbound and the contract binds NS.worker to it; a project's id is only
in the body. Every worker process runs a router, and the broker lets one of them route. The
lock is an **exclusive queue**, ``NS.router``: the broker lets one connection at a time
declare it (another gets 405 RESOURCE_LOCKED, which closes that channel), and deletes it
the moment that connection closes, whether its process stopped or was killed. A standby
looks every ``RETRY_EVERY`` seconds whether NS.worker has a consumer, and tries the lock
only when it has none. (An exclusive *subscription*
would need no queue either, but RabbitMQ 3.10 ignores ``exclusive`` on a quorum queue's
consumers: two were granted.) The lock holder then waits until NS.worker has no consumer
left (the previous router's subscription is gone, and with it, in the same step of the
queue, the return of the messages it held) and only then subscribes: it never takes a
message ahead of one its predecessor held. NS.worker keeps the arguments of earlier
releases; a worker of an earlier release that still consumes NS.worker keeps the router
waiting, rather than both taking messages.

The active router reads each message's project id (``worker.partitioning.read``), publishes
the message (body and properties as they came, plus the original exchange and routing key
in the headers our failure copies keep) to ``NS.partitions`` with the partition as the
routing key, and acks it on NS.worker only once the broker has confirmed its copy.
Confirms are pipelined: one channel publishes in delivery order, so each partition receives
a project's messages in NS.inbound's order. A router that dies leaves its unacked messages
to the next one, which copies them again: a partition may hold a message twice (the worker
is idempotent on an event's source and id), and the first copies stay in order.

| event                                  | broker action                                  |
|----------------------------------------|------------------------------------------------|
| copy confirmed                         | basic.ack of the original (``multiple`` for the |
|                                        | run of oldest ones)                            |
| copy nacked or returned (no partition) | close and reconnect: the topology is declared  |
|                                        | again, and the unacked originals come back     |
| NS.worker has a consumer, no lock      | standby: look again in ``RETRY_EVERY`` s       |
| lock refused (405)                     | standby: retry on a fresh channel              |
| NS.worker still has a consumer         | hold the lock, look again in ``RETRY_EVERY`` s |
| connection lost                        | reconnect; the broker hands out the unacked    |
|                                        | originals again, to whichever router is active |
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque

import pika
import structlog
from pika.exceptions import AMQPError
from pika.spec import Basic

from worker.guard import guard
from worker.messages import ORIGINAL_EXCHANGE, ORIGINAL_ROUTING_KEY
from worker.partitioning import partition_of, read
from worker.topology import Topology, close_keeping_order, connection_parameters, declare_all

log = structlog.get_logger()

RESOURCE_LOCKED = 405
RETRY_EVERY = 1.0  # seconds between a standby's tries to become the router
PREFETCH = 1000  # messages in flight between NS.worker and the partitions


_guarded = guard("router_callback_failed", close="_close")


class IntakeRouter:
    def __init__(self, *, amqp_url: str, topology: Topology, heartbeat: int = 10):
        self.amqp_url = amqp_url
        self.topology = topology
        self.heartbeat = heartbeat
        self.stopping = False
        self.active = False  # this process is the router now
        self.routed = 0  # messages copied and acked, for tests and logs
        self._connection: pika.SelectConnection | None = None
        self._thread: threading.Thread | None = None
        self._reset()

    def _reset(self) -> None:
        self._channel = None
        self.active = False
        self.locked = False  # this connection holds NS.router
        self._waited = False
        self._next_seq = 1
        self._seq_to_tag: dict[int, int] = {}  # publish sequence -> NS.worker delivery tag
        self._unacked: deque[int] = deque()  # NS.worker tags, in delivery order
        self._confirmed: set[int] = set()

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> IntakeRouter:
        self._thread = threading.Thread(target=self.run, name="intake-router", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        backoff = 0.5
        while not self.stopping:
            started = time.monotonic()
            try:
                declare_all(self.amqp_url, self.topology)
                connection = pika.SelectConnection(
                    connection_parameters(
                        self.amqp_url,
                        self.heartbeat,
                        f"provisioner-router {self.topology.namespace}",
                    ),
                    on_open_callback=self._on_connection_open,
                    on_open_error_callback=self._on_connection_lost,
                    on_close_callback=self._on_connection_lost,
                )
                self._connection = connection
                self._reset()
                connection.ioloop.start()
            except AMQPError as exc:
                log.warning("router_broker_unreachable", error=type(exc).__name__)
            except Exception:  # a bug must not end the thread: this process would never route
                log.exception("router_failed")
            if self.stopping:
                break
            backoff = 0.5 if time.monotonic() - started > 30 else min(backoff * 2, 30)
            time.sleep(backoff)

    def stop(self, timeout: float = 10.0) -> None:
        """Closes the connection: unacked originals go back to NS.worker for the next router."""
        self.stopping = True
        connection = self._connection
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.ioloop.add_callback_threadsafe(self._close)
        if self._thread is not None:
            self._thread.join(timeout)

    def _close(self) -> None:
        connection = self._connection
        with contextlib.suppress(Exception):
            if connection.is_open:
                if self._channel is not None and self._channel.is_open:
                    close_keeping_order(self._channel)
                connection.close()
            elif connection.is_closed:
                connection.ioloop.stop()

    def _on_connection_lost(self, connection, reason=None) -> None:
        if self.active and not self.stopping:
            log.warning("router_connection_lost", reason=str(reason))
        self.active = False
        connection.ioloop.stop()

    # -- becoming the router ----------------------------------------------------------------
    @_guarded
    def _on_connection_open(self, connection) -> None:
        self._try_to_route()

    def _try_to_route(self) -> None:
        if self.stopping or not self._connection.is_open:
            return
        self._connection.channel(on_open_callback=self._on_channel_open)

    @_guarded
    def _on_channel_open(self, channel) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm)
        channel.basic_qos(prefetch_count=PREFETCH, callback=self._on_qos)

    @_guarded
    def _on_qos(self, _frame) -> None:
        self._look()

    def _look(self) -> None:
        if self.stopping or self._channel is None or not self._channel.is_open:
            return
        self._channel.queue_declare(self.topology.work_queue, passive=True, callback=self._on_look)

    @_guarded
    def _look_again(self) -> None:
        self._look()

    @_guarded
    def _on_look(self, frame) -> None:
        consumers = frame.method.consumer_count
        if not self.locked:
            if consumers:
                # Another router consumes: stay a standby. Asking costs nothing, where a
                # refused lock closes the channel (and pika logs a warning each time).
                self._connection.ioloop.call_later(RETRY_EVERY, self._look_again)
                return
            self._channel.queue_declare(
                self.topology.router_lock,
                exclusive=True,
                arguments={"x-queue-type": "classic"},
                callback=self._on_locked,
            )
            return
        if consumers:  # the previous router's subscription is not gone yet
            if not self._waited:
                log.info("router_waiting", queue=self.topology.work_queue, consumers=consumers)
            self._waited = True
            self._connection.ioloop.call_later(RETRY_EVERY, self._look_again)
            return
        self._channel.basic_consume(
            self.topology.work_queue, self._on_message, auto_ack=False, callback=self._on_consuming
        )

    @_guarded
    def _on_locked(self, _frame) -> None:
        self.locked = True
        self._look()

    @_guarded
    def _on_consuming(self, _frame) -> None:
        self.active = True
        log.info("routing", queue=self.topology.work_queue, partitions=self.topology.partitions)

    def _on_channel_closed(self, _channel, reason) -> None:
        self._channel = None
        if getattr(reason, "reply_code", None) == RESOURCE_LOCKED and not self.locked:
            # Another process routes: wait as a standby, on a fresh channel.
            self._connection.ioloop.call_later(RETRY_EVERY, self._retry)
            return
        if not self.stopping:
            log.warning("router_channel_closed", reason=str(reason))
        self._close()  # reconnect: the lock goes, and the unacked originals come back first

    @_guarded
    def _retry(self) -> None:
        self._try_to_route()

    # -- moving messages ----------------------------------------------------------------------
    @_guarded
    def _on_message(self, channel, method, properties, body: bytes) -> None:
        _, project_id = read(body)
        partition = partition_of(project_id, self.topology.partitions)
        # The worker's failure copies record where a message came from; a copy in a partition
        # says the router, so it carries the original's exchange and key (kept once set: a
        # retried message already has them).
        headers = dict(properties.headers or {})
        headers.setdefault(ORIGINAL_EXCHANGE, method.exchange)
        headers.setdefault(ORIGINAL_ROUTING_KEY, method.routing_key)
        properties.headers = headers
        seq = self._next_seq
        self._next_seq += 1
        self._seq_to_tag[seq] = method.delivery_tag
        self._unacked.append(method.delivery_tag)
        channel.basic_publish(
            self.topology.partition_exchange, str(partition), body, properties, mandatory=True
        )

    @_guarded
    def _on_return(self, _channel, method, _properties, _body) -> None:
        # A partition queue is missing (deleted under us): declare the topology again.
        log.error("router_copy_unroutable", routing_key=method.routing_key)
        self._close()

    @_guarded
    def _on_confirm(self, frame) -> None:
        method = frame.method
        if self._channel is None or not self._channel.is_open:
            return  # closing: what is unacked goes back to NS.worker
        if not isinstance(method, Basic.Ack):
            # The partition refused the copy. Later copies may be stored already, so this one
            # would overtake nothing but follow them: start over from what NS.worker holds.
            log.error("router_copy_refused", sequence=method.delivery_tag)
            self._close()
            return
        seqs = [method.delivery_tag]
        if method.multiple:
            seqs = []
            for seq in self._seq_to_tag:  # insertion order is publish order
                if seq > method.delivery_tag:
                    break
                seqs.append(seq)
        for seq in seqs:
            tag = self._seq_to_tag.pop(seq, None)
            if tag is not None:
                self._confirmed.add(tag)
        highest = None
        while self._unacked and self._unacked[0] in self._confirmed:
            highest = self._unacked.popleft()
            self._confirmed.discard(highest)
            self.routed += 1
        if highest is not None:
            self._channel.basic_ack(highest, multiple=True)
