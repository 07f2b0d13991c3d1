"""The one reader of JSON message bodies: any bytes give a value or ``Unreadable``, nothing else.

``json.loads`` alone is not safe on what a producer can send: ~120 KB of ``[`` raises
``RecursionError``, a 6,000-digit number ``ValueError`` (CPython's int digit limit), and bytes
decoded with ``surrogatepass`` smuggle lone surrogates into strings. Everything that reads a
body (parsing, ``dlq``, ``provisioner publish``) goes through ``read_json``.

Cheap on the hot path: a strict UTF-8 decode (C speed, and json.loads decodes anyway), and
the nesting is measured only when the body holds more brackets than ``MAX_DEPTH``, which no
ordinary event of the contract does.
"""

from __future__ import annotations

import itertools
import json
import re
from decimal import Decimal
from typing import Any

from schemas.errors import Unreadable, UnreadableCode

# The contract's deepest path is six levels (event.data.project.offerings[].team[]). 200 leaves
# producers' own fields plenty of room, keeps every recursive reader (json.loads, json.dumps
# with indent in ``dlq show``, walks of the parsed value) far below Python's 1,000 frames, and
# lets nearly every real body (fewer brackets than that) skip the depth scan.
MAX_DEPTH = 200

# A JSON string, escapes included, or an unterminated one up to the end. Unrolled and
# possessive, so it runs in linear time on any input (a failed match from every quote of a
# body full of ``\"`` would otherwise be quadratic).
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def read_json(body: bytes, *, exact_numbers: bool = False) -> Any:
    """The JSON value of ``body``; ``Unreadable`` (``not_json`` or ``invalid_data``) with a
    one-line reason otherwise. Refuses what RFC 8259 lets a parser refuse: bodies that are not
    UTF-8, nesting deeper than ``MAX_DEPTH``, numbers beyond the interpreter's digit limit.
    ``exact_numbers`` reads a number with a fraction or exponent as a ``Decimal`` from its own
    text (a price of 1234567890123.456789 survives; a float would not)."""
    try:
        text = body.decode("utf-8-sig")  # RFC 8259: UTF-8; a parser may ignore a BOM
    except UnicodeDecodeError as exc:
        raise Unreadable(
            UnreadableCode.NOT_JSON, f"body is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and depth(body) > MAX_DEPTH:
        raise Unreadable(UnreadableCode.NOT_JSON, f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, parse_float=Decimal if exact_numbers else None)
    except json.JSONDecodeError as exc:
        raise Unreadable(UnreadableCode.NOT_JSON, f"body is not JSON: {exc}") from None
    except RecursionError:  # cannot happen below MAX_DEPTH; kept so that nothing else escapes
        raise Unreadable(UnreadableCode.NOT_JSON, "JSON nested too deeply") from None
    except ValueError:  # int() over sys.get_int_max_str_digits()
        raise Unreadable(UnreadableCode.INVALID_DATA, "a number has too many digits") from None


def depth(body: bytes) -> int:
    """How deep arrays and objects nest in ``body``, brackets inside strings not counted."""
    brackets = _outside_strings(body).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _outside_strings(body: bytes) -> bytes:
    if b'\\"' in body:  # an escaped quote: strings must be read one by one
        return _STRING.sub(b"", body)
    # Otherwise every other piece between quotes is outside a string: twice as fast.
    return b"".join(body.split(b'"')[::2])
