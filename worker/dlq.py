"""``provisioner dlq``: the on-call engineer's view of NS.dead-letter."""

from __future__ import annotations


def register(sub) -> None:
    pass
