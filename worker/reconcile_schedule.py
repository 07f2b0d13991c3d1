"""``provisioner crm reconcile --every``: one sweep of the CRMs per interval, until stopped,
and one sweep at a time across any number of replicas.

**When.** The first sweep starts at once; the next ones at the multiples of the interval
since the epoch (every 15 minutes: at :00, :15, :30, :45). Replicas whose clocks agree thus
try at the same moment, and the lock lets one of them sweep: an interval costs the CRM one
sweep, not one per replica. A sweep that outlasts its interval makes the ticks it covered
pass; none queue up.

**The lock** is the broker's exclusive queue ``NS.reconcile``, the pattern of the intake
router's lock (``worker.router``): one connection at a time may declare it (another gets
405 RESOURCE_LOCKED), and the broker deletes it the moment that connection closes, whether
the process finished, stopped or was killed, so no lock is ever left stale. A replica that
finds it taken skips this interval (``skipped_locked``), it does not wait behind it. The
broker rather than a PostgreSQL advisory lock: every deployment has the broker, while the
default state store (SQLite) has no advisory locks. The lock's connection is served by a
thread of its own: a ``BlockingConnection`` sends heartbeats only while it is asked for
events, and a sweep may read a CRM for longer than the broker waits for them. When that
connection is lost anyway, another replica may take the lock, so the sweep is abandoned.

**Stopping** (SIGTERM, SIGINT) abandons the sweep under way at its next deal and ends the
loop. A sweep's cursor moves only once every publish of it was confirmed
(``worker.reconcile``), so an abandoned or killed sweep is done again by the next one.

| an interval's sweep of a CRM  | then                                    | ``outcome``      |
|-------------------------------|-----------------------------------------|------------------|
| every publish confirmed       | cursor stored, last success set         | ``ok``           |
| CRM, broker or store said no  | logged; the next interval tries again   | ``failed``       |
| another replica holds the lock| nothing read; the next interval tries   | ``skipped_locked``|
| stopped or lock lost mid-way  | cursor unchanged; redone next time      | (not counted)    |
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pika
import structlog
from pika.exceptions import AMQPError, ChannelClosedByBroker

from worker import metrics
from worker.reconcile import Sweep, SweepAbandoned
from worker.topology import Topology, connection_parameters

log = structlog.get_logger()

RESOURCE_LOCKED = 405
STEP = 0.5  # seconds between looks at whether to stop, while waiting for the next tick
KEEP_EVERY = 0.5  # seconds between the lock keeper's turns (heartbeats, a lost connection)

# (crm, what its sweep did, or why it could not be swept); ``abandon()`` says to stop.
SweepEach = Callable[[Callable[[], bool]], Iterable[tuple[str, "Sweep | str"]]]


def next_tick(now: float, interval: float) -> float:
    """The first multiple of ``interval`` since the epoch after ``now``."""
    return (math.floor(now / interval) + 1) * interval


class SweepLock:
    """``NS.reconcile`` held by a connection of its own for the length of one sweep."""

    def __init__(self, amqp_url: str, topology: Topology, heartbeat: int = 10):
        self.amqp_url = amqp_url
        self.queue = topology.reconcile_lock
        self.heartbeat = heartbeat
        self._released = threading.Event()
        self._keeper: threading.Thread | None = None
        self._lost = False

    @property
    def held(self) -> bool:
        return self._keeper is not None and not self._lost

    def acquire(self) -> bool:
        """True when this process now holds the lock; False when another one does. Raises
        pika's errors when the broker cannot be reached."""
        name = f"provisioner-reconcile {self.queue}"
        params = connection_parameters(self.amqp_url, self.heartbeat, name)
        connection = pika.BlockingConnection(params)
        try:
            connection.channel().queue_declare(
                self.queue, exclusive=True, arguments={"x-queue-type": "classic"}
            )
        except ChannelClosedByBroker as exc:
            with contextlib.suppress(AMQPError):
                connection.close()
            if exc.reply_code == RESOURCE_LOCKED:
                return False
            raise
        except AMQPError:
            with contextlib.suppress(AMQPError):
                connection.close()
            raise
        self._released.clear()
        self._lost = False
        self._keeper = threading.Thread(
            target=self._keep, args=(connection,), name="reconcile-lock", daemon=True
        )
        self._keeper.start()
        return True

    def _keep(self, connection: pika.BlockingConnection) -> None:
        try:
            while not self._released.is_set():
                connection.process_data_events(time_limit=KEEP_EVERY)
        except AMQPError as exc:
            self._lost = True
            log.warning("reconcile_lock_lost", queue=self.queue, error=type(exc).__name__)
            return
        with contextlib.suppress(AMQPError):
            connection.close()  # the broker deletes the queue: the lock is free

    def release(self) -> None:
        if self._keeper is None:
            return
        self._released.set()
        self._keeper.join(10)
        self._keeper = None


