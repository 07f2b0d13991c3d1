"""The worker's HTTP side door (``PROVISIONER_METRICS_BIND``): ``/metrics`` for Prometheus,
``/healthz`` and ``/readyz`` for the orchestrator.

| route      | 200 when                                         | else                         |
|------------|--------------------------------------------------|------------------------------|
| /healthz   | the consumer's loop turned in the last STALL s   | 503 ``loop stalled for N s`` |
|            | (the I/O loop ticks every 0.1 s; between         |                              |
|            | connection attempts, the reconnect loop)         |                              |
| /readyz    | the broker connection and channel are open, and  | 503 with the first reason    |
|            | the store's last answer to ``SELECT 1`` was yes  |                              |
|            | (asked at most every STORE_CHECK_EVERY s, not    |                              |
|            | per scrape; unanswered after STORE_TIMEOUT: no)  |                              |
| /metrics   | always: ``worker.metrics.WORKER``, text format   |                              |

A broker outage makes the worker unready, not unhealthy: it reconnects by itself, and a
restart would not help. One thread serves one request at a time with a socket timeout: it
only reads the consumer's state, so neither a slow client nor a bug here can block or crash
the consumer. The store is asked from a thread of its own (``StoreCheck``), so a database
that hangs makes the worker unready, never the probes slow: ``/healthz`` keeps answering.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import make_wsgi_app

from worker import metrics

log = structlog.get_logger()

STALL = 60.0  # seconds: more than the longest reconnect backoff (30 s) plus a connect
STORE_CHECK_EVERY = 5.0  # seconds between looks at the store
STORE_TIMEOUT = 5.0  # seconds a look may take before the store counts as unreachable
CLIENT_TIMEOUT = 5.0  # seconds a client may take to send its request


class StoreCheck:
    """Asks ``reachable`` from one thread of its own (one store connection for its life), at
    most every ``every`` seconds; ``ok()`` never waits for it."""

    def __init__(
        self,
        reachable: Callable[[], bool],
        *,
        every: float = STORE_CHECK_EVERY,
        timeout: float = STORE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._reachable = reachable
        self._every = every
        self._timeout = timeout
        self._clock = clock
        self._wanted = threading.Event()
        self._asked_at = clock()
        self._answered_at: float | None = None
        self._answer = False
        self._wanted.set()  # the first look at once
        threading.Thread(target=self._run, name="store-check", daemon=True).start()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            try:
                answer = bool(self._reachable())
            except Exception:
                answer = False
            self._answer, self._answered_at = answer, self._clock()

    def ok(self) -> bool:
        now = self._clock()
        answered = self._answered_at is not None and self._answered_at >= self._asked_at
        if answered and now - self._asked_at >= self._every:
            self._asked_at = now
            self._wanted.set()
            return self._answer  # the last answer, until the new one comes
        if not answered:
            # A look under way: the last answer stands until it has taken too long.
            return self._answer and now - self._asked_at <= self._timeout
        return self._answer


class Probes:
    """The answers of ``/healthz`` and ``/readyz``, from three looks at the worker."""

    def __init__(
        self,
        *,
        connected: Callable[[], bool],
        turned_at: Callable[[], float],
        store: StoreCheck,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._connected = connected
        self._turned_at = turned_at
        self._store = store
        self._clock = clock

    def health(self) -> str | None:
        """None when alive, else why not."""
        stalled = self._clock() - self._turned_at()
        return f"loop stalled for {stalled:.0f} s" if stalled > STALL else None

    def readiness(self) -> str | None:
        """None when ready, else why not."""
        if not self._connected():
            return "broker not connected"
        if not self._store.ok():
            return "store unreachable"
        return None


def wsgi_app(probes: Probes, registry=metrics.WORKER):
    exposition = make_wsgi_app(registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        try:
            if path == "/metrics":
                return exposition(environ, start_response)
            if path in ("/healthz", "/readyz"):
                problem = probes.health() if path == "/healthz" else probes.readiness()
                return _text(start_response, 503 if problem else 200, problem or "ok")
            return _text(start_response, 404, "not found: /metrics, /healthz, /readyz")
        except Exception:  # a probe must answer, never take the thread down
            log.exception("probe_failed", path=path)
            return _text(start_response, 500, "probe failed")

    return app


def _text(start_response, status: int, body: str):
    reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error", 503: "Unavailable"}
    data = (body + "\n").encode()
    start_response(
        f"{status} {reason[status]}",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))],
    )
    return [data]


class _Handler(WSGIRequestHandler):
    timeout = CLIENT_TIMEOUT  # a client that never sends its request frees the thread

    def log_message(self, *_args) -> None:
        pass  # a scrape every 15 s is not news


class _Server(WSGIServer):
    def handle_error(self, _request, _client_address) -> None:
        pass  # a client that went away mid-answer: nothing to do, nothing to log


class _Server6(_Server):
    address_family = socket.AF_INET6


def serve(address: tuple[str, int], probes: Probes, registry=metrics.WORKER) -> WSGIServer:
    """Serves on ``address`` from a daemon thread; raises ``OSError`` when it cannot bind.
    ``server_address`` of the result is the bound one (port 0 picks a free port)."""
    host, port = address
    server_class = _Server6 if ":" in host else _Server
    app = wsgi_app(probes, registry)
    server = make_server(host, port, app, server_class=server_class, handler_class=_Handler)
    thread = threading.Thread(target=server.serve_forever, name="probes", daemon=True)
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    log.info("probes_serving", bind=f"{bound_host}:{bound_port}")
    return server
