"""The ingress's publisher: one AMQP connection on the HTTP server's own asyncio loop (pika's
``AsyncioConnection``), publisher confirms pipelined across every request in flight.

A request publishes its messages without waiting and then awaits one future, resolved when
the broker has confirmed all of them (acks arrive in order, often one ``multiple`` ack for
many). Concurrent requests therefore share the broker's round trips and its fsyncs instead
of queueing behind one another. Being on the server's loop, no thread hands work over: pika
is not thread-safe, and here only the loop ever touches it.

Answers (the caller maps them to HTTP):

| what happened                                      | publish()                          |
|----------------------------------------------------|------------------------------------|
| every message acked                                | returns                            |
| not connected, connection blocked (resource alarm) | Unavailable at once, nothing sent  |
| a message nacked, or returned unroutable           | Unavailable (the others may be on  |
|                                                    | the bus: same ids, so harmless)    |
| connection or channel lost before every ack        | Unavailable                        |
| no confirm within ``confirm_timeout``              | Unavailable                        |

On connect it declares the whole topology (``Topology.declare``, idempotent) before the
channel counts as ready; when the connection drops it reconnects with backoff.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.exceptions import AMQPError
from pika.spec import Basic

from worker.ingress.deal_events import Outgoing
from worker.ingress.refusals import Unavailable
from worker.topology import Topology, connection_parameters

log = structlog.get_logger()

BACKOFF_FIRST, BACKOFF_MAX = 0.2, 5.0


@dataclass(eq=False)
class _Request:
    """The confirms one HTTP request still waits for."""

    done: asyncio.Future
    remaining: int

    def settle(self, problem: str | None) -> None:
        self.remaining -= 1
        if self.done.done():
            return
        if problem is not None:
            self.done.set_result(problem)
        elif self.remaining == 0:
            self.done.set_result(None)


@dataclass(eq=False)
class _InFlight:
    request: _Request
    event_id: str
    returned: bool = field(default=False)


class ConfirmingPublisher:
    def __init__(
        self,
        amqp_url: str,
        topology: Topology,
        *,
        heartbeat: int = 10,
        confirm_timeout: float = 4.0,
    ):
        self.amqp_url = amqp_url
        self.topology = topology
        self.heartbeat = heartbeat
        self.confirm_timeout = confirm_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connection: AsyncioConnection | None = None
        self._channel = None
        self._blocked = False
        self._stopping = False
        self._backoff = BACKOFF_FIRST
        self._attempt = 0  # connection attempts since the last success, for the log
        self._next_seq = 1
        self._in_flight: dict[int, _InFlight] = {}  # publish sequence number -> its request
        self.published = 0

    @property
    def ready(self) -> bool:
        return self._channel is not None and self._channel.is_open and not self._blocked

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Connects in the background, on the running loop; ``ready`` says when it is done."""
        self._loop = asyncio.get_running_loop()
        self._connect()

    async def stop(self, grace: float = 2.0) -> None:
        self._stopping = True
        connection = self._connection
        if connection is not None and not (connection.is_closed or connection.is_closing):
            connection.close()
        deadline = self._loop.time() + grace
        while connection is not None and not connection.is_closed and self._loop.time() < deadline:
            await asyncio.sleep(0.02)

    def _connect(self) -> None:
        if self._stopping:
            return
        self._attempt += 1
        params = connection_parameters(
            self.amqp_url, self.heartbeat, f"provisioner-ingress {self.topology.namespace}"
        )
        self._connection = AsyncioConnection(
            params,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_closed,
            custom_ioloop=self._loop,
        )

    def _on_open(self, connection: AsyncioConnection) -> None:
        connection.add_on_connection_blocked_callback(self._on_blocked)
        connection.add_on_connection_unblocked_callback(self._on_unblocked)
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_channel_open(self, channel) -> None:
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        # Sent without waiting: the channel handles them in order, and a declaration that
        # fails closes it, so the confirm-select answer below means every one of them held.
        self.topology.declare(channel)
        channel.confirm_delivery(
            ack_nack_callback=self._on_confirm,
            callback=lambda _frame: self._on_confirming(channel),
        )

    def _on_confirming(self, channel) -> None:
        self._channel = channel
        self._next_seq = 1
        self._blocked = False
        self._backoff = BACKOFF_FIRST
        self._attempt = 0
        log.info("broker_connected", namespace=self.topology.namespace)

    def _on_open_error(self, _connection, error: BaseException) -> None:
        # One line an attempt: pika's own lines about it are quieted (``worker.logs``).
        log.warning(
            "broker_connect_failed",
            attempt=self._attempt,
            reason=type(error).__name__,
            retry_in=self._backoff,
        )
        self._retry_later()

    def _on_closed(self, _connection, reason: BaseException) -> None:
        self._lost(f"connection closed ({type(reason).__name__})")
        if not self._stopping:
            log.warning("broker_connection_lost", error=type(reason).__name__)
        self._retry_later()

    def _on_channel_closed(self, _channel, reason: BaseException) -> None:
        self._lost(f"channel closed ({type(reason).__name__})")
        if self._stopping:
            return
        log.warning("broker_channel_closed", reason=str(reason)[:300])
        connection = self._connection
        if connection is not None and connection.is_open:
            connection.close()  # its close callback reconnects

    def _retry_later(self) -> None:
        if self._stopping:
            return
        self._loop.call_later(self._backoff, self._connect)
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    def _lost(self, why: str) -> None:
        self._channel = None
        in_flight, self._in_flight = self._in_flight, {}
        for entry in in_flight.values():
            entry.request.settle(why)

    def _on_blocked(self, *_args) -> None:
        self._blocked = True
        log.warning("broker_blocked_publishing")

    def _on_unblocked(self, *_args) -> None:
        self._blocked = False
        log.info("broker_unblocked_publishing")

    # -- publishing -------------------------------------------------------------------------
    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Returns once the broker confirmed every message; raises ``Unavailable`` otherwise."""
        if not messages:
            return
        if not self.ready:
            raise Unavailable("the broker is not reachable")
        request = _Request(self._loop.create_future(), len(messages))
        channel = self._channel
        try:
            for message in messages:
                channel.basic_publish(
                    self.topology.inbound,
                    message.routing_key,
                    message.body,
                    message.properties,
                    mandatory=True,
                )
                self._in_flight[self._next_seq] = _InFlight(request, message.event_id)
                self._next_seq += 1
        except AMQPError as exc:
            raise Unavailable(f"publishing failed ({type(exc).__name__})") from None
        try:
            problem = await asyncio.wait_for(asyncio.shield(request.done), self.confirm_timeout)
        except TimeoutError:
            raise Unavailable("the broker did not confirm in time") from None
        if problem is not None:
            raise Unavailable(f"the broker did not take every message: {problem}")
        self.published += len(messages)

    def _on_confirm(self, frame) -> None:
        method = frame.method
        problem = None if isinstance(method, Basic.Ack) else "nacked"
        if method.multiple:
            while self._in_flight:
                seq = next(iter(self._in_flight))
                if seq > method.delivery_tag:
                    break
                self._settle(self._in_flight.pop(seq), problem)
        else:
            entry = self._in_flight.pop(method.delivery_tag, None)
            if entry is not None:
                self._settle(entry, problem)

    @staticmethod
    def _settle(entry: _InFlight, problem: str | None) -> None:
        entry.request.settle("unroutable (no queue bound)" if entry.returned else problem)

    def _on_return(self, _channel, _method, properties, _body) -> None:
        # A return comes before the ack of the same publish, and publishes are answered in
        # order, so it is the oldest unconfirmed publish with this message id.
        for entry in self._in_flight.values():
            if entry.event_id == properties.message_id and not entry.returned:
                entry.returned = True
                return
