"""Bad bodies for a trial, drawn from the property-based generator of ``tests.strategies``,
each with the name of its kind (deep nesting, huge numbers, bad times …) for the report. A
seed gives the same kinds and shapes; the ids the generator puts inside are fresh each time.

Hypothesis strategies are meant for ``@given``; a seeded ``@given`` that only collects is
the supported way to draw a reproducible handful outside a test.
"""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.strategies import SearchStrategy

from tests.strategies import BAD_BODY_KINDS


def sample_bad_bodies(count: int, at_seed: int) -> list[tuple[str, bytes]]:
    """``count`` bodies as (kind, body), kinds drawn evenly at random."""
    rng = random.Random(at_seed)
    kinds = Counter(rng.choice(sorted(BAD_BODY_KINDS)) for _ in range(count))
    drawn = [
        (kind, body)
        for kind, n in sorted(kinds.items())
        for body in _draw(BAD_BODY_KINDS[kind], n, rng.randrange(2**32))
    ]
    rng.shuffle(drawn)
    return drawn


def _draw(strategy: SearchStrategy[bytes], count: int, at_seed: int) -> list[bytes]:
    drawn: list[bytes] = []

    @seed(at_seed)
    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(body: bytes) -> None:
        drawn.append(body)

    collect()
    # A kind with little room may give fewer distinct examples than asked: repeat them.
    return (drawn * count)[:count]
