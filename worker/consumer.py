"""The consumer: one pika SelectConnection whose I/O loop owns the socket, and a pool of
lanes (``worker.lanes``) that does the work, one lane per project.

Ack policy, the whole of it (``worker.processing`` decides what a message's decision holds):

| event                                         | broker action                               |
|-----------------------------------------------|---------------------------------------------|
| decision ready, every publish confirmed       | basic.ack                                   |
| a publish nacked, or a mandatory one returned | basic.reject requeue=True: counts as a      |
|                                               | delivery, so the delivery limit stops a loop|
| a decision that cannot be encoded (a foreign  | basic.reject requeue=False: the broker      |
| header pika cannot write)                     | dead-letters it, with its reason in x-death |
| the broker cancels the consumer (the queue    | close and reconnect: the topology is        |
| was deleted, say)                             | declared again and consuming resumes        |
| connection lost before the ack                | none: the broker redelivers; the journal    |
|                                               | makes the second run harmless               |
| shutdown: work under way done within grace    | acks as above, then close; work not yet     |
|                                               | started is not started, and goes back       |
| shutdown: grace expired                       | close; unacked messages go back to the queue|

Threading: pika is not thread-safe. Lanes only compute a decision; they hand it to the I/O
loop with ``add_callback_threadsafe``, and only the I/O loop publishes and acks. Vendor calls
of a minute therefore never starve heartbeats. Confirms are pipelined: a message's outcome
events are published without waiting, and the broker's (possibly ``multiple``) acks are
matched to the inbound message by publish sequence number.

No exception escapes a pika callback: one that did would tear the connection down, requeue
every unacked message and, for a message that causes it, repeat until the delivery limit.
Every callback is ``guarded``; a failure in one closes the connection cleanly, and ``run``
reconnects.

The consumer is one class in rooms, one responsibility each; the others are mixins of
``Consumer`` that share its state (the connection, ``subscriptions`` by queue, and the lock
that guards them against the lanes):

| module                | what it does                                                     |
|-----------------------|------------------------------------------------------------------|
| ``worker.consumer``   | the connection's life: connect, open channels, close, reconnect, |
|                       | shut down; the settings and the state the other rooms share      |
| ``worker.deliveries`` | messages in: a delivery to its lane, the processor's decision,   |
|                       | the hand-over to the I/O loop once the store is durable          |
| ``worker.confirms``   | messages out: a decision's publishes with confirms, then the ack |
| ``worker.flow``       | each subscription's window (``worker.window``) applied, resized, |
|                       | given back; the probe that finds a subscription gone             |
| ``worker.ownership``  | the partitions owned, and a partition let go in order            |

The path of one message: ``Deliveries._on_message`` -> a lane runs ``_work`` (the
processor decides) -> ``worker.durability`` -> ``_hand_over`` -> the I/O loop's
``Confirms._drain_decided`` -> ``_publish_then_ack`` -> the broker's confirms in
``_on_confirm`` -> ``_send_acks``.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable

import pika
import structlog
from pika.exceptions import AMQPError

from worker.confirms import Confirms
from worker.deliveries import Deliveries, take_every_delivery
from worker.durability import DurableHandOff
from worker.flow import TICK, Flow
from worker.guard import consumer_callback as guarded
from worker.lanes import Lanes
from worker.messages import Decision
from worker.ownership import Ownership
from worker.processing import Processor
from worker.subscription import Subscription
from worker.topology import Topology, close_keeping_order, connection_parameters, declare_all
from worker.window import Window

log = structlog.get_logger()


class Consumer(Deliveries, Confirms, Flow, Ownership):
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
        consumer_timeout: float = 1800.0,
        max_held_bytes: int = 64 * 1024 * 1024,
        flush: Callable[[], None] = lambda: None,
    ):
        """``flush`` makes every commit so far durable (``ProjectStore.make_durable``): a
        decision is published and acked only after it."""
        self.amqp_url = amqp_url
        self.topology = topology
        self.processor = processor
        self.concurrency = concurrency
        self.lanes = Lanes(concurrency, name="worker")
        # The most deliveries the broker may hand over before their acks. A deep window lets
        # the I/O loop take deliveries in large batches, which is most of its cost per event
        # (bench (b): about a quarter more events/s at 512 than at 128); the cap keeps one
        # worker from hoarding a queue that several share. ``worker.window`` keeps the window
        # actually granted below this when the work is slow or the bodies are large.
        self.prefetch = prefetch or min(1000, max(64, concurrency * 32))
        self.consumer_timeout = consumer_timeout
        self.max_held_bytes = max_held_bytes
        # The partitions this worker owns (``assign``); run alongside: the intake router and
        # the membership that calls ``assign`` (``worker.bootstrap``).
        self.assigned: frozenset[int] = frozenset()
        self.companions: list = []
        self._windows: dict[str, Window] = {}  # by queue: what was measured outlives a channel
        self.window = self._window_for(topology.work_queue)
        self.heartbeat = heartbeat
        self.shutdown_grace = shutdown_grace
        self.stopping = False
        self.last_turn = time.monotonic()  # the I/O or reconnect loop last ran (liveness)
        self._opened = False  # the current connection got as far as a channel
        self._lost_reason: str | None = None
        self.subscriptions: dict[str, Subscription] = {}  # by queue, this connection's
        # The connection, its generation, and the decisions the lanes have made for it, all
        # under one lock: a lane finishing a message of a connection that is gone must see
        # that, and drop the decision, atomically with the switch to the new connection.
        # The loop is woken once for all decisions that pile up while it is busy.
        self._state_lock = threading.Lock()
        self.generation = 0
        self.incarnation = uuid.uuid4().hex  # this process, as an event's runs count it
        self._connection: pika.SelectConnection | None = None
        self._decided: deque[tuple[int, Subscription, int, Decision]] = deque()
        self._wake_pending = False
        self._durable = DurableHandOff(flush, self._hand_over, on_failure=self._flush_failed)

    @property
    def partitioned(self) -> bool:
        return self.topology.partitions > 1

    # -- lifecycle --------------------------------------------------------------------------
    def run(self) -> None:
        """Consumes until ``stop()``; reconnects with backoff whenever the connection drops.
        One log line per failed attempt (its number and why) and one per connection lost:
        pika's own lines about a failed connect are quieted (``worker.logs``)."""
        for companion in self.companions:
            companion.start()
        backoff = 0.5
        attempt = 0
        while not self.stopping:
            started = time.monotonic()
            attempt += 1
            self._opened, self._lost_reason = False, None
            try:
                declare_all(self.amqp_url, self.topology)
                connection = pika.SelectConnection(
                    connection_parameters(
                        self.amqp_url,
                        self.heartbeat,
                        f"provisioner-worker {self.topology.namespace}",
                    ),
                    on_open_callback=self._on_connection_open,
                    on_open_error_callback=self._on_connection_lost,
                    on_close_callback=self._on_connection_lost,
                )
                self._switch_to(connection)
                connection.ioloop.start()
                reason = self._lost_reason
            except AMQPError as exc:
                reason = _reason(exc)
            if self.stopping:
                break
            backoff = 0.5 if time.monotonic() - started > 30 else min(backoff * 2, 30)
            if self._opened:
                attempt = 0
                log.warning("connection_lost", reason=reason, reconnect_in=backoff)
            else:
                log.warning(
                    "broker_connect_failed", attempt=attempt, reason=reason, retry_in=backoff
                )
            self._pause(backoff)
        self.lanes.close()
        self._durable.close()
        for companion in self.companions:
            companion.stop()
        log.info("worker_stopped")

    def _pause(self, seconds: float) -> None:
        """Sleeps between attempts, still turning (liveness) and ending early on stop()."""
        deadline = time.monotonic() + seconds
        while not self.stopping and (now := time.monotonic()) < deadline:
            self.last_turn = now
            time.sleep(min(deadline - now, 0.5))

    @property
    def connected(self) -> bool:
        """The broker connection and every subscription's channel are open (the readiness
        probe). With partitions, a worker that owns none is connected all the same."""
        connection = self._connection
        if not (connection and connection.is_open):
            return False
        subs = list(self.subscriptions.values())
        if not subs:
            return self.partitioned and self._opened
        return all(sub.is_open for sub in subs)

    @property
    def held(self) -> int:
        """Deliveries held unacked, over every subscription (metrics)."""
        return sum(sub.window.held for sub in list(self.subscriptions.values()))

    @property
    def granted(self) -> int:
        """The prefetch granted, over every subscription (metrics)."""
        return sum(sub.window.granted for sub in list(self.subscriptions.values()))

    def _switch_to(self, connection: pika.SelectConnection) -> None:
        """Makes ``connection`` the current one; decisions made for older ones are dropped
        (the broker hands their messages out again)."""
        with self._state_lock:
            self.generation += 1
            self._connection = connection
            self._decided.clear()
            self._wake_pending = False
            self.subscriptions = {}

    def _flush_failed(self) -> None:
        """The store could not make a batch durable: those messages must not be acked. A
        new connection gets them back from the broker."""
        connection = self._connection
        with contextlib.suppress(Exception):
            connection.ioloop.add_callback_threadsafe(self._close_connection)

    def stop(self) -> None:
        """Safe from a signal handler or another thread."""
        self.stopping = True
        connection = self._connection
        if connection is not None:
            with contextlib.suppress(Exception):  # the loop may already be gone
                connection.ioloop.add_callback_threadsafe(self._begin_shutdown)

    @guarded
    def _on_connection_open(self, connection) -> None:
        if self.stopping:  # stop() came while connecting, before there was a loop to tell
            self._begin_shutdown()
            return
        self._opened = self.partitioned  # partitions: the connection is the opening
        if self.partitioned:
            self._apply_assignment()
        else:
            self._open(self.topology.work_queue, ordered=False)
        connection.ioloop.call_later(TICK, self._tick)

    def _open(self, queue: str, *, ordered: bool) -> None:
        sub = Subscription(queue, self._window_for(queue), ordered=ordered)
        self.subscriptions[queue] = sub
        self._connection.channel(on_open_callback=functools.partial(self._on_channel_open, sub))

    @guarded
    def _on_channel_open(self, sub: Subscription, channel) -> None:
        if self.subscriptions.get(sub.queue) is not sub:
            channel.close()  # released before it opened
            return
        self._opened = True  # a connection lost from now on is "lost", not a failed attempt
        sub.channel = channel
        channel.add_on_close_callback(functools.partial(self._on_channel_closed, sub))
        channel.add_on_return_callback(functools.partial(self._on_return, sub))
        channel.add_on_cancel_callback(functools.partial(self._on_cancelled_by_broker, sub))
        take_every_delivery(channel, functools.partial(self._on_message, sub))
        channel.confirm_delivery(ack_nack_callback=functools.partial(self._on_confirm, sub))
        self._resume(sub)

    @guarded
    def _on_cancelled_by_broker(self, sub: Subscription, frame) -> None:
        # The queue was deleted (and perhaps declared again), or the broker gave up on us:
        # nothing will be delivered to this subscription again. A new connection declares
        # the topology again and subscribes afresh.
        log.warning("consumer_cancelled_by_broker", queue=sub.queue)
        sub.consumer_tag = None
        self._close_connection()

    def _on_channel_closed(self, sub: Subscription, _channel, reason) -> None:
        sub.channel = None
        current = self.subscriptions.get(sub.queue) is sub
        if current and (sub.releasing or sub.reopen) and not self.stopping:
            # Closed on purpose: a partition let go, or requeued in order.
            del self.subscriptions[sub.queue]
            log.info("partition_released", queue=sub.queue, reason=str(reason))
            connection = self._connection
            if (sub.reopen or self._owns(sub.queue)) and connection and connection.is_open:
                try:
                    self._open(sub.queue, ordered=True)
                except Exception:  # not into pika's loop: a new connection subscribes again
                    log.exception("partition_reopen_failed", queue=sub.queue)
                    self._close_connection()
            return
        if not current:
            return
        (log.info if self.stopping else log.warning)("channel_closed", reason=str(reason))
        self._close_connection()

    def _close_connection(self) -> None:
        connection = self._connection
        if connection is None:
            return
        with contextlib.suppress(Exception):  # it may be closing already
            if connection.is_open:
                self._close_ordered_channels()
                connection.close()
            elif connection.is_closed:
                connection.ioloop.stop()

    def _close_ordered_channels(self) -> None:
        """pika would cancel each subscription before closing its channel, and a cancel
        sends a partition's deliveries in flight behind its other messages."""
        for sub in list(self.subscriptions.values()):
            if sub.ordered and sub.is_open:
                with contextlib.suppress(Exception):
                    close_keeping_order(sub.channel)

    def _on_connection_lost(self, connection, reason=None) -> None:
        self._lost_reason = _reason(reason)  # ``run`` logs it, once per attempt
        for sub in self.subscriptions.values():
            sub.channel = None
        connection.ioloop.stop()

    @guarded
    def _begin_shutdown(self) -> None:
        log.info("shutting_down", in_flight=self.lanes.pending, grace=self.shutdown_grace)
        for sub in self.subscriptions.values():
            # A partition is not cancelled (see ``worker.subscription``): lanes start nothing
            # new once stopping, and what it holds goes back, in order, when it closes.
            if sub.is_open and sub.consumer_tag and not sub.ordered:
                sub.channel.basic_cancel(sub.consumer_tag)
                sub.consumer_tag = None
        self._wait_drained(time.monotonic() + self.shutdown_grace)

    @guarded
    def _wait_drained(self, deadline: float) -> None:
        # Lanes start no new message once stopping (``_work``): only work under way is waited
        # for, and what it publishes.
        outstanding = any(sub.outstanding for sub in self.subscriptions.values())
        drained = self.lanes.pending == 0 and not outstanding
        if drained or time.monotonic() >= deadline:
            if not drained:  # unacked messages return to the queue when we close
                log.warning("shutdown_grace_expired", in_flight=self.lanes.pending)
            if self._connection and self._connection.is_open:
                self._close_ordered_channels()
                self._connection.close()
            elif self._connection:
                self._connection.ioloop.stop()
            return
        self._connection.ioloop.call_later(0.05, lambda: self._wait_drained(deadline))


def _reason(exc: BaseException | None) -> str:
    """Why a connection failed or closed, for the log: pika's text names the host and the
    broker's words, never the URL's password (and the redactor would catch it)."""
    if exc is None:
        return "closed"
    # pika's AMQPConnectionError prints as nothing; what failed is in its arguments.
    text = str(exc) or "; ".join(repr(arg) for arg in exc.args)
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:300]
