"""Client-side pacing per tool account, so that a burst of work never earns a 429.

A sliding-window log: at most ``calls`` requests start in any ``period`` seconds. It matches
how Harvest (100 per 15 s), Toggl (about 1 per second) and Clockify (50 per second) count.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping


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
        self._clock = self.clock = clock  # public: an hourly quota counts on the same clock
        self._sleep = self.sleep = sleep
        self._starts: dict[int, float] = {}  # slot -> when it counts from
        self._slots = itertools.count()
        self._mine = threading.local()  # the slot this thread was last granted
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Blocks until one more request may start, then counts it; returns the seconds it
        slept (0.0: the request went at once)."""
        slept = 0.0
        while True:
            with self._lock:
                now = self._clock()
                for slot in [k for k, t in self._starts.items() if now - t >= self.window]:
                    del self._starts[slot]
                if len(self._starts) < self.calls:
                    slot = next(self._slots)
                    self._starts[slot] = now
                    self._mine.slot = slot
                    return slept
                wait = max(self.window - (now - min(self._starts.values())), 0.001)
            self._sleep(wait)
            slept += wait

    def answered(self) -> None:
        """The request this thread was last granted is over: its slot counts from now.

        The vendor stamps a request when it arrives, which is after we granted it by however
        long the lane took to get it onto the wire (tens of milliseconds on a busy machine,
        more than the margin on a short window) and before its answer reached us. Counted
        from the answer, a slot frees no earlier than the vendor's own window lets it, so
        that delay can never push a window over."""
        with self._lock:
            slot = getattr(self._mine, "slot", None)
            self._mine.slot = None
            if slot in self._starts:  # a hold_off may have replaced the slots meanwhile
                self._starts[slot] = max(self._starts[slot], self._clock())

    def hold_off(self, seconds: float) -> None:
        """The server said to wait (Retry-After): no request starts for ``seconds``."""
        with self._lock:
            until = self._clock() + seconds
            # Stamps that age out at ``until`` block everyone until then. The starts already
            # made still count afterwards (the server counts them too), and a longer hold
            # already in place is kept: only the newest ``calls`` stamps matter.
            blocked = [until - self.window] * self.calls
            kept = sorted([*self._starts.values(), *blocked])[-self.calls :]
            self._starts = {next(self._slots): t for t in kept}

    def hourly_quota(self, remaining_header: str, resets_header: str) -> HourlyQuota:
        """The vendor's hourly quota for the account this pacer paces, on the same clock."""
        return HourlyQuota(remaining_header, resets_header, clock=self.clock)


ANSWER_POLL = 0.05  # seconds between looks while the quota waits on an answer in flight


class HourlyQuota:
    """What the vendor says is left of an hourly allowance (Toggl's ``X-Toggl-Quota-Remaining``
    and ``-Resets-In``, https://support.toggl.com/en/articles/11484112-api-webhook-limits),
    so that the request that would be refused is never sent.

    The vendor counts every request it has answered; ours still in flight are not in its
    figure yet, so what we may still send is ``remaining - in_flight``. Until the first
    answer nothing is known and nothing is held back."""

    def __init__(
        self,
        remaining_header: str,
        resets_header: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.remaining_header = remaining_header
        self.resets_header = resets_header
        self._clock = clock
        self._lock = threading.Lock()
        self._remaining: int | None = None
        self._resets_at = 0.0
        self._in_flight = 0

    def wait_needed(self) -> float:
        """0 and one request counted as sent, or the seconds until the quota frees a slot
        (nothing counted: the caller waits or gives up, then asks again)."""
        with self._lock:
            now = self._clock()
            if self._remaining is not None and now >= self._resets_at:
                # The slot the vendor named has freed; more may have, but only the next
                # answer says, so one request at a time goes until then.
                self._remaining = max(self._remaining, 1)
            if self._remaining is not None and self._remaining - self._in_flight <= 0:
                # Past the reset, only an answer still on its way can free the next slot.
                return max(self._resets_at - now, ANSWER_POLL)
            self._in_flight += 1
            return 0.0

    def answered(self, headers: Mapping[str, str] | None) -> None:
        """One counted request is over; ``headers`` (None: no answer) update the figure."""
        with self._lock:
            self._in_flight = max(self._in_flight - 1, 0)
        self.learn(headers)

    def learn(self, headers: Mapping[str, str] | None) -> None:
        """The figure an answer carries, if any, replaces the one known."""
        remaining = header_count((headers or {}).get(self.remaining_header))
        resets_in = header_count((headers or {}).get(self.resets_header))
        if remaining is not None:
            with self._lock:
                self._remaining = remaining
                self._resets_at = self._clock() + (resets_in or 0)


def header_count(value: str | None) -> int | None:
    try:
        return max(int(float(value)), 0) if value is not None else None
    except ValueError:
        return None
