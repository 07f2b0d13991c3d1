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
    # our window a hair wider than theirs so that clock jitter cannot push us over.
    MARGIN = 0.02

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
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Blocks until one more request may start, then counts it."""
        while True:
            with self._lock:
                now = self._clock()
                window = self.period * (1 + self.MARGIN)
                while self._starts and now - self._starts[0] >= window:
                    self._starts.popleft()
                if len(self._starts) < self.calls:
                    self._starts.append(now)
                    return
                wait = window - (now - self._starts[0])
            self._sleep(max(wait, 0.001))

    def hold_off(self, seconds: float) -> None:
        """The server said to wait (Retry-After): no request starts for ``seconds``."""
        with self._lock:
            until = self._clock() + seconds
            # Filling the window with future stamps blocks everyone until the last one ages out.
            self._starts = deque([until - self.period * (1 + self.MARGIN)] * self.calls)
