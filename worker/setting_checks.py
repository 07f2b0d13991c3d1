"""Checks of single setting values, and the error that names a bad setting: the helpers
``worker.settings`` and ``worker.crm_settings`` validate with. None quotes a value (it may
be a secret)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import SecretStr


class SettingsError(ValueError):
    """A missing or invalid setting; the message names it."""


DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> float:
    """``30m``, ``12h``, ``7d``, ``90s`` or plain seconds; ``ValueError`` otherwise."""
    match = DURATION.fullmatch(text.strip().lower())
    if not match:
        raise ValueError("must be a duration such as 30m, 12h or 7d")
    return float(match.group(1)) * DURATION_UNITS[match.group(2)]


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def is_redis_url(text: str) -> bool:
    """redis://[:password@]host[:port][/db], rediss://… or unix:///path: redis-py's forms."""
    parts = urlsplit(text)
    if parts.scheme == "unix":
        return bool(parts.path)
    try:
        parts.port  # noqa: B018 - a port that is no number raises here, not at the first call
    except ValueError:
        return False
    db = parts.path.strip("/")
    known = parts.scheme in ("redis", "rediss") and bool(parts.hostname)
    return known and (db == "" or db.isdigit())


def header_value(value) -> str | None:
    """Mounted secret files end in a newline, and requests puts the value in a header as
    it is: strip it, and refuse what still cannot be a header value, here rather than in
    an exception whose text carries the secret. Messages never quote the value."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None or value == "":  # unset (compose passes "" for a disabled tool)
        return None
    text = str(value).strip()
    if not text:
        raise ValueError("is only whitespace")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("contains a control character, so it cannot go in an HTTP header")
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("is not latin-1 text, so it cannot go in an HTTP header") from None
    return text


def pem_key_file(value) -> str | None:
    """Read once here, so a wrong path stops the start rather than the first deal."""
    if value is None or str(value).strip() == "":
        return None
    path = str(value).strip()
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot be read ({type(exc).__name__})") from None
    if "PRIVATE KEY-----" not in text:
        raise ValueError("is not a PEM private key (-----BEGIN PRIVATE KEY-----)")
    return path


def calls_per_seconds(value: str | None) -> str | None:
    """``calls/seconds``, both above zero: a pacer allowing no call, or all at once in no
    time, would stall every vendor call or divide by zero at the first one."""
    if value is None:
        return None
    calls, _, seconds = value.strip().partition("/")
    try:
        ok = int(calls) >= 1 and float(seconds) > 0
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("must be calls/seconds, both above zero, e.g. 100/15")
    return f"{int(calls)}/{seconds.strip()}"
