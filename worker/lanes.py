"""A thread pool with one lane per key: jobs with the same key (a project) run one at a
time, in the order they were submitted; jobs with different keys run in parallel."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Hashable

import structlog

log = structlog.get_logger()
Job = Callable[[], None]


class Lanes:
    def __init__(self, size: int, name: str = "lane"):
        self._ready: queue.SimpleQueue[tuple[Hashable, Job] | None] = queue.SimpleQueue()
        self._waiting: dict[Hashable, deque[Job]] = {}  # a key is here while it has a job running
        self._lock = threading.Lock()
        self._pending = 0
        self._running = 0
        self._idle = threading.Condition(self._lock)
        # Daemon threads: at shutdown, a vendor call still running must not keep the process
        # alive; its message is unacked, so the broker hands it out again.
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, key: Hashable, job: Job) -> None:
        with self._lock:
            self._pending += 1
            if key in self._waiting:
                self._waiting[key].append(job)
                return
            self._waiting[key] = deque()
        self._ready.put((key, job))

    def _work(self) -> None:
        while (item := self._ready.get()) is not None:
            key, job = item
            with self._lock:
                self._running += 1
            try:
                job()
            except Exception:
                log.exception("lane_job_failed")
            with self._lock:
                self._running -= 1
                self._pending -= 1
                following = self._waiting[key].popleft() if self._waiting[key] else None
                if following is None:
                    del self._waiting[key]
                if self._pending == 0:
                    self._idle.notify_all()
            if following is not None:
                self._ready.put((key, following))

    @property
    def pending(self) -> int:
        """Jobs submitted and not finished: running, or waiting for their lane."""
        return self._pending

    @property
    def running(self) -> int:
        return self._running

    def wait_idle(self, timeout: float) -> bool:
        with self._lock:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        for _ in self._threads:
            self._ready.put(None)
