"""Salesforce record ids: the case-sensitive 15-character form and the 18-character form that
adds a three-character suffix encoding the case of the first fifteen (so case-insensitive
tools can compare them). Both name the same record; we compare and publish the 18 form."""

from __future__ import annotations

import re

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID = re.compile(r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")


def _suffix(id15: str) -> str:
    chars = []
    for start in (0, 5, 10):
        bits = sum(1 << i for i, c in enumerate(id15[start : start + 5]) if "A" <= c <= "Z")
        chars.append(_ALPHABET[bits])
    return "".join(chars)


def to_18(record_id: str) -> str | None:
    """The 18-character form, or None if this is not a well-formed Salesforce id."""
    if not _ID.match(record_id):
        return None
    id15 = record_id[:15]
    expected = id15 + _suffix(id15)
    if len(record_id) == 18 and record_id[15:].upper() != expected[15:]:
        return None  # a suffix that does not match its id: a typo, not the same record
    return expected
