"""The consumer's flow: each subscription's window applied, paused, resumed and resized,
the surplus given back, and the probe that finds a subscription the broker forgot.

``worker.window`` decides how much to take ahead of the lanes; this applies it. A new
window is applied by cancelling the subscription and subscribing again with the new
prefetch (RabbitMQ applies ``basic.qos`` to subscriptions made after it). Ordered
subscriptions (partitions) never resize nor give back (see ``worker.subscription``): their
window is set when they subscribe.

A mixin of ``worker.consumer.Consumer``, run on its I/O loop: ``_tick`` looks at every
subscription each ``TICK``; it reads the consumer's ``subscriptions``, ``stopping``, its
settings (``concurrency``, ``prefetch``, ``consumer_timeout``, ``max_held_bytes``), the
connection and its lock.
"""

from __future__ import annotations

import functools
import time

import structlog

from worker.guard import consumer_callback as guarded
from worker.subscription import PROBE_EVERY, Subscription
from worker.window import Window

# The consumer's rooms log as the one logger operators know and filter on.
log = structlog.get_logger("worker.consumer")

TICK = 0.1  # seconds between the I/O loop's looks at the window


class Flow:
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
