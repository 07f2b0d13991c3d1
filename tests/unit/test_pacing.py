"""``Pacer`` on a fake clock: its sleeps move time forward, nothing really waits."""

from __future__ import annotations

import random
import threading

import pytest

from adapters.pacing import HourlyQuota, Pacer


class FakeClock:
    """Time that moves only when someone sleeps (or the test advances it)."""

    def __init__(self, now: float = 1000.0):
        self.now = now
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "a pacer must never busy-loop on a zero sleep"
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


TICK = 0.002  # a wake-up can land a float's hair early and take one more 1 ms nap


def paced(calls: int, period: float, clock: FakeClock | None = None) -> tuple[Pacer, FakeClock]:
    clock = clock or FakeClock()
    return Pacer(calls, period, clock=clock, sleep=clock.sleep), clock


def start(pacer: Pacer, clock: FakeClock) -> float:
    pacer.acquire()
    return clock()


def assert_within_limit(starts: list[float], calls: int, period: float) -> None:
    """No ``calls + 1`` starts fall within one ``period``: what the vendor enforces."""
    starts = sorted(starts)
    for earlier, later in zip(starts, starts[calls:], strict=False):
        assert later - earlier >= period, f"{calls + 1} starts within {later - earlier:.3f}s"


@pytest.mark.parametrize(("calls", "period"), [(0, 1.0), (-1, 1.0), (1, 0.0), (5, -2.0)])
def test_refuses_a_limit_that_allows_nothing(calls, period):
    with pytest.raises(ValueError):
        Pacer(calls, period)


def test_window_is_a_little_wider_than_the_period():
    for calls, period in [(100, 15.0), (1, 1.0), (50, 1.0), (5, 0.2)]:
        pacer = Pacer(calls, period)
        assert period < pacer.window <= period * 1.02 + 0.05
    assert Pacer(100, 15.0).window == pytest.approx(15.3)  # 2% where 2% is the larger
    assert Pacer(1, 1.0).window == pytest.approx(1.05)  # the floor where it is larger


def test_a_burst_up_to_the_limit_starts_at_once():
    pacer, clock = paced(5, 1.0)
    starts = [start(pacer, clock) for _ in range(5)]
    assert starts == [1000.0] * 5
    assert clock.sleeps == []


def test_the_next_call_waits_until_the_oldest_start_leaves_the_window():
    pacer, clock = paced(2, 1.0)
    first = start(pacer, clock)
    clock.advance(0.3)
    second = start(pacer, clock)
    clock.advance(0.2)
    assert start(pacer, clock) == pytest.approx(first + pacer.window, abs=TICK)
    assert sum(clock.sleeps) == pytest.approx(pacer.window - 0.5, abs=TICK)
    assert start(pacer, clock) == pytest.approx(second + pacer.window, abs=TICK)


def test_one_call_a_second_is_spaced_by_the_window():
    pacer, clock = paced(1, 1.0)
    starts = [start(pacer, clock) for _ in range(4)]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps == pytest.approx([pacer.window] * 3, abs=TICK)


@pytest.mark.parametrize(("calls", "period"), [(100, 15.0), (1, 1.0), (50, 1.0), (3, 0.25)])
def test_never_more_than_calls_starts_in_any_period(calls, period):
    pacer, clock = paced(calls, period)
    rng = random.Random(calls)
    starts = []
    for _ in range(calls * 6 + 7):
        if rng.random() < 0.3:
            clock.advance(rng.uniform(0, period / 3))  # the caller is slow now and then
        starts.append(start(pacer, clock))
    assert_within_limit(starts, calls, period)


@pytest.mark.parametrize(("calls", "period"), [(100, 15.0), (1, 1.0), (50, 1.0)])
def test_a_steady_caller_gets_at_least_90_percent_of_the_allowance(calls, period):
    pacer, clock = paced(calls, period)
    starts = [start(pacer, clock) for _ in range(calls * 10)]
    # Each start may come no sooner than ``period`` after the one ``calls`` before it; the
    # mean of those gaps is the pace kept (the first burst, free, does not flatter it).
    gaps = [b - a for a, b in zip(starts, starts[calls:], strict=False)]
    assert calls / (sum(gaps) / len(gaps)) >= 0.9 * calls / period


def test_hold_off_blocks_everyone_until_the_hint_passes():
    pacer, clock = paced(10, 1.0)
    start(pacer, clock)
    clock.advance(5)  # the window is empty again, yet the server says wait
    pacer.hold_off(3.0)
    told_at = clock()
    starts = [start(pacer, clock) for _ in range(10)]
    assert min(starts) >= told_at + 3.0
    assert starts[0] == pytest.approx(told_at + 3.0, abs=TICK)
    assert starts == [starts[0]] * 10  # then the whole allowance at once: nothing else counts


def test_hold_off_of_zero_does_not_open_a_full_window():
    pacer, clock = paced(3, 10.0)
    starts = [start(pacer, clock) for _ in range(3)]
    pacer.hold_off(0)
    starts.append(start(pacer, clock))
    assert_within_limit(starts, 3, 10.0)


