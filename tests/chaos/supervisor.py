"""The worker as a separate process, and the faults done to it and to its broker.

``Worker`` starts ``python -m worker.commands run`` and kills it with SIGKILL on demand; a worker
that exits without being killed is noted (it must never do that). ``Monkey`` is a thread
that, while a trial injects faults, kills and restarts the worker at random moments, closes
every connection of the trial's worker broker-side, and restarts the broker once if asked.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

BROKER_UP_TIMEOUT = 120.0


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    return subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, check=True, timeout=timeout
    ).stdout


def broker_up() -> bool:
    done = subprocess.run(
        ["rabbitmq-diagnostics", "-q", "check_port_connectivity"],
        capture_output=True,
        timeout=60,
    )
    return done.returncode == 0


class Worker:
    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.unexpected_exits: list[int] = []  # exit codes of exits nobody asked for
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            self._note_exit()
            if self.process is None:
                with self.log_path.open("ab") as log:
                    self.process = subprocess.Popen(
                        [sys.executable, "-m", "worker.commands", "run"],
                        env=self.env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )

    def kill(self) -> None:
        """SIGKILL, then a fresh process: what a crash and the orchestrator's restart do."""
        with self._lock:
            self._note_exit()
            if self.process is not None:
                self.process.send_signal(signal.SIGKILL)
                self.process.wait()
                self.process = None
        self.start()

    def alive(self) -> bool:
        with self._lock:
            self._note_exit()
            return self.process is not None

    def stop(self) -> None:
        with self._lock:
            self._note_exit()
            if self.process is not None:
                self.process.terminate()
                try:
                    self.process.wait(30)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
                self.process = None

    def _note_exit(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            self.unexpected_exits.append(self.process.returncode)
            self.process = None


def close_worker_connections(namespace: str) -> int:
    """Closes, broker-side, the connections the trial's worker named after its namespace."""
    name = f"provisioner-worker {namespace}"
    listing = rabbitmqctl("list_connections", "pid", "client_properties")
    pids = [line.split("\t")[0] for line in listing.splitlines() if name in line]
    for pid in pids:
        # Gone meanwhile (the worker was killed) is fine: there is nothing left to close.
        with contextlib.suppress(subprocess.CalledProcessError):
            rabbitmqctl("close_connection", pid, "chaos: connection closed")
    return len(pids)


def restart_broker() -> None:
    rabbitmqctl("stop_app", timeout=120)
    rabbitmqctl("start_app", timeout=120)
    deadline = time.monotonic() + BROKER_UP_TIMEOUT
    while not broker_up():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the broker was not back within {BROKER_UP_TIMEOUT:g}s")
        time.sleep(0.5)


class Monkey(threading.Thread):
    """Kills every 2-8 s, closes connections every 4-12 s, restarts the broker at
    ``broker_restart_at`` seconds (once) if given; counts what it did in ``counts``."""

    def __init__(
        self,
        rng: random.Random,
        worker: Worker,
        namespace: str,
        broker_restart_at: float | None = None,
    ):
        super().__init__(daemon=True, name="chaos-monkey")
        self.rng = rng
        self.worker = worker
        self.namespace = namespace
        self.broker_restart_at = broker_restart_at
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        next_kill = started + self.rng.uniform(2, 8)
        next_close = started + self.rng.uniform(4, 12)
        restart_at = started + self.broker_restart_at if self.broker_restart_at else None
        while not self._halt.is_set():
            now = time.monotonic()
            try:
                if restart_at and now >= restart_at:
                    restart_at = None
                    restart_broker()
                    self.counts["broker_restart"] += 1
                elif now >= next_kill:
                    self.worker.kill()
                    self.counts["sigkill"] += 1
                    next_kill = time.monotonic() + self.rng.uniform(2, 8)
                elif now >= next_close:
                    if close_worker_connections(self.namespace):
                        self.counts["connection_close"] += 1
                    next_close = time.monotonic() + self.rng.uniform(4, 12)
            except Exception as exc:  # a fault that failed to happen is reported, not fatal
                self.errors.append(f"{type(exc).__name__}: {exc}")
            due = min(t for t in (next_kill, next_close, restart_at) if t is not None)
            self._halt.wait(max(0.0, due - time.monotonic()))

    def stop(self) -> None:
        self._halt.set()
        self.join(180)
