"""One vendor budget for every worker process: the pace of ``adapters.pacing`` kept in Redis.

A vendor counts requests per account, not per process. ``SharedPacer`` keeps the sliding
window of ``Pacer`` (at most ``calls`` starts in any ``window``) as a sorted set in Redis,
checked and extended by one Lua script, so that any number of threads and processes, on any
number of machines, together stay within the limit. The script reads the server's clock
(``TIME``), so machines whose clocks disagree still count one window. A Retry-After seen by
any worker sets a shared "paused until" that every worker's ``acquire`` honours; Toggl's
hourly quota (``SharedQuota``) is shared the same way.

Keys are ``<prefix>:{<budget>}:<part>``; the braces would keep one budget's keys in one slot
of a Redis Cluster (the client here speaks to one server). A budget names the vendor's host
and the account the vendor counts against (``budget()``), never our namespace: two
installations on one Harvest account share Harvest's one limit. Every key carries a TTL,
so an idle budget leaves nothing behind.

When Redis does not answer (refused, timed out, an error), nothing fails: each budget goes
on with a local ``Pacer`` holding a safe share of the limit (``local_share``), one warning
is logged when the store goes away and one when it is back, and a probe every
``PROBE_EVERY`` seconds brings the budget back to Redis. What each side started while the
other was in charge is carried over, so neither hand-over can double the pace:

    Redis away   the local share waits one window (at most ``FIRST_LOCAL_WAIT_CEILING``)
                 before its first start: the shared window may be full of others' starts
    Redis back   this process's local starts still in the window, and a hold-off still
                 running, are written into the shared window before the next shared start
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

from adapters.budget_scripts import (
    ACQUIRE,
    HOLD_OFF,
    MERGE,
    QUOTA_ANSWER,
    QUOTA_TAKE,
    RESTAMP,
)
from adapters.pacing import HourlyQuota, Pacer, header_count

log = structlog.get_logger()

# Seconds: a Lua script on a healthy Redis answers in well under a millisecond, and a worker
# must not wait on a store that is gone. redis-py's own retries are off: the fallback is ours.
SOCKET_TIMEOUT = 0.5
PROBE_EVERY = 2.0  # seconds between attempts to reach a store that went away
PRESENCE = 60.0  # seconds a worker counts as sharing a budget after its last request
FIRST_LOCAL_WAIT_CEILING = 60.0  # seconds; longer windows lean on the vendor's Retry-After
IN_FLIGHT_STALE = 300.0  # seconds: a request of a crashed worker stops counting as in flight


def budget(vendor: str, base_url: str, account: str | None = None) -> str:
    """What the vendor counts a limit against: its host and the account on it (Harvest's
    account id, a Toggl or Clockify workspace id); a CRM's own origin names the account."""
    parts = urlsplit(base_url)
    return ":".join(filter(None, (vendor, parts.netloc or base_url, account)))


def app_fingerprint(token: str) -> str:
    """HubSpot counts per private app, and only its token tells one app from another: a
    one-way digest of it names the budget, never the token itself."""
    return "app-" + hashlib.sha256(token.encode()).hexdigest()[:16]


def local_share(calls: int, period: float, workers: int) -> tuple[int, float]:
    """The pace one of ``workers`` processes may keep on its own: ``calls / workers`` per
    period, as a smaller count, or as a longer period when fewer calls than workers."""
    if calls >= workers:
        return calls // workers, period
    return 1, period * workers / calls


