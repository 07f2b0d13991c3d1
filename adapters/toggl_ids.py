"""How Toggl's ids and names are read, for both rooms of the Toggl adapter (``adapters.toggl``,
``adapters.toggl_commercial``): ids are integers, checked before they reach a URL, and two
names count as the same when they fold alike.
"""

from __future__ import annotations

import re

from schemas.errors import VendorRejected

_DIGITS = re.compile(r"[0-9]+")  # str.isdigit() would also accept "²" and other digits


def fold(name: str) -> str:
    """How we compare names: case and runs of whitespace do not count."""
    return " ".join(name.split()).casefold()


def _number(value: str, what: str, error: type[Exception] = VendorRejected) -> int:
    """Toggl ids are integers; anything else cannot name one (and must not reach a URL)."""
    text = str(value).strip()
    if not _DIGITS.fullmatch(text):
        raise error(f"a Toggl {what} id is a number, not {text[:40]!r}")
    return int(text)
