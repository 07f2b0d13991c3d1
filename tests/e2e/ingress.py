"""The ingress as a real HTTP server in a thread of the test process (the production
composition: ``build_server``), a plain HTTP client, and a tap on ``NS.inbound`` that
collects what the ingress published. Polls with deadlines; never sleeps a fixed time."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pika

from tests.e2e.bus import DEADLINE
from worker.ingress.server import build_server
from worker.ingress.settings import IngressSettings
from worker.topology import Topology, connection_parameters


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadIngress:
    def __init__(self, env: dict[str, str]):
        self.port = free_port()
        self.settings = IngressSettings(
            **{**env, "PROVISIONER_INGRESS_BIND": f"127.0.0.1:{self.port}"}
        )
        self.server = build_server(self.settings)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "ingress did not start"
            assert self.thread.is_alive(), "ingress thread died"
            time.sleep(0.01)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(self, path: str, body: bytes, headers: dict | None = None):
        return request(self.port, "POST", path, body, headers)

    def get(self, path: str):
        return request(self.port, "GET", path)

    def wait_ready(self, timeout: float = DEADLINE) -> None:
        deadline = time.monotonic() + timeout
        while self.get("/readyz")[0] != 200:
            assert time.monotonic() < deadline, "ingress not ready (broker not connected)"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive(), "ingress did not stop"


def request(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    """(status, headers as a lower-case dict, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


class InboundTap:
    """A queue of our own bound to NS.inbound with ``#``: every message the ingress put there."""

    def __init__(self, amqp_url: str, topology: Topology):
        self.connection = pika.BlockingConnection(connection_parameters(amqp_url))
        self.channel = self.connection.channel()
        topology.declare(self.channel)
        self.queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.queue, topology.inbound, routing_key="#")
        self.messages: list[tuple[pika.BasicProperties, bytes, str]] = []

    def _drain(self) -> None:
        while True:
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return
            self.messages.append((properties, body, method.routing_key))

    def wait_for(self, count: int, timeout: float = DEADLINE) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"{len(self.messages)} messages, not {count}"
            self._drain()
            self.connection.process_data_events(time_limit=0.02)
        return self.events()

    def settle(self, quiet: float = 0.5) -> list[dict]:
        """Every message once nothing new came for ``quiet`` seconds: proves an absence."""
        last, changed = len(self.messages), time.monotonic()
        while time.monotonic() - changed < quiet:
            self.connection.process_data_events(time_limit=0.05)
            self._drain()
            if len(self.messages) != last:
                last, changed = len(self.messages), time.monotonic()
        return self.events()

    def events(self) -> list[dict]:
        return [json.loads(body) for _, body, _ in self.messages]

    def close(self) -> None:
        self.connection.close()
