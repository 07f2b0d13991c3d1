"""Bad bodies for a trial, drawn from the property-based generator of ``tests.strategies``.

Hypothesis strategies are meant for ``@given``; a seeded ``@given`` that only collects is
the supported way to draw a reproducible handful outside a test.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, Phase, given, seed, settings

from tests.strategies import bad_bodies


def sample_bad_bodies(count: int, at_seed: int) -> list[bytes]:
    drawn: list[bytes] = []
    if count <= 0:
        return drawn

    @seed(at_seed)
    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(bad_bodies())
    def collect(body) -> None:
        drawn.append(body if isinstance(body, bytes) else json.dumps(body).encode())

    collect()
    return drawn[:count]
