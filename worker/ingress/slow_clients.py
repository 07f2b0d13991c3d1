"""A deadline on the request head. uvicorn bounds idle keep-alive connections but not a
client that connects and then sends its request line and headers a byte at a time (or
nothing): each such connection holds one of PROVISIONER_INGRESS_MAX_CONNECTIONS for as long
as it likes. This protocol arms a timer whenever it waits for a request head (a new
connection, or after each answer) and answers 408 and closes if the head is not complete
in time. The body has its own deadline in the app (``read_body``).

It extends uvicorn's httptools protocol through the parser callbacks that protocol is
built on (``on_headers_complete``, ``on_response_complete``); uvicorn is pinned below 1.0,
and the tests prove the behaviour on every run."""

from __future__ import annotations

import asyncio

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = structlog.get_logger("ingress")

_REASON = b"request head not received in time\n"
_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: " + str(len(_REASON)).encode() + b"\r\n\r\n" + _REASON
)


def head_deadline_protocol(seconds: float) -> type[HttpToolsProtocol]:
    class HeadDeadlineProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _await_head(self) -> None:
            self._stop_waiting()
            self._head_timer = self.loop.call_later(seconds, self._head_too_slow)

        def _stop_waiting(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                log.info("request_head_timeout", client=(self.client or ("?",))[0])
                self.transport.write(_TIMEOUT)
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._await_head()

        def on_headers_complete(self) -> None:
            self._stop_waiting()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._await_head()

        def connection_lost(self, exc) -> None:
            self._stop_waiting()
            super().connection_lost(exc)

    return HeadDeadlineProtocol
