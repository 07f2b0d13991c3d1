"""A worker told to stop while it is still connecting stops (a SIGTERM at start-up, or the
demo giving up on its first step), instead of starting to consume and running on."""

from __future__ import annotations

import time


def test_a_stop_during_start_up_ends_the_worker_promptly(start_worker):
    for _ in range(3):  # the stop lands in the connecting phase, whichever part of it
        worker = start_worker()
        began = time.monotonic()
        worker.stop()  # fails if the thread is still alive after 15 s

        assert time.monotonic() - began < 10
