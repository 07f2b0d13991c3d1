"""One vendor budget for every worker, on the real Redis: threads and processes together keep
the limit, a Retry-After in one process pauses the others, and a Redis that is refused or
stops answering leaves each process a local share, back to the shared budget when it answers.

Every test has a key prefix of its own and deletes only its own keys."""

from __future__ import annotations

import multiprocessing
import os
import socket
import threading
import time
import uuid

import pytest
import redis
from structlog.testing import capture_logs

from adapters.shared_pacing import FIRST_LOCAL_WAIT_CEILING, PROBE_EVERY, PacingStore
from adapters.toggl import QUOTA_REMAINING, QUOTA_RESETS_IN
from tests.e2e.tcp_proxy import TcpProxy
from tests.integration import pacing_workers
from tests.unit.test_pacing import FakeClock

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BUDGET = "harvest:api.harvestapp.com:123456"


@pytest.fixture(scope="module")
def direct() -> redis.Redis:
    """A plain client for looking at the keys; Redis missing is a failure, not a skip."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    client.ping()
    return client


@pytest.fixture
def prefix(direct):
    prefix = f"test:pace:{uuid.uuid4().hex[:12]}"
    yield prefix
    keys = list(direct.scan_iter(match=f"{prefix}:*"))
    if keys:
        direct.delete(*keys)


@pytest.fixture
def refused_port():
    """A port that refuses connections for the whole test: bound by us and never listening,
    so no other process can start listening on it meanwhile (a port found free and let go
    may be taken by the time the store connects)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def assert_within_limit(starts: list[float], calls: int, period: float) -> None:
    """No ``calls + 1`` starts inside one ``period``: what the vendor enforces. The pacer's
    window is at least 50 ms wider, which covers the stamp being taken after the start."""
    starts = sorted(starts)
    for earlier, later in zip(starts, starts[calls:], strict=False):
        assert later - earlier >= period, f"{calls + 1} starts within {later - earlier:.3f}s"


def until(condition, deadline: float = 20.0, step: float = 0.02) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "condition not met before the deadline"
        time.sleep(step)


def take(pacer, count: int) -> list[float]:
    starts = []
    for _ in range(count):
        pacer.acquire()
        starts.append(time.monotonic())
    return starts


def test_threads_of_separate_workers_never_exceed_the_limit_together(prefix):
    calls, period = 6, 0.4
    # A store each, as separate worker processes have: nothing is shared but Redis.
    pacers = [PacingStore(REDIS_URL, prefix=prefix).pacer(BUDGET, calls, period) for _ in range(4)]
    starts: list[float] = []
    lock = threading.Lock()

    def work(pacer) -> None:
        for stamp in take(pacer, 9):
            with lock:
                starts.append(stamp)

    threads = [threading.Thread(target=work, args=(p,)) for p in pacers for _ in range(2)]
    begun = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(starts) == 72
    assert_within_limit(starts, calls, period)
    # And the budget is used, not just kept: 72 starts need 11 windows after the first burst.
    assert time.monotonic() - begun < 72 / calls * period * 3  # a loaded machine is slower
    assert not any(p.store.times_away for p in pacers)


def test_worker_processes_never_exceed_the_limit_together(prefix):
    calls, period, processes = 8, 0.5, 3
    context = multiprocessing.get_context("spawn")
    go, out = context.Event(), context.Queue()
    args = (REDIS_URL, prefix, BUDGET, (calls, period), 3, 5, go, out)
    children = [
        context.Process(target=pacing_workers.acquire_starts, args=args) for _ in range(processes)
    ]
    for child in children:
        child.start()
    go.set()
    reports = [out.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=10)

    starts = [stamp for stamps, _ in reports for stamp in stamps]
    assert len(starts) == processes * 3 * 5
    assert_within_limit(starts, calls, period)
    assert [away for _, away in reports] == [0] * processes


def test_a_retry_after_in_one_process_pauses_the_others(prefix):
    calls, period, seconds = 50, 1.0, 2.0  # plenty left in the budget: only a pause can hold
    pacer = PacingStore(REDIS_URL, prefix=prefix).pacer(BUDGET, calls, period)
    pacer.acquire()
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    args = (REDIS_URL, prefix, BUDGET, (calls, period), seconds, out)
    other = context.Process(target=pacing_workers.hold_off, args=args)
    other.start()
    began_holding = out.get(timeout=60)
    assert out.get(timeout=60) == "held"  # not a join: a process's exit can take seconds
    asked = time.monotonic()
    pacer.acquire()
    resumed = time.monotonic()
    other.join(timeout=30)
    assert other.exitcode == 0

    # The pause ran from the other process's call (Redis's clock, ticking as ours does), and
    # ended then: the start came at once after it (or at once, if we asked after it ended).
    assert began_holding + seconds - 0.05 <= resumed < max(asked, began_holding + seconds) + 1.0
    assert pacer.store.times_away == 0


