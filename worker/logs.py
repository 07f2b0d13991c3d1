"""The one log pipeline: every line on stderr, ours (structlog) and every library's (pika,
uvicorn, urllib3: the stdlib ``logging``), goes through the same structlog processors and the
same renderer. JSON, one object a line, by default; human-readable lines with
``LOG_FORMAT=console``, or when stderr is a terminal and LOG_FORMAT is unset.

structlog hands its event dicts to the stdlib ``logging`` (``ProcessorFormatter``), so one
handler with one lock writes every line whole, whichever thread logs it. Lines carry the
context bound with ``structlog.contextvars`` (the consumer binds ``event_id``, ``type``,
``project_id`` for the time a lane works a message), library lines included.

Never log credentials. Settings hold them as ``SecretStr`` and adapters never log requests,
but an exception's text can still quote one (``requests`` puts the header value in
``InvalidHeader``), so every line passes ``Redactor`` last before rendering: after exception
formatting, so tracebacks are redacted too. It knows each secret in the forms it takes on the
wire: the raw value (Clockify's ``X-Api-Key``, Harvest's ``Bearer <token>``), Toggl's HTTP
Basic ``base64(<token>:api_token)``, and the escaped form a ``repr`` in a traceback shows.
Secrets obtained at run time (Salesforce's OAuth access tokens) are taught to it with
``learn_secret``; it keeps the last ``RECENT_SECRETS`` of them (older ones have expired).

pika reports one failed connection attempt in six to eight lines at ERROR (each layer of its
connection workflow says it again); those are dropped (``QuietConnectAttempts``), and the
consumer logs one line per attempt with its number and reason.
"""

from __future__ import annotations

import base64
import logging
import re
import sys
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any, TextIO

import structlog

REDACTED = "[redacted]"
# Shorter values would blank out ordinary words; no vendor token is this short.
MIN_SECRET_LENGTH = 4
RECENT_SECRETS = 8


def _forms(secret: str) -> set[str]:
    forms: set[str] = set()
    for value in {secret, secret.strip()}:
        forms |= {
            value,
            repr(value)[1:-1],  # 'tok\n' appears as tok\\n in a traceback
            base64.b64encode(f"{value}:api_token".encode()).decode(),  # Toggl Basic
        }
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


class Redactor:
    """A structlog processor (and a ``logging.Filter``) replacing secrets in every field."""

    def __init__(self, secrets: Iterable[str]):
        self._fixed: set[str] = set().union(*(_forms(s) for s in secrets))
        self._learned: deque[str] = deque(maxlen=RECENT_SECRETS)
        self._compile()

    def learn(self, secret: str) -> None:
        """One more secret, obtained at run time (an OAuth access token)."""
        self._learned.append(secret)
        self._compile()

    def _compile(self) -> None:
        forms = self._fixed.union(*(_forms(s) for s in self._learned))
        # Longest first, so a form containing another is replaced whole.
        alternatives = sorted(forms, key=len, reverse=True)
        # One assignment: a line being redacted on another thread sees the old or the new.
        self._pattern = re.compile("|".join(map(re.escape, alternatives))) if forms else None

    def redact(self, value: Any) -> Any:
        pattern = self._pattern
        if pattern is None:
            return value
        if isinstance(value, str):
            return pattern.sub(REDACTED, value)
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


_redactor = Redactor(())  # the one ``configure`` installed last


def learn_secret(secret: str) -> None:
    """Every line from now on has ``secret`` redacted too (``Redactor.learn``)."""
    _redactor.learn(secret)


class QuietConnectAttempts(logging.Filter):
    """Drops pika's lines about a connection attempt that failed: the caller reports the
    attempt once. pika's lines about an established connection that broke are kept."""

    QUIET_LOGGERS = (
        "pika.adapters.utils.connection_workflow",  # every layer of a failed connect
        "pika.adapters.blocking_connection",  # the same failure, again, then raised to us
    )
    QUIET_MESSAGES = (
        "Socket failed to connect",
        "Full-stack connection workflow failed",
        "Self-initiated stack bring-up failed",
        "Connection closed while authenticating",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("pika"):
            return True
        if record.name.startswith(self.QUIET_LOGGERS):
            return False
        return not str(record.msg).startswith(self.QUIET_MESSAGES)


# Libraries whose INFO lines are their routine (pika: every channel opened and closed).
# Libraries whose info lines say what our own lines say better: pika a handful a connect
# attempt, yoyo one a migration step (the store logs one ``schema_migrated`` line instead).
CHATTY = {"pika": logging.WARNING, "yoyo": logging.WARNING}


class _OurHandler(logging.StreamHandler):
    """The handler ``configure`` installs, so that configuring again replaces it."""


def configure(
    level: str = "INFO",
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    form: str | None = None,
) -> None:
    """``secrets``: every configured secret value (``Settings.secrets()``); ``form``:
    ``json``, ``console``, or None for console on a terminal and JSON otherwise."""
    stream = stream or sys.stderr
    if form is None:
        form = "console" if _is_terminal(stream) else "json"
    threshold = logging.getLevelName(level)
    global _redactor
    _redactor = Redactor(secrets)
    common = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    tail = [
        structlog.processors.format_exc_info,
        _redactor,  # last before rendering: it sees the formatted traceback
        _lead,
        structlog.dev.ConsoleRenderer(colors=_is_terminal(stream))
        if form == "console"
        else structlog.processors.JSONRenderer(),
    ]
    handler = _OurHandler(stream)
    handler.addFilter(QuietConnectAttempts())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # A library's ``extra={...}`` fields become fields of its line.
            foreign_pre_chain=[*common, structlog.stdlib.ExtraAdder()],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    for name, floor in CHATTY.items():
        logging.getLogger(name).setLevel(max(threshold, floor))
    logging.captureWarnings(True)  # warnings.warn lines too, as log lines
    sys.excepthook, threading.excepthook = _uncaught, _uncaught_in_thread
    # Our own lines skip the stdlib's LogRecord (half the cost of a line) but are written
    # under the same handler's lock, so no two lines ever interleave.
    names = structlog.stdlib.LoggerFactory(ignore_frame_names=[__name__])
    structlog.configure(
        processors=[*common, *tail],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=lambda *args: _Lines(handler, names(*args).name),
        cache_logger_on_first_use=True,
    )


class _Lines:
    """structlog's logger: writes each rendered line whole, under ``handler``'s lock."""

    def __init__(self, handler: logging.StreamHandler, name: str):
        self._handler = handler
        self.name = name  # for add_logger_name

    def msg(self, message: str) -> None:
        handler = self._handler
        with handler.lock:
            handler.stream.write(message + "\n")
            handler.stream.flush()

    debug = info = warning = error = critical = exception = msg


def _uncaught(exc_type, exc, traceback, thread: str | None = None) -> None:
    """An exception nothing caught (a bug): one line, with its redacted traceback, instead
    of the interpreter's raw print."""
    structlog.get_logger(__name__).critical(
        "uncaught_exception", thread=thread, exc_info=(exc_type, exc, traceback)
    )


def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:  # as threading's own hook: a thread's quiet way out
        return
    thread = args.thread.name if args.thread is not None else None
    _uncaught(args.exc_type, args.exc_value, args.exc_traceback, thread)


LEAD = ("timestamp", "level", "event", "logger")


def _lead(_logger, _method, event_dict: dict) -> dict:
    """When, how bad and what first: a person reading a JSON line finds them at once."""
    return {key: event_dict.pop(key) for key in LEAD if key in event_dict} | event_dict


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False
