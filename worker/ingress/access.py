"""The outermost ASGI layer: one structured access line per request, and the last word on
errors. Whatever escapes the app becomes 503 with ``Retry-After`` (the CRM retries; a bug
must never turn a notification into a 500 it gives up on), logged with its traceback.

The line holds method, path, status, duration and what the route put in the request's
state (published, ignored, signature version, the refusal reason); never a body, a query
string, a header or a secret. It also counts the request (``worker.metrics``), by route: a
path the ingress does not serve counts as ``other``, so a scanner adds no label values."""

from __future__ import annotations

import time

import structlog

from worker import metrics
from worker.ingress.refusals import RETRY_AFTER_SECONDS

log = structlog.get_logger("ingress.access")

LOGGED_STATE = ("published", "ignored", "signature", "confirm_ms", "reason")
_UNAVAILABLE = b"the ingress failed; retry later\n"


class AccessLog:
    def __init__(self, app, routes: frozenset[str] = frozenset()):
        self.app = app
        self.routes = routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status: int | None = None

        async def sending(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            log.exception("request_failed", path=scope.get("path"))
            if status is None:
                status = 503
                await _unavailable(send)
        finally:
            state = scope.get("state") or {}
            path = scope.get("path")
            route = path if path in self.routes else metrics.OTHER
            metrics.INGRESS_REQUESTS.labels(route, str(status)).inc()
            log.info(
                "request",
                method=scope.get("method"),
                path=scope.get("path"),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                client=(scope.get("client") or ("?",))[0],
                **{key: state[key] for key in LOGGED_STATE if key in state},
            )


async def _unavailable(send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
                (b"content-length", str(len(_UNAVAILABLE)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _UNAVAILABLE})
