"""The consumer's partitions (``PROVISIONER_PARTITIONS`` above 1): which it owns, and
how it lets one go.

The consumer has one subscription (``worker.subscription``) per partition it owns instead of
one on NS.worker, each on a channel of its own, all sharing the lanes. Ownership comes from
``assign`` (the membership calls it, ``worker.bootstrap``); a partition no longer owned is
released: its messages not yet started are not started, the started ones are finished and
acked, then its channel closes and the broker gives what it held, in order, to the worker
that waits as the partition's next single active consumer. ``worker.consumer`` subscribes
again to a partition owned again once its channel has closed (``_on_channel_closed``).

A mixin of ``worker.consumer.Consumer``, run on its I/O loop (``assign`` excepted); it
reads the consumer's ``topology``, ``assigned``, ``subscriptions``, ``stopping``, the
connection and its lock, and the windows (``worker.flow``).
"""

from __future__ import annotations

import contextlib

import structlog

from worker.guard import consumer_callback as guarded
from worker.subscription import Subscription
from worker.topology import close_keeping_order

# The consumer's rooms log as the one logger operators know and filter on.
log = structlog.get_logger("worker.consumer")


class Ownership:
    def assign(self, partitions: frozenset[int]) -> None:
        """The partitions this worker owns from now on; safe from another thread."""
        self.assigned = frozenset(partitions)
        connection = self._connection
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.ioloop.add_callback_threadsafe(self._apply_assignment)

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

    def _owns(self, queue: str) -> bool:
        return any(self.topology.partition_queue(p) == queue for p in self.assigned)
