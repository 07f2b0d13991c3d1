"""The worker limits glibc's malloc arenas at start-up unless the environment already does
(each case in a fresh interpreter: the limit is process-wide)."""

from __future__ import annotations

import os
import subprocess
import sys

CALL = "from worker.memory import limit_malloc_arenas; print(limit_malloc_arenas())"


def limited(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", CALL], env={**clean, **env}, capture_output=True, text=True
    )
    return done.stdout.strip()


def test_glibc_takes_the_limit():
    assert limited() == "True"


def test_a_limit_set_in_the_environment_wins():
    assert limited(MALLOC_ARENA_MAX="4") == "False"
