"""A fake vendor at heart: a function from request to response, served over real HTTP.

Subclasses declare routes and auth; this base gives every fake the same test levers:
a sliding-window rate limit that answers like the vendor, fault injection (fail the next
N requests, delay responses, or a ``chaos`` policy asked about every request), and a record
of what was asked.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None
    form: dict[str, list[str]] = field(default_factory=dict)  # a form-encoded body's fields

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Route = tuple[str, re.Pattern[str], Callable[..., Response]]

# What a ``chaos`` policy may make of one request (see ``FakeVendor.chaos``).
SERVER_ERROR = "server_error"  # a 5xx instead of the answer; nothing happens
THROTTLE = "throttle"  # the vendor's 429 (with Retry-After where the vendor sends one)
LOST_ANSWER = "lost_answer"  # the request takes effect, then a 504 instead of the answer
LATE_ANSWER = "late_answer"  # the request takes effect, the answer comes ``late_answer`` late


class FakeVendor:
    """Serve with ``with Fake() as fake: fake.url``; routes are ``(method, regex, handler)``."""

    name = "vendor"

    def __init__(self, *, rate_limit: tuple[int, float] | None = None, latency: float = 0.0):
        self.rate_limit = rate_limit  # (requests, seconds), enforced like the vendor does
        self.latency = latency
        self.lock = threading.RLock()
        self.log: list[tuple[str, str, int]] = []  # (method, path, status)
        self.throttled = 0
        self._arrivals: deque[float] = deque()
        self._faults: deque[tuple[int, Any]] = deque()  # (status, body) for the next requests
        self._delays: deque[float] = deque()
        self._holds: list[tuple[str, re.Pattern[str], float]] = []  # answer late, see hold_answer
        # A fault-injection suite's policy: request -> one of the kinds above, or None. Asked
        # once per request that passes auth and the rate limit, under ``lock``.
        self.chaos: Callable[[Request], str | None] | None = None
        self.late_answer = 3.0  # seconds: longer than the client's read timeout
        self._server: ThreadingHTTPServer | None = None

    # -- what a subclass provides -------------------------------------------------------
    def routes(self) -> list[Route]:
        raise NotImplementedError

    def authenticate(self, request: Request) -> Response | None:
        """None when the credentials are good, else the vendor's refusal."""
        return None

    def throttle_response(self, retry_after: int) -> Response:
        return Response(429, {"message": "Too many requests"}, {"Retry-After": str(retry_after)})

    def not_found(self) -> Response:
        return Response(404, {"message": "Not found"})

    # -- levers for tests -----------------------------------------------------------------
    def fail_next(self, count: int, status: int = 503, body: Any = None) -> None:
        with self.lock:
            self._faults.extend([(status, body or {"message": "injected failure"})] * count)

    def clear_faults(self) -> None:
        """The vendor is back: injected failures still queued are dropped."""
        with self.lock:
            self._faults.clear()

    def throttle_next(self, count: int, retry_after: int = 1) -> None:
        """The next ``count`` requests get the vendor's throttling answer."""
        with self.lock:
            self._faults.extend([("throttle", retry_after)] * count)

    def delay_next(self, count: int, seconds: float) -> None:
        with self.lock:
            self._delays.extend([seconds] * count)

    def hold_answer(self, method: str, path_regex: str, seconds: float) -> None:
        """The next matching request takes effect at once but is answered only after
        ``seconds``: a client that dies meanwhile never learns what it caused."""
        with self.lock:
            self._holds.append((method, re.compile(path_regex), seconds))

    def requests_to(self, method: str, path_regex: str) -> int:
        pattern = re.compile(path_regex)
        return sum(1 for m, p, _ in self.log if m == method and pattern.fullmatch(p))

    # -- serving --------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        with self.lock:
            delay = self._delays.popleft() if self._delays else self.latency
        if delay:
            time.sleep(delay)
        refusal = self.authenticate(request)
        if refusal is not None:
            return refusal
        with self.lock:
            throttled = self._over_limit()
            fault = self._faults.popleft() if (not throttled and self._faults) else None
        if throttled:
            self.throttled += 1
            return self.throttle_response(throttled)
        if fault and fault[0] == "throttle":
            self.throttled += 1
            return self.throttle_response(fault[1])
        if fault:
            return Response(fault[0], fault[1])
        with self.lock:
            chaos = self.chaos(request) if self.chaos else None
        if chaos == SERVER_ERROR:
            return Response(503, {"message": "injected: service unavailable"})
        if chaos == THROTTLE:
            self.throttled += 1
            return self.throttle_response(1)
        for method, pattern, handler in self.routes():
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                try:
                    with self.lock:
                        response = handler(request, *match.groups())
                except Exception as exc:  # a bug in the fake must show, not look like a blip
                    return Response(500, {"message": f"fake crashed: {exc!r}"})
                hold = self._take_hold(request)
                if chaos == LATE_ANSWER:
                    hold = max(hold, self.late_answer)
                if hold:
                    time.sleep(hold)
                if chaos == LOST_ANSWER:
                    return Response(504, {"message": "injected: gateway timeout"})
                return response
        return self.not_found()

    def _take_hold(self, request: Request) -> float:
        with self.lock:
            for entry in self._holds:
                method, pattern, seconds = entry
                if method == request.method and pattern.fullmatch(request.path):
                    self._holds.remove(entry)
                    return seconds
        return 0.0

    def _over_limit(self) -> int:
        """Seconds until a slot frees, or 0 when this request is within the limit."""
        if not self.rate_limit:
            return 0
        calls, period = self.rate_limit
        now = time.monotonic()
        while self._arrivals and now - self._arrivals[0] >= period:
            self._arrivals.popleft()
        if len(self._arrivals) >= calls:
            return max(1, round(period - (now - self._arrivals[0]) + 0.5))
        self._arrivals.append(now)
        return 0

    def start(self, port: int = 0, host: str = "127.0.0.1") -> FakeVendor:
        """Serves on ``host``: the loopback by default, ``0.0.0.0`` where another container
        must reach it (compose's demo profile)."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as separate writes; with Nagle on, the second waits for
            # a delayed ACK (~40 ms), a latency no real vendor adds.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                form: dict[str, list[str]] = {}
                if (self.headers.get("Content-Type") or "").startswith(_FORM):
                    body = None  # an OAuth token request: its fields go to ``form``
                    form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
                else:
                    try:
                        body = json.loads(raw) if raw else None
                    except ValueError:
                        body = _INVALID_JSON
                request = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    form,
                )
                response = fake.handle(request)
                with fake.lock:
                    fake.log.append((request.method, request.path, response.status))
                payload = b"" if response.body is None else json.dumps(response.body).encode()
                # The client may have given up first (a timeout test): nobody left to answer.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(response.status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in response.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:  # quiet: tests read fake.log instead
                pass

        self._server = _Server((host, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    @property
    def port(self) -> int:
        assert self._server, "not started"
        return self._server.server_address[1]

    @property
    def origin(self) -> str:
        """Where a client on this host reaches it (the loopback, when it listens on all)."""
        host = self._server.server_address[0] if self._server else "127.0.0.1"
        return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{self.port}"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeVendor:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


_INVALID_JSON = object()
_FORM = "application/x-www-form-urlencoded"


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed mid-request (the chaos suite's SIGKILL) resets its connection:
        # routine for a server, not worth a traceback on the console.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def is_invalid_json(body: Any) -> bool:
    return body is _INVALID_JSON


def serve_main(make: Callable[[argparse.Namespace], FakeVendor], describe: str) -> None:
    """``python -m fakes.<vendor> --port N``: a fake for demos, until Ctrl-C."""
    parser = argparse.ArgumentParser(description=describe)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each call")
    args = parser.parse_args()
    fake = make(args).start(args.port, args.host)
    print(f"{fake.name} fake listening on http://{args.host}:{fake.port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()
