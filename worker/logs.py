"""structlog set-up: one JSON object per line on stderr, with the message context bound by
the consumer (event_id, type, project_id).

Never log credentials. Settings hold them as ``SecretStr`` and adapters never log requests,
but an exception's text can still quote one (``requests`` puts the header value in
``InvalidHeader``), so every line passes ``Redactor`` last before rendering: after exception
formatting, so tracebacks are redacted too. It knows each secret in the forms it takes on the
wire: the raw value (Clockify's ``X-Api-Key``, Harvest's ``Bearer <token>``), Toggl's HTTP
Basic ``base64(<token>:api_token)``, and the escaped form a ``repr`` in a traceback shows.
"""

from __future__ import annotations

import base64
import logging
import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import structlog

REDACTED = "[redacted]"
# Shorter values would blank out ordinary words; no vendor token is this short.
MIN_SECRET_LENGTH = 4


class Redactor:
    """A structlog processor (and a ``logging.Filter``) replacing secrets in every field."""

    def __init__(self, secrets: Iterable[str]):
        forms: set[str] = set()
        for secret in secrets:
            for value in {secret, secret.strip()}:
                forms |= {
                    value,
                    repr(value)[1:-1],  # 'tok\n' appears as tok\\n in a traceback
                    base64.b64encode(f"{value}:api_token".encode()).decode(),  # Toggl Basic
                }
        forms = {f for f in forms if len(f) >= MIN_SECRET_LENGTH}
        # Longest first, so a form containing another is replaced whole.
        alternatives = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, alternatives))) if forms else None

    def redact(self, value: Any) -> Any:
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self._pattern.sub(REDACTED, value)
        if isinstance(value, dict):
            return {k: self.redact(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.redact(v) for v in value)
        if isinstance(value, bytes):
            return self.redact(value.decode("utf-8", "replace"))
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self.redact(str(value))  # an object whose str() could carry a secret

    def __call__(self, _logger, _method, event_dict: dict) -> dict:
        return {key: self.redact(value) for key, value in event_dict.items()}

    def filter(self, record: logging.LogRecord) -> bool:
        """For the stdlib loggers (pika, urllib3): the whole rendered message, redacted."""
        try:
            record.msg = self.redact(record.getMessage())
            record.args = None
            if record.exc_info:
                traceback = logging.Formatter().formatException(record.exc_info)
                record.exc_text, record.exc_info = self.redact(traceback), None
        except Exception:  # noqa: BLE001 - a log call must never raise; drop the line instead
            return False
        return True


def configure(
    level: str = "INFO", *, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> None:
    """``secrets``: every configured secret value (``Settings.secrets()``)."""
    stream = stream or sys.stderr
    redactor = Redactor(secrets)
    logging.basicConfig(stream=stream, level=logging.WARNING, format="%(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    logging.getLogger("pika").setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redactor,  # last before rendering: it sees the formatted traceback
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
