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

How much is taken ahead of the lanes is ``worker.window``'s decision; the consumer applies a
new window by cancelling its subscription and subscribing again with the new prefetch.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import pika
import structlog
from pika.exceptions import AMQPError
from pika.spec import Basic

from schemas.errors import Unreadable, UnreadableCode
from schemas.inbound import parse_inbound
from worker import metrics
from worker.durability import DurableHandOff
from worker.lanes import Lanes
from worker.messages import COPY_ID, Decision, Delivery
from worker.processing import Processor
from worker.topology import Topology, connection_parameters, declare_all
from worker.window import Window

log = structlog.get_logger()

TICK = 0.1  # seconds between the I/O loop's looks at the window
PROBE_EVERY = 5.0  # seconds between looks at the work queue: is our subscription alive?


def guarded(callback):
    """For pika callbacks: an exception is logged and the connection closed cleanly (``run``
    reconnects), instead of escaping into pika's I/O loop."""

    @functools.wraps(callback)
    def wrapper(self, *args, **kwargs):
        try:
            return callback(self, *args, **kwargs)
        except Exception:
            log.exception("callback_failed", callback=callback.__name__)
            self._close_connection()

    return wrapper


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
        consumer_timeout: float = 1800.0,
        max_held_bytes: int = 64 * 1024 * 1024,
        flush: Callable[[], None] = lambda: None,
    ):
        """``flush`` makes every commit so far durable (``ProjectStore.make_durable``): a
        decision is published and acked only after it."""
        self.amqp_url = amqp_url
        self.topology = topology
        self.processor = processor
        self.lanes = Lanes(concurrency, name="worker")
        # The most deliveries the broker may hand over before their acks. A deep window lets
        # the I/O loop take deliveries in large batches, which is most of its cost per event
        # (bench (b): about a quarter more events/s at 512 than at 128); the cap keeps one
        # worker from hoarding a queue that several share. ``worker.window`` keeps the window
        # actually granted below this when the work is slow or the bodies are large.
        self.prefetch = prefetch or min(1000, max(64, concurrency * 32))
        # A quarter of the consumer timeout: a backlog that takes longer than it was
        # measured to would still finish well before the broker gives up on it.
        self.window = Window(
            lanes=concurrency,
            ceiling=self.prefetch,
            horizon=consumer_timeout / 4,
            max_bytes=max_held_bytes,
        )
        self.heartbeat = heartbeat
        self.shutdown_grace = shutdown_grace
        self.stopping = False
        self.last_turn = time.monotonic()  # the I/O or reconnect loop last ran (liveness)
        self._opened = False  # the current connection got as far as a channel
        self._lost_reason: str | None = None
        self._channel = None
        self._consumer_tag: str | None = None
        self._resubscribing = False
        self._announced = False
        # The connection, its generation, and the decisions the lanes have made for it, all
        # under one lock: a lane finishing a message of a connection that is gone must see
        # that, and drop the decision, atomically with the switch to the new connection.
        # The loop is woken once for all decisions that pile up while it is busy.
        self._state_lock = threading.Lock()
        self.generation = 0
        self._connection: pika.SelectConnection | None = None
        self._decided: deque[tuple[int, int, Decision]] = deque()
        self._wake_pending = False
        # Delivery tags a lane has begun, and tags given back unstarted: a lane and the I/O
        # loop claim a tag under the lock, so a tag is either worked or given back, not both.
        self._started: set[int] = set()
        self._given_back: set[int] = set()
        self._reset_confirms()
        self._durable = DurableHandOff(flush, self._hand_over, on_failure=self._flush_failed)

    def _reset_confirms(self) -> None:
        """Forgets everything about the previous connection's deliveries and publishes; the
        broker hands its unacked messages out again."""
        self._next_seq = 1
        self._seq_to_tag: dict[int, int] = {}  # publish sequence number -> inbound delivery tag
        self._outstanding: dict[int, int] = {}  # inbound delivery tag -> confirms awaited
        self._failed_tags: set[int] = set()
        self._copies: dict[str, int] = {}  # x-copy-id of a mandatory publish -> its sequence
        self._copy_ids: dict[int, str] = {}  # and back, to forget it once confirmed
        self._unacked: deque[int] = deque()  # delivery tags not yet acked, in delivery order
        self._ackable: set[int] = set()  # of those, the ones whose outcomes are confirmed
        self._sizes: dict[int, int] = {}  # delivery tag -> body size, for the window
        self._deliveries = 0  # deliveries on this connection, for the probe
        self._next_probe = time.monotonic() + PROBE_EVERY
        self.window.forget_held()

    # -- lifecycle --------------------------------------------------------------------------
    def run(self) -> None:
        """Consumes until ``stop()``; reconnects with backoff whenever the connection drops.
        One log line per failed attempt (its number and why) and one per connection lost:
        pika's own lines about a failed connect are quieted (``worker.logs``)."""
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
        log.info("worker_stopped")

    def _pause(self, seconds: float) -> None:
        """Sleeps between attempts, still turning (liveness) and ending early on stop()."""
        deadline = time.monotonic() + seconds
        while not self.stopping and (now := time.monotonic()) < deadline:
            self.last_turn = now
            time.sleep(min(deadline - now, 0.5))

    @property
    def connected(self) -> bool:
        """The broker connection and our channel are open (the readiness probe)."""
        connection, channel = self._connection, self._channel
        return bool(connection and connection.is_open and channel and channel.is_open)

    def _switch_to(self, connection: pika.SelectConnection) -> None:
        """Makes ``connection`` the current one; decisions made for older ones are dropped
        (the broker hands their messages out again)."""
        with self._state_lock:
            self.generation += 1
            self._connection = connection
            self._decided.clear()
            self._wake_pending = False
            self._started.clear()
            self._given_back.clear()
        self._channel = None
        self._consumer_tag = None
        self._resubscribing = False
        self._announced = False  # "consuming" is logged once a connection, then resizes
        self._reset_confirms()

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
        connection.channel(on_open_callback=self._on_channel_open)

    @guarded
    def _on_channel_open(self, channel) -> None:
        self._opened = True  # a connection lost from now on is "lost", not a failed attempt
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.add_on_cancel_callback(self._on_cancelled_by_broker)
        _take_every_delivery(channel, self._on_message)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm)
        self._resume()
        self._connection.ioloop.call_later(TICK, self._tick)

    @guarded
    def _tick(self) -> None:
        """Resizes the window when it has moved, resumes a paused subscription."""
        connection = self._connection
        self.last_turn = time.monotonic()
        if connection is None or not connection.is_open or self.stopping:
            return
        if self._channel is not None and self._channel.is_open and not self._resubscribing:
            if self._consumer_tag is None:
                self._resume()
            elif self.window.should_resubscribe():
                self._unsubscribe()
            elif time.monotonic() >= self._next_probe:
                self._probe()
            self._give_back_surplus()
        connection.ioloop.call_later(TICK, self._tick)

    def _give_back_surplus(self) -> None:
        """Gives back to the queue the newest unstarted deliveries that the lanes would not
        finish within the horizon (``worker.window``). Only a run of the newest deliveries,
        all unstarted, goes back, oldest first: a project's later events go back after its
        earlier ones, and come back in that order."""
        if self.window.held <= self.window.target() * 2:
            return  # cheap test first: the walk below is over every held delivery
        with self._state_lock:
            unstarted = []
            for tag in reversed(self._unacked):
                if tag in self._started:
                    break
                unstarted.append(tag)
            count = self.window.surplus(len(unstarted))
            back = unstarted[:count][::-1]
            self._given_back.update(back)
        if not back:
            return
        for tag in back:
            self._forget(tag)
            # nack, not reject: the message did not fail (RabbitMQ 4.3+ does not count it).
            self._channel.basic_nack(tag, requeue=True)
        log.info("work_given_back", count=len(back), held=self.window.held)

    def _probe(self) -> None:
        """Asks the broker about the work queue. A queue deleted (and perhaps declared again)
        under us does not always cancel our subscription: the broker may keep a consumer
        record that nothing is delivered to. A passive declare of a missing queue closes the
        channel (and we reconnect and declare it); ``_on_probe`` checks the rest."""
        self._next_probe = time.monotonic() + PROBE_EVERY
        seen = self._deliveries
        self._channel.queue_declare(
            self.topology.work_queue,
            passive=True,
            callback=lambda frame: self._on_probe(seen, frame),
        )

    @guarded
    def _on_probe(self, seen_before: int, frame) -> None:
        if self._consumer_tag is None or self._resubscribing:
            return
        answer = frame.method
        starved = (
            answer.message_count > 0
            and self._deliveries == seen_before  # nothing came since the previous probe
            and self.window.held < self.window.granted
        )
        if answer.consumer_count == 0 or starved:
            # Messages wait, we have room, yet nothing arrives: the subscription is dead.
            log.warning(
                "subscription_lost",
                queue=self.topology.work_queue,
                ready=answer.message_count,
                consumers=answer.consumer_count,
            )
            self._close_connection()

    def _unsubscribe(self) -> None:
        """Ends the subscription; its unacked deliveries stay with us until acked."""
        self._resubscribing = True
        self.window.granted = 0
        tag, self._consumer_tag = self._consumer_tag, None
        self._channel.basic_cancel(tag, callback=self._on_unsubscribed)

    @guarded
    def _on_unsubscribed(self, _frame) -> None:
        self._resubscribing = False
        self._resume()

    def _resume(self) -> None:
        if self.stopping or self._channel is None or not self._channel.is_open:
            return
        prefetch = self.window.grant()
        if prefetch is None:
            return  # paused: the next tick looks again
        self._resubscribing = True
        self.window.granted = prefetch
        # basic.qos applies to subscriptions made after it: the new one gets the new window.
        self._channel.basic_qos(
            prefetch_count=prefetch, callback=functools.partial(self._on_qos, prefetch)
        )

    @guarded
    def _on_qos(self, prefetch: int, _frame) -> None:
        self._resubscribing = False
        if self.stopping:
            return
        first, self._announced = not self._announced, True
        self._consumer_tag = self._channel.basic_consume(
            self.topology.work_queue, self._on_message, auto_ack=False
        )
        if first:
            log.info("consuming", queue=self.topology.work_queue, prefetch=prefetch)
        else:
            log.info("window_resized", prefetch=prefetch, held=self.window.held)

    @guarded
    def _on_cancelled_by_broker(self, frame) -> None:
        # The queue was deleted (and perhaps declared again), or the broker gave up on us:
        # nothing will be delivered to this subscription again. A new connection declares
        # the topology again and subscribes afresh.
        log.warning("consumer_cancelled_by_broker", queue=self.topology.work_queue)
        self._consumer_tag = None
        self._close_connection()

    def _on_channel_closed(self, _channel, reason) -> None:
        (log.info if self.stopping else log.warning)("channel_closed", reason=str(reason))
        self._channel = None
        self._close_connection()

    def _close_connection(self) -> None:
        connection = self._connection
        if connection is None:
            return
        with contextlib.suppress(Exception):  # it may be closing already
            if connection.is_open:
                connection.close()
            elif connection.is_closed:
                connection.ioloop.stop()

    def _on_connection_lost(self, connection, reason=None) -> None:
        self._lost_reason = _reason(reason)  # ``run`` logs it, once per attempt
        self._channel = None
        connection.ioloop.stop()

    @guarded
    def _begin_shutdown(self) -> None:
        log.info("shutting_down", in_flight=self.lanes.pending, grace=self.shutdown_grace)
        if self._channel is not None and self._channel.is_open and self._consumer_tag:
            self._channel.basic_cancel(self._consumer_tag)
            self._consumer_tag = None
        self._wait_drained(time.monotonic() + self.shutdown_grace)

    @guarded
    def _wait_drained(self, deadline: float) -> None:
        # Lanes start no new message once stopping (``_work``): only work under way is waited
        # for, and what it publishes.
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
    @guarded
    def _on_message(self, _channel, method, properties, body: bytes) -> None:
        tag = method.delivery_tag
        delivery = Delivery(
            body, properties, method.exchange, method.routing_key, method.redelivered
        )
        try:
            parsed = parse_inbound(body)
            key: Any = parsed.project_id
        except Unreadable as exc:
            parsed, key = exc, ("unreadable", tag)
        except Exception as exc:  # parse_inbound raises only Unreadable; a bug must not loop
            log.exception("parse_crashed", delivery_tag=tag)
            parsed = Unreadable(UnreadableCode.INVALID_DATA, f"unreadable ({type(exc).__name__})")
            key = ("unreadable", tag)
        metrics.event_received(None if isinstance(parsed, Unreadable) else parsed.type)
        self._deliveries += 1
        self._unacked.append(tag)
        self._sizes[tag] = len(body)
        self.window.delivered(len(body))
        if self.window.over_bytes() and self._consumer_tag and not self._resubscribing:
            self._unsubscribe()  # pause at once; a tick resumes once half of the bytes are done
        job = functools.partial(self._work, self.generation, tag, delivery, parsed)
        self.lanes.submit(key, job)

    def _work(self, generation: int, tag: int, delivery: Delivery, parsed) -> None:
        """Runs on a lane thread."""
        if generation != self.generation:
            return  # that connection is gone; the broker hands the message out again
        if self.stopping:
            return  # shutting down: no new vendor work; the message goes back when we close
        with self._state_lock:
            if generation != self.generation or tag in self._given_back:
                return  # given back to the queue unstarted
            self._started.add(tag)
        context = {"delivery_tag": tag, "attempt": delivery.attempts_before + 1}
        if not isinstance(parsed, Unreadable):
            context.update(
                event_id=parsed.envelope.id, type=parsed.type, project_id=parsed.project_id
            )
        # A lane works one message at a time: its context is replaced, not stacked.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**context)
        began = time.monotonic()
        decision = self.processor.process(delivery, parsed)
        self.window.worked(time.monotonic() - began)
        log.info(decision.log, **decision.fields)
        self._durable.submit((generation, tag, decision))

    def _hand_over(self, item: tuple[int, int, Decision]) -> None:
        """From the durability thread: the decision's state is on disk; to the I/O loop."""
        generation, tag, decision = item
        with self._state_lock:
            if generation != self.generation:
                return  # the connection changed meanwhile: the broker redelivers
            self._decided.append((generation, tag, decision))
            if self._wake_pending:
                return  # the loop has yet to drain: it takes this one too
            self._wake_pending = True
            connection = self._connection
        try:
            connection.ioloop.add_callback_threadsafe(self._drain_decided)
        except Exception:  # the loop is gone; the next connection starts afresh
            log.warning("decision_dropped_connection_gone", delivery_tag=tag)

    # -- messages out (I/O loop only) ---------------------------------------------------------
    @guarded
    def _drain_decided(self) -> None:
        with self._state_lock:
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
        if decision.reject or not _writable(decision):
            # A header pika cannot write (a producer's odd type): the copy with our verdict
            # cannot be made, so the broker dead-letters the original, with x-death saying why.
            log.error("decision_unwritable_rejected", delivery_tag=tag)
            self._forget(tag)
            channel.basic_reject(tag, requeue=False)
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

    @guarded
    def _on_return(self, _channel, method, properties, _body) -> None:
        # RabbitMQ sends basic.return before the basic.ack of the same publish.
        seq = self._copies.get((properties.headers or {}).get(COPY_ID))
        tag = self._seq_to_tag.get(seq) if seq else None
        log.error("copy_unroutable", routing_key=method.routing_key, reply=method.reply_text)
        if tag is not None:
            self._failed_tags.add(tag)

    @guarded
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
            metrics.DECISIONS_REFUSED.inc()
            self._forget(tag)
            # reject, not nack: a requeue that must count as a delivery, so that a message
            # whose outcome the broker refuses every time meets the delivery limit (RabbitMQ
            # 4.3+ counts basic.reject and not basic.nack).
            self._channel.basic_reject(tag, requeue=True)
        else:
            self._ackable.add(tag)

    def _forget(self, tag: int) -> None:
        """A delivery leaves our hands other than by ``_send_acks`` (rare: a linear search)."""
        with self._state_lock:
            self._started.discard(tag)
        self._unacked.remove(tag)
        self.window.released(self._sizes.pop(tag, 0))

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
        released = self.window.released
        while self._unacked and self._unacked[0] in self._ackable:
            highest = self._unacked.popleft()
            released(self._sizes.pop(highest, 0))
        with self._state_lock:
            self._started.difference_update(self._ackable)
        try:
            if highest is not None:
                channel.basic_ack(highest, multiple=True)
            for tag in self._ackable:
                if tag <= (highest or 0):
                    continue  # in the run just acked
                self._unacked.remove(tag)
                released(self._sizes.pop(tag, 0))
                channel.basic_ack(tag)
        except AMQPError as exc:  # the channel is going away: the broker will redeliver
            log.warning("ack_failed", error=type(exc).__name__)
        self._ackable.clear()


def _take_every_delivery(channel, on_message) -> None:
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


def _reason(exc: BaseException | None) -> str:
    """Why a connection failed or closed, for the log: pika's text names the host and the
    broker's words, never the URL's password (and the redactor would catch it)."""
    if exc is None:
        return "closed"
    # pika's AMQPConnectionError prints as nothing; what failed is in its arguments.
    text = str(exc) or "; ".join(repr(arg) for arg in exc.args)
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:300]


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