def test_starts_made_before_a_hold_off_still_count_after_it():
    # A 429 with "Retry-After: 1" while our own starts fill a 10 s window: when the hold
    # ends, those starts are still in the server's window, so no burst may follow.
    pacer, clock = paced(5, 10.0)
    starts = [start(pacer, clock) for _ in range(5)]
    clock.advance(0.5)
    pacer.hold_off(1.0)
    starts += [start(pacer, clock) for _ in range(5)]
    assert_within_limit(starts, 5, 10.0)
    assert starts[5] == pytest.approx(starts[0] + pacer.window, abs=TICK)


def test_a_shorter_hold_off_does_not_cut_a_longer_one_short():
    pacer, clock = paced(4, 1.0)
    told_at = clock()
    pacer.hold_off(30.0)
    pacer.hold_off(1.0)  # another thread's 429, answered a moment later
    assert start(pacer, clock) >= told_at + 30.0


def test_a_longer_hold_off_extends_a_shorter_one():
    pacer, clock = paced(4, 1.0)
    told_at = clock()
    pacer.hold_off(1.0)
    pacer.hold_off(30.0)
    assert start(pacer, clock) >= told_at + 30.0


class RecordingLog(dict):
    """The pacer's slots, noting each start as the pacer counts it (a new slot)."""

    def __init__(self, record: list[float]):
        super().__init__()
        self.record = record

    def __setitem__(self, slot: int, stamp: float) -> None:
        if slot not in self:
            self.record.append(stamp)
        super().__setitem__(slot, stamp)


def test_a_slot_counts_from_the_answer_so_a_slow_send_cannot_crowd_the_next_window():
    pacer, clock = paced(2, 1.0)
    pacer.acquire()  # granted at 0, but the lane gets it onto the wire only at 0.3
    clock.advance(0.3)
    pacer.answered()  # answered at 0.3: the vendor counted it between 0 and 0.3
    pacer.acquire()  # the second slot, at 0.3
    granted = start(pacer, clock)  # the third waits for the first slot

    # Counted from the grant, it would go at 1.05 (the window and its margin), 0.75 s after
    # a request the vendor may have stamped at 0.3: inside its window. From the answer, no.
    assert granted >= 1000.0 + 0.3 + pacer.window - TICK


def test_threads_sharing_a_pacer_never_exceed_the_limit():
    calls, period, threads, each = 5, 1.0, 8, 25
    pacer, clock = paced(calls, period)
    counted: list[float] = []
    pacer._starts = RecordingLog(counted)

    def worker() -> None:
        for _ in range(each):
            pacer.acquire()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in pool)
    assert len(counted) == threads * each
    assert_within_limit(counted, calls, period)


# -- the hourly quota the vendor reports (Toggl's X-Toggl-Quota-* headers) --------------------
def quota_headers(remaining: int, resets_in: int) -> dict[str, str]:
    return {"Remaining": str(remaining), "Resets-In": str(resets_in)}


def test_an_unknown_quota_holds_nothing_back():
    quota = HourlyQuota("Remaining", "Resets-In", clock=FakeClock())

    assert [quota.wait_needed() for _ in range(50)] == [0.0] * 50


def test_the_requests_in_flight_count_against_what_the_vendor_says_is_left():
    clock = FakeClock()
    quota = HourlyQuota("Remaining", "Resets-In", clock=clock)
    assert quota.wait_needed() == 0.0
    quota.answered(quota_headers(2, 900))

    assert quota.wait_needed() == 0.0  # one left after this, none in flight
    assert quota.wait_needed() == 0.0  # the last one, while the other is in flight
    assert quota.wait_needed() == 900  # the vendor would refuse a third
    quota.answered(quota_headers(1, 899))
    quota.answered(quota_headers(0, 898))
    assert quota.wait_needed() == 898


def test_the_quota_opens_again_when_the_vendor_said_it_would():
    clock = FakeClock()
    quota = HourlyQuota("Remaining", "Resets-In", clock=clock)
    quota.wait_needed()
    quota.answered(quota_headers(0, 30))

    clock.sleep(30)

    assert quota.wait_needed() == 0.0


def test_a_lost_answer_frees_its_place_without_changing_the_figure():
    quota = HourlyQuota("Remaining", "Resets-In", clock=FakeClock())
    quota.wait_needed()
    quota.answered(quota_headers(1, 60))
    quota.wait_needed()

    quota.answered(None)

    assert quota.wait_needed() == 0.0


def test_after_a_reset_one_request_goes_until_an_answer_says_how_much_freed():
    clock = FakeClock()
    quota = HourlyQuota("Remaining", "Resets-In", clock=clock)
    quota.wait_needed()
    quota.answered(quota_headers(0, 30))
    clock.sleep(30)

    assert quota.wait_needed() == 0.0
    assert quota.wait_needed() > 0  # the second waits for the first one's answer
    quota.answered(quota_headers(5, 3000))
    assert quota.wait_needed() == 0.0