class PacingStore:
    """The Redis that holds every shared budget of this process, and whether it answers."""

    def __init__(
        self,
        url: str,
        *,
        workers: int = 4,
        prefix: str = "provisioner:pace",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        socket_timeout: float = SOCKET_TIMEOUT,
        presence: float = PRESENCE,
    ):
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self.workers = workers  # the share divisor until Redis has told us better
        self.prefix = prefix
        self.presence = presence
        self.clock = clock
        self.sleep = sleep
        self.worker_id = uuid.uuid4().hex  # this process, as counted among a budget's workers
        self.scripts = {
            name: self.client.register_script(text)
            for name, text in (
                ("acquire", ACQUIRE),
                ("restamp", RESTAMP),
                ("hold_off", HOLD_OFF),
                ("merge", MERGE),
                ("quota_take", QUOTA_TAKE),
                ("quota_answer", QUOTA_ANSWER),
            )
        }
        self._lock = threading.Lock()
        self._away = False
        self._next_probe = 0.0
        self.times_away = 0  # how often Redis went away: for the logs' readers, tests, bench

    def keys(self, budget: str, *parts: str) -> list[str]:
        return [f"{self.prefix}:{{{budget}}}:{part}" for part in parts]

    def pacer(self, budget: str, calls: int, period: float) -> SharedPacer:
        return SharedPacer(self, budget, calls, period)

    @property
    def away(self) -> bool:
        return self._away

    def worth_trying(self) -> bool:
        """True while Redis answers; once it has not, True for one caller every
        ``PROBE_EVERY`` seconds (the probe), and False for the rest meanwhile."""
        with self._lock:
            if not self._away:
                return True
            now = self.clock()
            if now < self._next_probe:
                return False
            self._next_probe = now + PROBE_EVERY
            return True

    def run(self, script: str, keys: list[str], args: list) -> object | None:
        """The script's answer, or None when Redis did not give one (then it counts as away
        until a probe succeeds). Never raises: pacing must not fail a vendor call."""
        try:
            answer = self.scripts[script](keys=keys, args=args)
        except Exception as exc:  # noqa: BLE001 - whatever broke, the local share takes over
            with self._lock:
                self._next_probe = self.clock() + PROBE_EVERY
                if self._away:
                    return None
                self._away = True
                self.times_away += 1
            # The type only: a redis-py message can quote the URL, and with it a password.
            log.warning("pacing_store_unreachable", error=type(exc).__name__, now="local share")
            return None
        with self._lock:
            was_away, self._away = self._away, False
        if was_away:
            log.warning("pacing_store_back", now="shared budget")
        return answer


