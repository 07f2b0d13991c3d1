"""The ingress's routes (contract, "CRM webhook ingress"). Each webhook goes the same way:

    route configured? (404) -> a credential in the URL (401, Salesforce, before the body)
    -> body within size and time (413, 408) -> verify (401) -> translate (400)
    -> publish and await every confirm (503) -> 2xx

After a 413 or 408 the connection is closed (``Connection: close``): the rest of that body
is still on the wire, and reading it to reach the next request is what 413 refused.

``Refused`` carries each refusal's status; anything else that goes wrong answers 503, so a
CRM retries rather than drops. Nothing is published before verification and translation of
the whole request have succeeded, so a refused request publishes nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from worker import metrics
from worker.ingress import hubspot, pipedrive, salesforce, standard_webhooks
from worker.ingress.access import AccessLog
from worker.ingress.deal_events import Outgoing
from worker.ingress.publisher import ConfirmingPublisher
from worker.ingress.refusals import (
    RETRY_AFTER_SECONDS,
    Malformed,
    Refused,
    TooLarge,
    TooSlow,
    Unauthorized,
)
from worker.ingress.settings import IngressSettings, webhook_key
from worker.ingress.strict_json import parse_json

log = structlog.get_logger("ingress")


@dataclass
class Accepted:
    outgoing: list[Outgoing]
    ignored: int = 0
    signature: str | None = None
    response: Response | None = None  # None: the default JSON summary


Handler = Callable[[Request, bytes], Accepted]


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The raw body, at most ``limit`` bytes, read within ``timeout`` seconds."""
    declared = request.headers.get("content-length")
    # Digits only and a short string first: int() of 5,000 digits raises, not compares.
    if declared and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise TooLarge(f"body is over the {limit}-byte limit (Content-Length)")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"body is over the {limit}-byte limit")
                chunks.append(chunk)
    except TimeoutError:
        raise TooSlow(f"request body not received within {timeout:g} s") from None
    except ClientDisconnect:
        raise Malformed("the client went away before sending the whole body") from None
    return b"".join(chunks)


def public_uri(request: Request, public_url: str | None) -> str:
    """The URL the sender called: PROVISIONER_PUBLIC_URL, or this request's scheme and Host,
    then the path and query exactly as they arrived (raw, not decoded)."""
    scope = request.scope
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string") or b""
    tail = path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
    if public_url:
        return public_url + tail
    host = request.headers.get("host")
    if not host:
        raise Unauthorized("no Host header to rebuild the signed URL from")
    return f"{scope['scheme']}://{host}{tail}"


def build_app(settings: IngressSettings, publisher: ConfirmingPublisher) -> AccessLog:
    secret = settings.hubspot_client_secret
    webhook = settings.webhook_secret
    events_key = webhook_key(webhook) if webhook else None

    def hubspot_route(request: Request, body: bytes) -> Accepted:
        version = hubspot.verify(
            request.headers,
            secret=secret.get_secret_value(),
            method=request.method,
            uri=public_uri(request, settings.public_url),
            body=body,
            legacy=settings.hubspot_legacy_signatures,
            now_ms=int(time.time() * 1000),
        )
        outgoing, ignored = hubspot.translate(body)
        return Accepted(outgoing, ignored, version)

    def pipedrive_route(request: Request, body: bytes) -> Accepted:
        pipedrive.verify(
            request.headers.get("authorization"),
            user=settings.pipedrive_user,
            password=settings.pipedrive_password.get_secret_value(),
        )
        outgoing, ignored = pipedrive.translate(body)
        return Accepted(outgoing, ignored, "basic")

    def salesforce_token(request: Request) -> None:
        token = settings.salesforce_webhook_token
        salesforce.verify_token(request.scope["query_string"], token=token.get_secret_value())

    def salesforce_route(_request: Request, body: bytes) -> Accepted:
        outgoing, ignored = salesforce.translate(
            body, organization_id=settings.salesforce_organization_id
        )
        ack = Response(salesforce.ACK, 200, media_type=salesforce.ACK_CONTENT_TYPE)
        return Accepted(outgoing, ignored, "token", ack)

    def events_route(request: Request, body: bytes) -> Accepted:
        standard_webhooks.verify(request.headers, body, key=events_key, now=time.time())
        parse_json(body)  # the strict reading first: depth, number sizes, NaN
        return Accepted([standard_webhooks.translate(body)], 0, "v1")

    def webhook_endpoint(
        handler: Handler, gate: Callable[[Request], None] | None = None
    ) -> Callable[..., Awaitable]:
        async def endpoint(request: Request) -> Response:
            state = request.scope.setdefault("state", {})
            try:
                if gate is not None:  # a credential in the URL: judged before the body is read
                    gate(request)
                body = await read_body(request, settings.max_body, settings.read_timeout)
                accepted = handler(request, body)
                state["signature"] = accepted.signature
                confirming = time.perf_counter()
                await publisher.publish(accepted.outgoing)
                state["confirm_ms"] = round((time.perf_counter() - confirming) * 1000, 2)
            except Refused as refusal:
                state["reason"] = refusal.reason
                return PlainTextResponse(
                    refusal.reason + "\n", refusal.status, headers=refusal.headers
                )
            except Exception:
                log.exception("webhook_failed", path=request.url.path)
                state["reason"] = "internal error"
                return _unavailable("the ingress failed; retry later")
            state["published"], state["ignored"] = len(accepted.outgoing), accepted.ignored
            metrics.INGRESS_PUBLISHED.labels(request.url.path).inc(len(accepted.outgoing))
            stats["published"] += len(accepted.outgoing)
            stats["ignored"] += accepted.ignored
            return accepted.response or JSONResponse(
                {"published": len(accepted.outgoing), "ignored": accepted.ignored}
            )

        return endpoint

    stats = {"published": 0, "ignored": 0}

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok", **stats})

    async def readyz(_request: Request) -> Response:
        if publisher.ready:
            return JSONResponse({"status": "ready"})
        return _unavailable("the broker is not connected", json_body={"status": "not_ready"})

    async def metrics_text(_request: Request) -> Response:
        return Response(generate_latest(metrics.INGRESS), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(_app):
        publisher.start()
        yield
        await publisher.stop()

    # A route whose secret is not set does not exist: 404 to every method (contract).
    configured = {
        "/webhooks/hubspot": (hubspot_route, None, secret is not None),
        "/webhooks/pipedrive": (pipedrive_route, None, settings.pipedrive_user is not None),
        "/webhooks/salesforce": (
            salesforce_route,
            salesforce_token,
            settings.salesforce_organization_id is not None,
        ),
        "/webhooks/events": (events_route, None, webhook is not None),
    }
    routes = [
        Route(path, webhook_endpoint(handler, gate), methods=["POST"])
        for path, (handler, gate, enabled) in configured.items()
        if enabled
    ]
    routes.append(Route("/healthz", healthz, methods=["GET"]))
    routes.append(Route("/readyz", readyz, methods=["GET"]))
    routes.append(Route("/metrics", metrics_text, methods=["GET"]))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={Exception: _last_resort},
    )
    return AccessLog(app, frozenset(route.path for route in routes))


def _unavailable(reason: str, json_body: dict | None = None) -> Response:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if json_body is not None:
        return Response(json.dumps(json_body), 503, headers, "application/json")
    return PlainTextResponse(reason + "\n", 503, headers=headers)


async def _last_resort(_request: Request, _exc: Exception) -> Response:
    # Starlette answers an exception that escaped a route with this instead of a 500.
    return _unavailable("the ingress failed; retry later")
