"""The vendor fault profile: a seeded policy each fake asks about every request.

About a quarter of requests get a 5xx, 8% of writes take effect and then answer 504 (a lost
answer), a few writes take effect and answer after the worker's read timeout (a late
answer), and now and then a burst of 429s. The policy is on only while a trial injects
faults; the settle phase turns it off so that the system can finish.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass

from fakes.base import LATE_ANSWER, LOST_ANSWER, SERVER_ERROR, THROTTLE, Request

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Rates:
    server_error: float = 0.25
    lost_answer: float = 0.08  # of writes
    late_answer: float = 0.03  # of writes
    burst: float = 0.01  # chance that a request starts a burst of 429s
    burst_length: tuple[int, int] = (3, 8)


class FaultProfile:
    """One per trial, shared by the three fakes; ``counts`` says what it injected."""

    def __init__(self, rng: random.Random, rates: Rates = Rates()):
        self.rng = rng
        self.rates = rates
        self.counts: Counter[str] = Counter()
        self.enabled = False
        self._burst_left = 0
        self._lock = threading.Lock()  # the three fakes serve from their own threads

    def decide(self, request: Request) -> str | None:
        with self._lock:
            if not self.enabled:
                return None
            fault = self._draw(request.method in WRITES)
            if fault:
                self.counts[fault] += 1
            return fault

    def _draw(self, write: bool) -> str | None:
        r, roll = self.rates, self.rng.random()
        if self._burst_left:
            self._burst_left -= 1
            return THROTTLE
        if roll < r.burst:
            self._burst_left = self.rng.randint(*r.burst_length) - 1
            self.counts["throttle_burst"] += 1
            return THROTTLE
        roll -= r.burst
        if roll < r.server_error:
            return SERVER_ERROR
        roll -= r.server_error
        if write and roll < r.lost_answer:
            return LOST_ANSWER
        roll -= r.lost_answer
        if write and roll < r.late_answer:
            return LATE_ANSWER
        return None


FAULT_KINDS = (SERVER_ERROR, LOST_ANSWER, LATE_ANSWER, "throttle_burst", THROTTLE)
