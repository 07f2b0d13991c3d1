"""Worker processes for the shared-pacing tests: each builds a ``PacingStore`` of its own, as
a worker does at start-up, and reports what it did through a queue."""

from __future__ import annotations

import threading
import time
from multiprocessing import Event, Queue

from adapters.shared_pacing import PacingStore


def acquire_starts(
    url: str,
    prefix: str,
    budget: str,
    limit: tuple[int, float],
    threads: int,
    each: int,
    go: Event,
    out: Queue,
) -> None:
    """``threads`` threads take ``each`` starts apiece; out: (monotonic starts, times away)."""
    store = PacingStore(url, prefix=prefix)
    pacer = store.pacer(budget, *limit)
    starts: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(each):
            pacer.acquire()
            stamp = time.monotonic()  # one system-wide clock for every process on Linux
            with lock:
                starts.append(stamp)

    go.wait()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put((starts, store.times_away))


def hold_off(
    url: str, prefix: str, budget: str, limit: tuple[int, float], seconds: float, out: Queue
) -> None:
    """What a worker does on a 429 with Retry-After; out: when it began to, then "held" once
    the pause is in the store."""
    pacer = PacingStore(url, prefix=prefix).pacer(budget, *limit)
    out.put(time.monotonic())
    pacer.hold_off(seconds)
    out.put("held")
