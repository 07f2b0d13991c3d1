"""How every room of the Harvest adapter (``adapters.harvest``, ``adapters.harvest_commercial``,
``adapters.harvest_assignments``) reads Harvest's ids, names and answers: ids are integers
that our ports carry as strings, names match folded, and a 404 or a 422 is an answer the
caller decides on rather than an error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from schemas.errors import VendorRejected

NOT_FOUND = frozenset({404})
UNPROCESSABLE = frozenset({422})
_DIGITS = re.compile(r"[0-9]+")


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def _numeric(value: str, what: str) -> int:
    """Harvest ids are integers; our ports carry them as strings."""
    if not _DIGITS.fullmatch(value):
        raise VendorRejected(f"harvest {what} ids are numeric, got {value[:40]!r}")
    return int(value)


def _names(names: Sequence[str] | str) -> list[str]:
    return [names] if isinstance(names, str) else list(names)  # `tasks = "Design"` in rules
