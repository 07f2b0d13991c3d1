"""The shared budget's ACQUIRE script on the real Redis, on a clock the test sets: whatever
the window holds, a start the script lets go is a start the window counts.

The script reads the server's clock; here that one line is replaced by a time the test
chooses, so that the edges (a start due to the microsecond, a stamp read back from a string)
are met every run rather than once in thousands of requests, as bench.backfill met them."""

from __future__ import annotations

import uuid

import pytest
import redis
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters.budget_scripts import _NOW, ACQUIRE
from tests.integration.test_shared_pacing import REDIS_URL

FROZEN_NOW = "local now = tonumber(ARGV[7])\n"
EPOCH = 1_796_661_519  # 2026-12-07, near enough: the size of the numbers is what matters


@pytest.fixture(scope="module")
def client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    client.ping()  # Redis missing is a failure, not a skip
    return client


@pytest.fixture(scope="module")
def acquire_at(client):
    assert _NOW in ACQUIRE, "the script no longer reads the clock where this test expects"
    return client.register_script(ACQUIRE.replace(_NOW, FROZEN_NOW))


@pytest.fixture(scope="module")
def keys(client):
    prefix = f"test:scripts:{uuid.uuid4().hex[:12]}"
    yield [f"{prefix}:{part}" for part in ("starts", "paused", "workers", "last")]
    client.delete(*[f"{prefix}:{part}" for part in ("starts", "paused", "workers", "last")])


def micro(seconds: float) -> float:
    """A time as the script computes it from ``TIME`` (seconds and microseconds)."""
    whole, micros = divmod(round(seconds * 1_000_000), 1_000_000)
    return whole + micros / 1_000_000


@settings(max_examples=300, deadline=None)
@given(
    now_us=st.integers(min_value=0, max_value=999_999),
    calls=st.integers(min_value=1, max_value=4),
    period_ms=st.integers(min_value=10, max_value=2_000),
    last_skew_us=st.integers(min_value=-20, max_value=20),
    last_digits=st.sampled_from(["%.14g", "%.6f"]),
    ages_skew_us=st.lists(st.integers(min_value=-20, max_value=20), max_size=5),
    spaced=st.booleans(),
)
# bench.backfill's 429s: a stamp kept with Lua's 14 digits, read back a few microseconds
# after the start it marked, made "wait" come out as exactly nothing, taken as a grant.
@example(
    now_us=706_900,
    calls=100,
    period_ms=1_500,
    last_skew_us=0,
    last_digits="%.14g",
    ages_skew_us=[],
    spaced=True,
).via("bench.backfill")
def test_a_start_let_go_is_a_start_the_window_counts(
    client, acquire_at, keys, now_us, calls, period_ms, last_skew_us, last_digits, ages_skew_us,
    spaced,
):  # fmt: skip
    starts, _, _, last = keys
    client.delete(*keys)
    now = micro(EPOCH + now_us / 1_000_000)
    period = period_ms / 1000
    window = period + max(period * 0.02, 0.05)
    spacing = period / calls / 2 if spaced else 0.0
    # The newest start, a spacing ago give or take a few microseconds, as a string: the
    # edge where "wait" is a difference of nearly equal numbers.
    client.set(last, last_digits % (now - spacing + last_skew_us / 1_000_000))
    # Starts on the edge of the window: aged out or not by a few microseconds.
    for skew in ages_skew_us:
        client.zadd(starts, {uuid.uuid4().hex: now - window + skew / 1_000_000})
    held = client.zcard(starts)
    member = uuid.uuid4().hex

    granted, wait, _ = acquire_at(
        keys=keys, args=[calls, window, member, "worker", 60, spacing, repr(now)]
    )

    counted = client.zscore(starts, member)
    if granted == b"1":
        assert counted == pytest.approx(now, abs=1e-6)
        assert client.zcard(starts) <= calls
        assert float(client.get(last)) == pytest.approx(now, abs=1e-6)
    else:
        assert counted is None, "a start that must wait was counted"
        assert float(wait) >= 0.001, f"a wait of {wait!r} would be taken for a grant"
        assert client.zcard(starts) <= held
