"""uvicorn, set up for senders on the internet: no server header, no uvicorn access log
(ours is structured, ``worker.ingress.access``; uvicorn's other lines go through the same
pipeline, ``worker.logs``), a cap on open connections (over it uvicorn answers 503), a short
keep-alive, a deadline on the request head (``slow_clients``) and on the body (the app),
and ``X-Forwarded-Proto`` trusted only from the local proxy (uvicorn's
default), which is what HubSpot's signed URL needs behind a TLS-terminating proxy."""

from __future__ import annotations

import gc
import signal

import structlog
import uvicorn

from worker import logs
from worker.bootstrap import topology
from worker.ingress.app import build_app
from worker.ingress.publisher import ConfirmingPublisher
from worker.ingress.settings import IngressSettings
from worker.ingress.slow_clients import head_deadline_protocol


def build_server(settings: IngressSettings) -> uvicorn.Server:
    publisher = ConfirmingPublisher(
        settings.amqp_url,
        topology(settings),
        heartbeat=settings.heartbeat,
        confirm_timeout=settings.confirm_timeout,
    )
    host, port = settings.host_port
    config = uvicorn.Config(
        build_app(settings, publisher),
        host=host,
        port=port,
        loop="asyncio",
        # httptools (C) parses; the standard asyncio loop, so that pika's AsyncioConnection
        # runs on the very loop that serves requests.
        http=head_deadline_protocol(settings.read_timeout),
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(config)


def serve(settings: IngressSettings) -> None:
    """Runs until SIGTERM or SIGINT; uvicorn drains requests in flight, then the publisher
    closes its connection."""
    logs.configure(settings.log_level, secrets=settings.secrets(), form=settings.log_format)
    structlog.get_logger("ingress").info(
        "ingress_starting",
        bind=settings.bind,
        namespace=settings.namespace,
        routes=enabled_routes(settings),
    )
    # uvicorn handles SIGTERM/SIGINT (drain, then close) and afterwards re-raises the signal
    # to the handler it found. That handler is this no-op, so a requested stop exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    server = build_server(settings)
    server.config.load()  # every import done: the app, the protocol, the loop
    # The start-up heap (some 60,000 objects) never becomes garbage. Frozen, the collector
    # stops walking it at every full collection, which took 20-40 ms and set the p99.
    gc.freeze()
    server.run()


def enabled_routes(settings: IngressSettings) -> list[str]:
    names = {
        "hubspot": settings.hubspot_client_secret,
        "pipedrive": settings.pipedrive_user,
        "salesforce": settings.salesforce_organization_id,
        "events": settings.webhook_secret,
    }
    return [f"/webhooks/{name}" for name, secret in names.items() if secret]