def test_a_shorter_retry_after_does_not_cut_a_longer_pause(prefix):
    store = PacingStore(REDIS_URL, prefix=prefix)
    pacer = store.pacer(BUDGET, 50, 1.0)
    pacer.hold_off(1.0)
    store.pacer(BUDGET, 50, 1.0).hold_off(0.1)

    begun = time.monotonic()
    pacer.acquire()

    assert time.monotonic() - begun > 0.8


def test_a_refused_store_leaves_a_local_share_and_one_warning(refused_port):
    calls, period, workers = 8, 0.4, 4
    clock = FakeClock()  # the local share's waits, exact and at once
    url = f"redis://127.0.0.1:{refused_port}/0"
    store = PacingStore(url, prefix="unused", workers=workers, clock=clock, sleep=clock.sleep)
    pacer = store.pacer(BUDGET, calls, period)

    with capture_logs() as logs:
        begun = clock()
        starts = []
        for _ in range(12):
            pacer.acquire()
            starts.append(clock())

    # calls / workers = 2 per period, and none until the shared window's starts have aged.
    assert_within_limit(starts, calls // workers, period)
    assert starts[0] - begun >= pacer.window
    assert [e["event"] for e in logs] == ["pacing_store_unreachable"]
    assert logs[0]["log_level"] == "warning" and store.times_away == 1


def test_a_retry_after_while_the_store_is_away_is_kept_locally(refused_port):
    store = PacingStore(f"redis://127.0.0.1:{refused_port}/0", prefix="unused", workers=1)
    pacer = store.pacer(BUDGET, 50, 0.1)
    pacer.acquire()

    pacer.hold_off(1.0)
    begun = time.monotonic()
    pacer.acquire()

    assert time.monotonic() - begun > 0.9


def test_a_store_that_stops_answering_costs_one_timeout_not_one_per_call():
    # Accepts connections (the kernel completes the handshake) and never answers a command.
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        store = PacingStore(url, prefix="unused", workers=1, socket_timeout=0.3)
        pacer = store.pacer(BUDGET, 200, 0.2)

        begun = time.monotonic()
        with capture_logs() as logs:
            take(pacer, 100)
        elapsed = time.monotonic() - begun
    finally:
        silent.close()

    # One 0.3 s timeout, one window before the local share's first start, then 100 starts
    # within one period, about 0.6 s: a timeout per call would take 30 s. The bound sits
    # between the two, far from both, so that a loaded machine does not reach it.
    assert elapsed < 10.0
    assert [e["event"] for e in logs] == ["pacing_store_unreachable"]


def test_redis_lost_mid_run_and_back_hands_the_budget_over_both_ways(prefix, direct):
    proxy = TcpProxy(("127.0.0.1", 6379)).start()
    port = proxy.port
    store = PacingStore(f"redis://127.0.0.1:{port}/0", prefix=prefix, workers=2)
    calls, period = 10, 0.5
    pacer = store.pacer(BUDGET, calls, period)
    starts_key = store.keys(BUDGET, "starts")[0]
    try:
        with capture_logs() as logs:
            starts = take(pacer, 4)
            assert direct.zcard(starts_key) == 4  # counted in Redis

            proxy.stop()
            starts += take(pacer, 6)  # no exception: the local share goes on
            assert store.away and store.times_away == 1

            proxy = TcpProxy(("127.0.0.1", 6379), port).start()
            # A probe every PROBE_EVERY seconds; a loaded machine may miss a few.
            deadline = time.monotonic() + PROBE_EVERY * 15
            while store.away:
                assert time.monotonic() < deadline, "the store never came back"
                starts += take(pacer, 1)
            # The first shared start, and the local ones still in the window, carried over.
            carried = direct.zcard(starts_key)
            starts += take(pacer, 3)
    finally:
        proxy.stop()

    events = [e["event"] for e in logs]
    assert events == ["pacing_store_unreachable", "pacing_store_back"]
    assert_within_limit(starts, calls, period)
    assert carried >= 2


def test_every_key_expires_and_the_busy_ones_soon(prefix, direct):
    store = PacingStore(REDIS_URL, prefix=prefix, presence=1.0)
    pacer = store.pacer(BUDGET, 5, 0.3)
    take(pacer, 3)
    pacer.hold_off(0.2)
    quota = pacer.hourly_quota(QUOTA_REMAINING, QUOTA_RESETS_IN)
    assert quota.wait_needed() == 0
    quota.answered({QUOTA_REMAINING: "7", QUOTA_RESETS_IN: "2"})
    assert quota.wait_needed() == 0  # one in flight

    keys = list(direct.scan_iter(match=f"{prefix}:*"))
    assert len(keys) == 6  # starts, paused, workers, last start, quota, in-flight
    assert all(direct.pttl(key) > 0 for key in keys), "a key without a TTL would linger"
    # The window's keys go a second after the window; the quota's after the hour it counts.
    window_keys = store.keys(BUDGET, "starts", "paused", "workers", "last")
    until(lambda: not direct.exists(*window_keys), 10)
    assert direct.pttl(store.keys(BUDGET, "quota")[0]) > 3600 * 1000


def test_the_hourly_quota_one_worker_learned_holds_for_another(prefix):
    ours = PacingStore(REDIS_URL, prefix=prefix).pacer(BUDGET, 50, 1.0)
    theirs = PacingStore(REDIS_URL, prefix=prefix).pacer(BUDGET, 50, 1.0)
    quota = ours.hourly_quota(QUOTA_REMAINING, QUOTA_RESETS_IN)
    other = theirs.hourly_quota(QUOTA_REMAINING, QUOTA_RESETS_IN)

    assert quota.wait_needed() == 0
    quota.answered({QUOTA_REMAINING: "1", QUOTA_RESETS_IN: "40"})
    assert other.wait_needed() == 0  # the last one left, now in flight from the other worker
    # The figure says 1 and one is in flight: nothing more until the hour resets.
    assert 39 < quota.wait_needed() <= 40
    other.answered({QUOTA_REMAINING: "0", QUOTA_RESETS_IN: "39"})
    assert 38 < quota.wait_needed() <= 39


def test_the_first_local_wait_is_capped_for_hour_long_windows(refused_port):
    clock = FakeClock()
    url = f"redis://127.0.0.1:{refused_port}/0"
    store = PacingStore(url, prefix="unused", workers=1, clock=clock, sleep=clock.sleep)
    pacer = store.pacer(BUDGET, 30, 3600.0)  # Clockify's free plan

    pacer.acquire()

    assert FIRST_LOCAL_WAIT_CEILING <= sum(clock.sleeps) <= FIRST_LOCAL_WAIT_CEILING + 0.01


def test_the_hourly_quota_goes_on_locally_while_the_store_is_away(refused_port):
    store = PacingStore(f"redis://127.0.0.1:{refused_port}/0", prefix="unused")
    quota = store.pacer(BUDGET, 50, 1.0).hourly_quota(QUOTA_REMAINING, QUOTA_RESETS_IN)

    assert quota.wait_needed() == 0  # nothing known yet: nothing held back
    quota.answered({QUOTA_REMAINING: "0", QUOTA_RESETS_IN: "30"})

    assert 29 < quota.wait_needed() <= 30  # what the answer said, kept in this process
    assert store.times_away == 1


def test_a_burst_is_spread_out_so_that_it_arrives_as_it_was_granted(prefix, direct):
    # Granted all at once, a window's worth of requests reaches the vendor spread over tens
    # of milliseconds, and the next window's first ones then meet its tail (429s in
    # bench.scale). Starts half an even share apart arrive as they were granted.
    calls, period = 10, 1.0
    pacers = [PacingStore(REDIS_URL, prefix=prefix).pacer(BUDGET, calls, period) for _ in range(2)]
    threads = [threading.Thread(target=take, args=(p, 5)) for p in pacers for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    [starts_key] = [k for k in direct.scan_iter(match=f"{prefix}:*") if k.endswith(b"starts")]
    granted = [score for _, score in direct.zrange(starts_key, 0, -1, withscores=True)]
    gaps = [later - earlier for earlier, later in zip(granted, granted[1:], strict=False)]
    # The oldest age out of the window as it goes (how many are left depends on how fast the
    # threads came back for more): two make a gap.
    assert len(granted) >= 2
    assert min(gaps) >= period / calls / 2 - 0.001, gaps


def test_a_shared_start_counts_from_its_answer_so_a_slow_send_cannot_crowd_the_window(
    prefix, direct
):
    store = PacingStore(REDIS_URL, prefix=prefix)
    pacer = store.pacer(BUDGET, 1, 0.5)
    pacer.acquire()
    [(member, granted)] = direct.zrange(store.keys(BUDGET, "starts")[0], 0, -1, withscores=True)
    time.sleep(0.2)  # the lane gets it onto the wire late; the answer comes now

    pacer.answered()

    [(same, answered)] = direct.zrange(store.keys(BUDGET, "starts")[0], 0, -1, withscores=True)
    assert same == member and answered - granted >= 0.2  # the slot frees 0.2 s later
