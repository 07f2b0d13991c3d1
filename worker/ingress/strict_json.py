"""JSON from untrusted senders: UTF-8 only, no NaN or Infinity, bounded nesting and number
sizes, and one line saying what is wrong. Python's own parser raises four different
exception types for these; every one becomes ``Malformed``."""

from __future__ import annotations

import json
from typing import Any

from worker.ingress.refusals import Malformed

MAX_DEPTH = 64  # a CRM payload nests a few levels; deeper is an attack or a bug
MAX_NUMBER_CHARS = 40  # beyond any id or amount a CRM sends


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _bounded_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number of {len(text)} digits")
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number of {len(text)} characters")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("a number out of range")
    return value


def _depth(value: Any) -> int:
    # Iterative, so a hostile document cannot exhaust the stack here either.
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


def parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Malformed(f"body is not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(
            text,
            parse_constant=_no_constant,
            parse_int=_bounded_int,
            parse_float=_bounded_float,
        )
    except json.JSONDecodeError as exc:
        raise Malformed(
            f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise Malformed(f"body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise Malformed(f"body is not acceptable JSON: {exc}") from None
    if _depth(value) > MAX_DEPTH:
        raise Malformed(f"body nests deeper than {MAX_DEPTH} levels")
    return value
