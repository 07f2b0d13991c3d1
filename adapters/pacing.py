"""Client-side pacing per tool account, so that a burst of work never earns a 429.

A sliding-window log: at most ``calls`` requests start in any ``period`` seconds. It matches
how Harvest (100 per 15 s), Toggl (about 1 per second) and Clockify (50 per second) count.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class Pacer:
    # A request leaves a little after we count it; the server counts arrivals. The margin keeps
    # our window a little wider than theirs so that the spread of that delay cannot push us
    # over. The spread is in seconds, not a share of the period: a burst's first requests
    # open connections while the next burst's reuse them, so they arrive tens of milliseconds
    # later than they were counted. Hence a floor under the proportional margin.
    MARGIN = 0.02
    MIN_MARGIN = 0.05  # seconds

    def __init__(
        self,
        calls: int,
        period: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if calls < 1 or period <= 0:
            raise ValueError("pacing needs calls >= 1 and period > 0")
        self.calls = calls
        self.period = period
        self.window = period + max(period * self.MARGIN, self.MIN_MARGIN)
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Blocks until one more request may start, then counts it."""
        while True:
            with self._lock:
                now = self._clock()
                while self._starts and now - self._starts[0] >= self.window:
                    self._starts.popleft()
                if len(self._starts) < self.calls:
                    self._starts.append(now)
                    return
                wait = self.window - (now - self._starts[0])
            self._sleep(max(wait, 0.001))

    def hold_off(self, seconds: float) -> None:
        """The server said to wait (Retry-After): no request starts for ``seconds``."""
        with self._lock:
            until = self._clock() + seconds
            # Stamps that age out at ``until`` block everyone until then. The starts already
            # made still count afterwards (the server counts them too), and a longer hold
            # already in place is kept: only the newest ``calls`` stamps matter.
            blocked = [until - self.window] * self.calls
            self._starts = deque(sorted([*self._starts, *blocked])[-self.calls :])