@dataclass
class Stopping:
    """Set by a signal handler (a flag, not an ``Event``: setting an ``Event`` from a
    handler can deadlock on the lock the interrupted main thread holds)."""

    requested: bool = False

    def __call__(self, *_signal) -> None:
        self.requested = True


class Schedule:
    """Runs ``sweep_each`` once per interval under ``lock`` until ``stopping``."""

    def __init__(
        self,
        *,
        crms: list[str],
        interval: float,
        lock,
        sweep_each: SweepEach,
        stopping: Stopping,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.crms = crms
        self.interval = interval
        self.lock = lock
        self.sweep_each = sweep_each
        self.stopping = stopping
        self.clock = clock
        self.sleep = sleep
        self.turned_at = time.monotonic()  # /healthz: the loop is not stuck
        self.broker_answered = True  # /readyz: the last try of the lock reached the broker

    def run(self) -> None:
        metrics.RECONCILE_INTERVAL.set(self.interval)
        log.info("reconcile_scheduled", every=self.interval, crms=self.crms)
        at = self.clock()
        while self._wait_until(at):
            self.once()
            at = next_tick(self.clock(), self.interval)
        log.info("reconcile_stopped")

    def _wait_until(self, at: float) -> bool:
        """Waits for ``at``; False when asked to stop meanwhile."""
        while not self.stopping.requested:
            self.turned_at = time.monotonic()
            left = at - self.clock()
            if left <= 0:
                return True
            self.sleep(min(left, STEP))
        return False

    def _abandon(self) -> bool:
        self.turned_at = time.monotonic()
        return self.stopping.requested or not self.lock.held

    def once(self) -> None:
        """One interval: the lock, or a skip; then every CRM, each ending in one outcome."""
        try:
            locked = self.lock.acquire()
        except AMQPError as exc:
            self.broker_answered = False
            log.warning("reconcile_broker_unreachable", error=type(exc).__name__)
            for crm in self.crms:
                metrics.sweep_ended(crm, "failed")
            return
        self.broker_answered = True
        if not locked:
            log.info("reconcile_skipped_locked", lock=self.lock.queue, crms=self.crms)
            for crm in self.crms:
                metrics.sweep_ended(crm, "skipped_locked")
            return
        started = self.clock()
        log.info("reconcile_sweep_started", crms=self.crms)
        try:
            for crm, swept in self.sweep_each(self._abandon):
                self._count(crm, swept)
        except SweepAbandoned:
            why = "stopping" if self.stopping.requested else "lock_lost"
            log.warning("reconcile_sweep_abandoned", reason=why)
        else:
            log.info("reconcile_sweep_finished", seconds=round(self.clock() - started, 3))
        finally:
            self.lock.release()  # after the sweep's last log line: it marks the sweep's end

    def _count(self, crm: str, swept: Sweep | str) -> None:
        if isinstance(swept, str):
            log.warning("reconcile_crm_failed", crm=crm, problem=swept)
            metrics.sweep_ended(crm, "failed")
            return
        window = swept.window
        log.info(
            "reconcile_crm_swept", crm=crm, account=swept.account, examined=swept.examined,
            published=swept.published, skipped=swept.skipped,
            since=window.since.isoformat(), until=window.until.isoformat(),
        )  # fmt: skip
        metrics.sweep_ended(
            crm, "ok", examined=swept.examined, published=swept.published, at=self.clock()
        )
