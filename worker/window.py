"""How much work the consumer takes ahead of its lanes: the prefetch window, sized by what
the lanes can finish in time and bounded in bytes, and the surplus to give back.

Every delivery the worker holds unacked counts towards the broker's consumer timeout
(RabbitMQ's ``consumer_timeout``, 30 minutes by default), whether a lane works it or it still
waits for one. A fixed deep window is right for fast work (the I/O loop takes deliveries in
large batches) and wrong for slow work: 512 Toggl provisionings at one request a second take
well over an hour, the broker closes the channel, requeues all of them with their delivery
count raised, and does it again, until it dead-letters work that never ran.

So the window follows the measured time a lane spends on a message (a moving average): it
holds what the lanes finish within ``horizon`` seconds (a fraction of the consumer timeout),
never fewer than the lanes can start at once, never more than ``ceiling``, and never more
bodies than fit ``max_bytes`` at their recent size (an average that rises at once to a
larger body and falls slowly: it sizes a bound). It starts at the lane count and
grows once work is measured, like TCP's slow start, so a worker that restarts does not grab
a deep window of work it may never run.

A window only limits what comes next. A burst of slow work that arrives while the window is
deep (after a run of fast work) is already held; ``surplus`` says how much of what waits
unstarted to give back to the queue, so that what stays finishes within the horizon.

This class only decides; ``worker.consumer`` applies a new size by subscribing again
(RabbitMQ applies ``basic.qos`` to subscriptions made after it, and ignores
``prefetch_size``) and gives back the surplus.
"""

from __future__ import annotations

SIZE_WEIGHT = 0.05  # of each new body in the moving average of body sizes
TIME_WEIGHT = 0.2  # of each new service time in its moving average: slow work shows at once
RESIZE_FACTOR = 2.0  # resize only when the right window is this far from the granted one


class Window:
    def __init__(self, *, lanes: int, ceiling: int, horizon: float, max_bytes: int):
        self.lanes = max(1, lanes)
        self.floor = min(self.lanes, max(ceiling, 1))
        self.ceiling = max(ceiling, self.floor)
        self.horizon = horizon
        self.max_bytes = max_bytes
        self.held = 0  # deliveries not yet acked or given back
        self.held_bytes = 0
        self.peak_held = 0
        self.peak_bytes = 0
        self.granted = 0  # the prefetch of the current subscription (0: not subscribed)
        self.average_size = 2048.0  # bytes: the recent bodies' size, up at once, down slowly
        self.service_time: float | None = None  # seconds a lane spends on a message

    # -- bookkeeping ----------------------------------------------------------------------
    def delivered(self, size: int) -> None:
        self.held += 1
        self.held_bytes += size
        if size > self.average_size:
            # Up at once: a run of large bodies after small ones was granted at the small
            # ones' size (16 bodies of 200 kB under a 1 MB bound, on a loaded machine).
            self.average_size = float(size)
        else:
            self.average_size += (size - self.average_size) * SIZE_WEIGHT
        self.peak_held = max(self.peak_held, self.held)
        self.peak_bytes = max(self.peak_bytes, self.held_bytes)

    def worked(self, seconds: float) -> None:
        """A lane spent ``seconds`` on a message (called from the lanes: a float's update is
        atomic enough for an estimate)."""
        if self.service_time is None:
            self.service_time = seconds
        else:
            self.service_time += (seconds - self.service_time) * TIME_WEIGHT

    def released(self, size: int) -> None:
        """A delivery was acked or given back."""
        self.held -= 1
        self.held_bytes -= size

    def forget_held(self) -> None:
        """The connection is gone: the broker takes back every unacked delivery."""
        self.held = 0
        self.held_bytes = 0
        self.granted = 0

    # -- decisions ------------------------------------------------------------------------
    def target(self) -> int:
        """The window the lanes finish within the horizon and whose bodies, at their recent
        average size, fit the byte bound; never below the floor nor above the ceiling."""
        if self.service_time is None:
            by_time = self.floor  # nothing measured yet: only what the lanes start at once
        else:
            by_time = int(self.lanes * self.horizon / max(self.service_time, 1e-6))
        by_bytes = int(self.max_bytes // max(self.average_size, 1.0))
        return max(self.floor, min(self.ceiling, by_time, by_bytes))

    def over_bytes(self) -> bool:
        return self.held_bytes >= self.max_bytes

    def should_resubscribe(self) -> bool:
        """True when the current subscription must end: the bytes held reached the bound, or
        the right window has moved a factor of two or more from the one granted."""
        if not self.granted:
            return False
        if self.over_bytes():
            return True
        target = self.target()
        return target >= self.granted * RESIZE_FACTOR or target * RESIZE_FACTOR <= self.granted

    def grant(self) -> int | None:
        """While not subscribed: the prefetch to subscribe with now, or None to wait.

        Nothing is granted while more than half the byte bound is held (a pause on bytes
        is not undone at once) or while more than the new window is held (after a shrink,
        the lanes first work off the surplus)."""
        if self.held_bytes > self.max_bytes // 2:
            return None
        target = self.target()
        return target if self.held <= target else None

    def surplus(self, unstarted: int) -> int:
        """How many of the ``unstarted`` deliveries to give back: those beyond what the lanes
        finish within the horizon, once they are twice that (no churn over a few)."""
        keep = self.target()
        return unstarted - keep if unstarted > keep * RESIZE_FACTOR else 0
