"""``adapters.read_cache.ReadCache``: expiry, bound, and no negative answers."""

from __future__ import annotations

import threading

from adapters.read_cache import ReadCache


def test_an_entry_is_served_until_its_ttl_and_not_after():
    now = [0.0]
    cache = ReadCache(ttl=10, clock=lambda: now[0])
    cache.put("user", "7")
    now[0] = 9.9
    assert cache.get("user") == "7"
    now[0] = 10.0
    assert cache.get("user") is None


def test_past_its_bound_the_least_recently_used_entry_goes_first():
    cache = ReadCache(ttl=60, max_entries=2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.get("a")
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)


def test_a_negative_answer_is_never_kept():
    cache = ReadCache(ttl=60)
    cache.put("nobody@example.com", None)
    assert len(cache) == 0


def test_a_ttl_of_zero_keeps_nothing():
    cache = ReadCache(ttl=0)
    cache.put("a", 1)
    assert cache.get("a") is None


def test_dropping_by_value_removes_only_the_entries_that_match():
    cache = ReadCache(ttl=60)
    cache.put(("user", "a@x"), "7")
    cache.put(("user", "b@x"), "8")
    cache.put(("task", "design"), 7)
    assert cache.drop_where(lambda key, value: key[0] == "user" and value == "7") == 1
    assert cache.get(("user", "a@x")) is None
    assert cache.get(("user", "b@x")) == "8" and cache.get(("task", "design")) == 7


def test_lanes_putting_and_reading_at_once_never_exceed_the_bound():
    cache = ReadCache(ttl=60, max_entries=50)

    def lane(n: int) -> None:
        for i in range(2000):
            cache.put((n, i), i)
            cache.get((n, i - 1))

    lanes = [threading.Thread(target=lane, args=(n,)) for n in range(4)]
    for t in lanes:
        t.start()
    for t in lanes:
        t.join()
    assert len(cache) == 50
