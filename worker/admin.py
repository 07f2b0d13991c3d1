"""``provisioner rules`` and ``provisioner clients``: checks and fixes a person runs."""

from __future__ import annotations


def register(sub) -> None:
    pass
