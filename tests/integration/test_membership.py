"""Workers find each other on PostgreSQL (``worker.membership``): each sees every live
member of its namespace, none of another namespace's, and one that goes away is gone."""

from __future__ import annotations

import threading
import time
import uuid

from worker.membership import Membership


class Seen:
    def __init__(self) -> None:
        self.views: list[tuple[int, frozenset[int]]] = []
        self.changed = threading.Condition()

    def __call__(self, member: int, members: frozenset[int]) -> None:
        with self.changed:
            self.views.append((member, members))
            self.changed.notify_all()

    def wait(self, test, timeout: float = 60.0) -> frozenset[int]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not (self.views and test(*self.views[-1])):
                left = deadline - time.monotonic()
                assert left > 0, f"views so far: {self.views}"
                self.changed.wait(left)
            return self.views[-1][1]


def test_members_see_each_other_and_one_that_leaves_is_gone(postgres_url):
    namespace, elsewhere = f"m{uuid.uuid4().hex[:8]}", f"m{uuid.uuid4().hex[:8]}"
    a_seen, b_seen, c_seen = Seen(), Seen(), Seen()
    a = Membership(postgres_url, namespace, a_seen).start()
    b = Membership(postgres_url, namespace, b_seen).start()
    other = Membership(postgres_url, elsewhere, c_seen).start()
    try:
        both = a_seen.wait(lambda me, members: len(members) == 2)
        assert b_seen.wait(lambda me, members: len(members) == 2) == both
        assert c_seen.wait(lambda me, members: True) == {other.member}

        b.stop()  # its session ends, and its lock with it
        assert a_seen.wait(lambda me, members: len(members) == 1) == {a.member}
    finally:
        for m in (a, b, other):
            m.stop()
