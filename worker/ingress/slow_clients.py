"""A deadline on the request head. uvicorn bounds idle keep-alive connections but not a
client that connects and then sends its request line and headers a byte at a time (or
nothing): each such connection holds one of PROVISIONER_INGRESS_MAX_CONNECTIONS for as long
as it likes. This protocol arms a timer whenever it waits for a request head (a new
connection, or after each answer) and answers 408 and closes if the head is not complete
in time. The body has its own deadline in the app (``read_body``).

Closing is lingering (as nginx does it): when the server closes a connection (after a 413
or 408, whose ``Connection: close`` leaves the rest of a body on the wire), it sends its
answer and a FIN, then reads and drops whatever the client still sends for up to
``LINGER_SECONDS`` before it closes the socket. A plain close with unread bytes in the
receive buffer sends a TCP reset instead, and a client still writing its body then sees
"connection reset" or "broken pipe", never the 413 that says why.

It extends uvicorn's httptools protocol through the parser callbacks that protocol is
built on (``on_headers_complete``, ``on_response_complete``); uvicorn is pinned below 1.0,
and the tests prove the behaviour on every run."""

from __future__ import annotations

import asyncio

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = structlog.get_logger("ingress")

LINGER_SECONDS = 2.0
_REASON = b"request head not received in time\n"
_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: " + str(len(_REASON)).encode() + b"\r\n\r\n" + _REASON
)


class _LingeringTransport:
    """The transport as uvicorn sees it, except that ``close`` lingers (module docstring)."""

    def __init__(self, transport: asyncio.Transport, linger) -> None:
        self._transport = transport
        self._linger = linger
        self.lingering = False

    def __getattr__(self, name: str):
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        self._linger()


def head_deadline_protocol(seconds: float) -> type[HttpToolsProtocol]:
    class HeadDeadlineProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _lingering: _LingeringTransport | None = None

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
            self._lingering = _LingeringTransport(transport, self._linger)
            super().connection_made(self._lingering)
            self._await_head()

        def _linger(self) -> None:
            wrapper = self._lingering
            if wrapper is None or wrapper.lingering:
                return
            wrapper.lingering = True
            self._stop_waiting()
            real = wrapper._transport
            if real.is_closing() or not real.can_write_eof():
                real.close()
                return
            real.write_eof()  # the answer already written goes first, then the FIN
            real.resume_reading()  # uvicorn may have paused it for flow control
            self.loop.call_later(LINGER_SECONDS, real.close)

        def data_received(self, data: bytes) -> None:
            if self._lingering is not None and self._lingering.lingering:
                return  # the rest of a refused request: read and dropped
            super().data_received(data)

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