class SharedPacer:
    """``Pacer``'s interface on a budget in Redis, with a local share while Redis is away."""

    def __init__(self, store: PacingStore, budget: str, calls: int, period: float):
        if calls < 1 or period <= 0:
            raise ValueError("pacing needs calls >= 1 and period > 0")
        self.store = store
        self.budget = budget
        self.calls = calls
        self.period = period
        self.window = period + max(period * Pacer.MARGIN, Pacer.MIN_MARGIN)
        # Starts at least half an even share apart. The vendor counts arrivals, and a burst
        # of a whole window's starts, granted at once to the lanes of several processes,
        # arrives spread over tens of milliseconds (each process, and the vendor, takes the
        # requests one after another): the next window's first starts then meet the tail of
        # that burst still inside the vendor's window, and get 429s. Spread out, the starts
        # arrive as they were granted. Half a share keeps short bursts quick and costs no
        # throughput: a full window still fits in half of it.
        self.spacing = period / calls / 2
        self.clock = store.clock
        self.sleep = store.sleep
        self._keys = store.keys(budget, "starts", "paused", "workers", "last")
        self._mine = threading.local()  # the start this thread was last granted, in Redis
        self._lock = threading.Lock()
        self._seen_workers = 1  # processes that used this budget lately, as Redis counted
        self._held_until = 0.0  # a Retry-After seen here, on ``clock``
        self._local: Pacer | None = None  # the share in force while Redis is away
        self._local_starts: deque[float] = deque()  # what the share let start, on ``clock``

    def acquire(self) -> None:
        """Blocks until one more request may start on this budget, then counts it."""
        while True:
            if self.store.worth_trying() and self._back_to_shared():
                member = uuid.uuid4().hex
                answer = self.store.run(
                    "acquire",
                    self._keys,
                    [
                        self.calls,
                        self.window,
                        member,
                        self.store.worker_id,
                        self.store.presence,
                        self.spacing,
                    ],
                )
                if answer is not None:
                    granted, wait, workers = answer
                    self._seen_workers = int(workers)
                    if granted == b"1":  # only a start the window counts may go
                        self._mine.member = member
                        return
                    self.sleep(max(float(wait), 0.001))
                    continue
            local = self._share()
            local.acquire()
            with self._lock:
                self._local_starts.append(self.clock())
            return

    def answered(self) -> None:
        """The request this thread was last granted is over: its start counts from now
        (``Pacer.answered`` says why), in Redis or in the local share that granted it."""
        member, self._mine.member = getattr(self._mine, "member", None), None
        if member is not None:
            self.store.run("restamp", self._keys[:1], [member])
            return
        with self._lock:
            local = self._local
        if local is not None:
            local.answered()

    def hold_off(self, seconds: float) -> None:
        """The vendor said to wait (Retry-After): no worker on this budget starts a request
        for ``seconds``."""
        with self._lock:
            self._held_until = max(self._held_until, self.clock() + seconds)
            local = self._local
        if local is not None:
            local.hold_off(seconds)
        elif self.store.run("hold_off", self._keys[:2], [seconds]) is None:
            self._share()  # Redis went away just now: the hold lives on in the local share

    def hourly_quota(self, remaining_header: str, resets_header: str) -> SharedQuota:
        return SharedQuota(self.store, self.budget, remaining_header, resets_header)

    def _share(self) -> Pacer:
        """The local share, made on the first need after Redis went away."""
        with self._lock:
            if self._local is None:
                workers = max(self.store.workers, self._seen_workers)
                calls, period = local_share(self.calls, self.period, workers)
                local = Pacer(calls, period, clock=self.clock, sleep=self.sleep)
                # The shared window may be full of starts the vendor still counts: none of
                # ours until they have aged out (see the module's docstring).
                now = self.clock()
                local.hold_off(
                    max(min(self.window, FIRST_LOCAL_WAIT_CEILING), self._held_until - now)
                )
                self._local = local
                self._local_starts.clear()
            return self._local

    def _back_to_shared(self) -> bool:
        """Hands what the local share started over to Redis, once it answers again;
        False when it still does not."""
        with self._lock:
            if self._local is None:
                return True
            now = self.clock()
            args: list = [max(self._held_until - now, 0.0), self.window]
            for started in self._local_starts:
                if now - started < self.window:
                    args += [now - started, uuid.uuid4().hex]
            if self.store.run("merge", self._keys[:2], args) is None:
                return False
            self._local = None
            self._local_starts.clear()
            return True


class SharedQuota:
    """``HourlyQuota`` (Toggl's ``X-Toggl-Quota-*``) for every worker on one budget: the
    vendor's last figure and the requests in flight are kept in Redis, so a worker that has
    not yet had an answer still knows what is left. While Redis is away, a local
    ``HourlyQuota`` learns the figure from this process's answers (the shared pace, then in
    its local share, keeps the requests in flight across processes few)."""

    KEEP = 3600.0  # seconds a figure outlives its reset: after it, one request at a time

    def __init__(self, store: PacingStore, budget: str, remaining_header: str, resets_header: str):
        self.store = store
        self.remaining_header = remaining_header
        self.resets_header = resets_header
        self._keys = store.keys(budget, "quota", "in-flight")
        self._local = HourlyQuota(remaining_header, resets_header, clock=store.clock)
        self._tickets = threading.local()  # per thread: what wait_needed counted, to answer

    def wait_needed(self) -> float:
        if self.store.worth_trying():
            member = uuid.uuid4().hex
            wait = self.store.run("quota_take", self._keys, [member, IN_FLIGHT_STALE, 0.05])
            if wait is not None:
                if float(wait) <= 0:
                    self._tickets.member = member
                    return 0.0
                return float(wait)
        wait = self._local.wait_needed()
        if wait == 0:
            self._tickets.member = None  # counted locally
        return wait

    def answered(self, headers: Mapping[str, str] | None) -> None:
        member = getattr(self._tickets, "member", None)
        self._tickets.member = None
        if member is None:
            self._local.answered(headers)
            return
        remaining = header_count((headers or {}).get(self.remaining_header))
        resets_in = header_count((headers or {}).get(self.resets_header)) or 0
        args = [member, "" if remaining is None else remaining, resets_in, self.KEEP]
        self._local.learn(headers)  # kept current for a fall back
        self.store.run("quota_answer", self._keys, args)
