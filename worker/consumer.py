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

Partitions (``PROVISIONER_PARTITIONS`` above 1): the consumer has one subscription
(``worker.subscription``) per partition it owns instead of one on NS.worker, each on a
channel of its own, all sharing the lanes. Ownership comes from ``assign``; a partition no
longer owned is released: its messages not yet started are not started, the started ones
are finished and acked, then its channel closes and the broker gives what it held, in
order, to the worker that waits as the partition's next single active consumer. Ordered
subscriptions never resize nor give back (see ``worker.subscription``): their window is
set when they subscribe. A decision whose publish the broker refuses closes the partition's
channel instead of a requeue, which would send the message behind the project's later ones.
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

from schemas.errors import Unreadable
from worker import metrics
from worker.durability import DurableHandOff
from worker.guard import guard
from worker.lanes import Lanes
from worker.messages import COPY_ID, Decision, Delivery
from worker.partitioning import read
from worker.processing import Processor
from worker.subscription import PROBE_EVERY, Subscription
from worker.topology import Topology, close_keeping_order, connection_parameters, declare_all
from worker.window import Window

log = structlog.get_logger()

TICK = 0.1  # seconds between the I/O loop's looks at the window


# For pika callbacks: an exception is logged and the connection closed cleanly (``run``
# reconnects), instead of escaping into pika's I/O loop.
guarded = guard("callback_failed", close="_close_connection")


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
        self._connection: pika.SelectConnection | None = None
        self._decided: deque[tuple[int, Subscription, int, Decision]] = deque()
        self._wake_pending = False
        self._durable = DurableHandOff(flush, self._hand_over, on_failure=self._flush_failed)

    @property
    def partitioned(self) -> bool:
        return self.topology.partitions > 1

    def _window_for(self, queue: str) -> Window:
        """The window of ``queue``'s subscription. A quarter of the consumer timeout, shared
        by the partitions owned: a backlog that takes longer than it was measured to would
        still finish well before the broker gives up on it."""
        share = max(1, len(self.assigned)) if self.partitioned else 1
        window = self._windows.get(queue)
        if window is None:
            window = self._windows[queue] = Window(
                lanes=self.concurrency,
                ceiling=self.prefetch,
                horizon=self.consumer_timeout / 4 / share,
                max_bytes=self.max_held_bytes // share,
            )
            measured = [w.service_time for w in self._windows.values() if w.service_time]
            window.service_time = measured[-1] if measured else None
        window.horizon = self.consumer_timeout / 4 / share
        window.max_bytes = self.max_held_bytes // share
        window.forget_held()  # a new channel holds nothing yet
        return window

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

    def assign(self, partitions: frozenset[int]) -> None:
        """The partitions this worker owns from now on; safe from another thread."""
        self.assigned = frozenset(partitions)
        connection = self._connection
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.ioloop.add_callback_threadsafe(self._apply_assignment)

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
        _take_every_delivery(channel, functools.partial(self._on_message, sub))
        channel.confirm_delivery(ack_nack_callback=functools.partial(self._on_confirm, sub))
        self._resume(sub)

    # -- partitions owned -------------------------------------------------------------------
    @guarded
    def _apply_assignment(self) -> None:
        """Subscribes to the partitions newly owned (each waits as the standby of its former
        owner until that one lets go) and releases those no longer owned."""
        connection = self._connection
        if not self.partitioned or connection is None or not connection.is_open:
            return  # a new connection applies the assignment when it opens
        if self.stopping:
            return
        wanted = {self.topology.partition_queue(p) for p in self.assigned}
        for queue in sorted(wanted):
            sub = self.subscriptions.get(queue)
            if sub is None:
                self._open(queue, ordered=True)
            elif sub.releasing:
                sub.reopen = True  # owned again: subscribe once it has let go
        for sub in list(self.subscriptions.values()):
            if sub.queue not in wanted and not sub.releasing:
                self._release(sub)
        for queue in wanted:
            self._window_for_share(queue)
        log.info("partitions_assigned", partitions=sorted(self.assigned))

    def _window_for_share(self, queue: str) -> None:
        share = max(1, len(self.assigned))
        window = self._windows.get(queue)
        if window is not None:
            window.horizon = self.consumer_timeout / 4 / share
            window.max_bytes = self.max_held_bytes // share

    def _release(self, sub: Subscription) -> None:
        with self._state_lock:  # no lane starts one of its messages from now on
            sub.releasing = True
        log.info("partition_releasing", queue=sub.queue, held=len(sub.unacked))
        self._finish_release(sub)

    def _finish_release(self, sub: Subscription) -> None:
        """Once every started message of a released partition is acked, its channel closes:
        the broker puts what it held back at the head, in order, for the next owner."""
        with self._state_lock:
            settled = sub.settled
        if settled and sub.is_open:
            close_keeping_order(sub.channel)

    # -- the loop's look at every subscription --------------------------------------------------
    @guarded
    def _tick(self) -> None:
        """Resizes the windows that have moved, resumes paused subscriptions, finishes
        releases."""
        connection = self._connection
        self.last_turn = time.monotonic()
        if connection is None or not connection.is_open or self.stopping:
            return
        for sub in list(self.subscriptions.values()):
            if not sub.is_open or sub.resubscribing:
                continue
            if sub.releasing:
                self._finish_release(sub)
            elif sub.consumer_tag is None:
                self._resume(sub)
            elif not sub.ordered and sub.window.should_resubscribe():
                self._unsubscribe(sub)
            elif time.monotonic() >= sub.next_probe:
                self._probe(sub)
            if not sub.ordered:
                self._give_back_surplus(sub)
        connection.ioloop.call_later(TICK, self._tick)

    def _give_back_surplus(self, sub: Subscription) -> None:
        """Gives back to the queue the newest unstarted deliveries that the lanes would not
        finish within the horizon (``worker.window``). Only a run of the newest deliveries,
        all unstarted, goes back, oldest first: a project's later events go back after its
        earlier ones, and come back in that order."""
        window = sub.window
        if window.held <= window.target() * 2:
            return  # cheap test first: the walk below is over every held delivery
        with self._state_lock:
            unstarted = []
            for tag in reversed(sub.unacked):
                if tag in sub.started:
                    break
                unstarted.append(tag)
            count = window.surplus(len(unstarted))
            back = unstarted[:count][::-1]
            sub.given_back.update(back)
        if not back:
            return
        for tag in back:
            self._forget(sub, tag)
            # nack, not reject: the message did not fail (RabbitMQ 4.3+ does not count it).
            sub.channel.basic_nack(tag, requeue=True)
        log.info("work_given_back", count=len(back), held=window.held)

    def _probe(self, sub: Subscription) -> None:
        """Asks the broker about the queue. A queue deleted (and perhaps declared again)
        under us does not always cancel our subscription: the broker may keep a consumer
        record that nothing is delivered to. A passive declare of a missing queue closes the
        channel (and we reconnect and declare it); ``_on_probe`` checks the rest."""
        sub.next_probe = time.monotonic() + PROBE_EVERY
        seen = sub.deliveries
        sub.channel.queue_declare(
            sub.queue,
            passive=True,
            callback=functools.partial(self._on_probe, sub, seen),
        )

    @guarded
    def _on_probe(self, sub: Subscription, seen_before: int, frame) -> None:
        if sub.consumer_tag is None or sub.resubscribing or sub.releasing:
            return
        answer = frame.method
        # A partition's standby (another worker is its active consumer) sees messages wait
        # and gets none: only a missing consumer says that its subscription is dead.
        starved = (
            not sub.ordered
            and answer.message_count > 0
            and sub.deliveries == seen_before  # nothing came since the previous probe
            and sub.window.held < sub.window.granted
        )
        if answer.consumer_count == 0 or starved:
            # Messages wait, we have room, yet nothing arrives: the subscription is dead.
            log.warning(
                "subscription_lost",
                queue=sub.queue,
                ready=answer.message_count,
                consumers=answer.consumer_count,
            )
            self._close_connection()

    def _unsubscribe(self, sub: Subscription) -> None:
        """Ends the subscription; its unacked deliveries stay with us until acked."""
        sub.resubscribing = True
        sub.window.granted = 0
        tag, sub.consumer_tag = sub.consumer_tag, None
        sub.channel.basic_cancel(tag, callback=functools.partial(self._on_unsubscribed, sub))

    @guarded
    def _on_unsubscribed(self, sub: Subscription, _frame) -> None:
        sub.resubscribing = False
        self._resume(sub)

    def _resume(self, sub: Subscription) -> None:
        if self.stopping or sub.releasing or not sub.is_open:
            return
        prefetch = sub.window.grant()
        if prefetch is None:
            return  # paused: the next tick looks again
        sub.resubscribing = True
        sub.window.granted = prefetch
        # basic.qos applies to subscriptions made after it: the new one gets the new window.
        sub.channel.basic_qos(
            prefetch_count=prefetch, callback=functools.partial(self._on_qos, sub, prefetch)
        )

    @guarded
    def _on_qos(self, sub: Subscription, prefetch: int, _frame) -> None:
        sub.resubscribing = False
        if self.stopping or not sub.is_open:
            return
        first, sub.announced = not sub.announced, True
        sub.consumer_tag = sub.channel.basic_consume(sub.queue, self._ignored, auto_ack=False)
        if first:
            log.info("consuming", queue=sub.queue, prefetch=prefetch)
        else:
            log.info("window_resized", prefetch=prefetch, held=sub.window.held)

    @staticmethod
    def _ignored(*_args) -> None:
        """Deliveries reach ``_on_message`` through ``_take_every_delivery``."""

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

    def _owns(self, queue: str) -> bool:
        return any(self.topology.partition_queue(p) == queue for p in self.assigned)

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

    # -- messages in --------------------------------------------------------------------------
    @guarded
    def _on_message(self, sub: Subscription, _channel, method, properties, body: bytes) -> None:
        tag = method.delivery_tag
        delivery = Delivery(
            body, properties, method.exchange, method.routing_key, method.redelivered
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

    # -- messages out (I/O loop only) ---------------------------------------------------------
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
