"""The broker: it answers, and the topology there is the one this release declares.

What ``Topology.declare`` would declare is recorded (``_Recorder``) rather than restated, so
the check cannot drift from it. Each exchange and queue is first looked up passively: one
that is missing is a warn (the worker declares it at start). One that exists is declared
again with the arguments it should have, which changes nothing on a match; a mismatch is
refused by the broker (406) and named. A different delivery limit only is a warn: an older
release made it so, the worker runs with it, and a policy brings it up to date.
"""

from __future__ import annotations

import pika
from pika.exceptions import AMQPError, ChannelClosedByBroker

from worker.check.lines import Line, fail, ok, warn
from worker.commands.output import redacted
from worker.settings import Settings
from worker.topology import DELIVERY_LIMIT, PRECONDITION_FAILED, Topology, connection_parameters

NOT_FOUND, ACCESS_REFUSED = 404, 403
AREA = "broker"


class _Recorder:
    """Stands in for a channel: keeps what ``Topology.declare`` asks for, in order."""

    def __init__(self) -> None:
        self.exchanges: list[tuple[str, str]] = []
        self.queues: list[tuple[str, dict]] = []

    def exchange_declare(self, exchange: str, exchange_type: str, **_: object) -> None:
        self.exchanges.append((exchange, exchange_type))

    def queue_declare(self, queue: str, durable: bool = False, arguments=None, **_: object):
        self.queues.append((queue, dict(arguments or {})))

    def queue_bind(self, *_: object, **__: object) -> None:
        pass


def declared(topology: Topology) -> _Recorder:
    recorder = _Recorder()
    topology.declare(recorder)  # type: ignore[arg-type]
    return recorder


def check_broker(settings: Settings, topology: Topology) -> list[Line]:
    try:
        connection = pika.BlockingConnection(
            connection_parameters(settings.amqp_url, name="provisioner check")
        )
    except AMQPError as exc:
        return [
            fail(
                AREA,
                f"cannot connect: {redacted(exc, settings.amqp_url)}",
                "set AMQP_URL to a broker that answers, with this user's password and vhost",
            )
        ]
    try:
        lines = [ok(AREA, f"connected ({_where(settings.amqp_url)})")]
        wanted = declared(topology)
        for name, kind in wanted.exchanges:
            lines.append(_exchange(connection, name, kind))
        for name, arguments in wanted.queues:
            lines.append(_queue(connection, name, arguments))
        return lines
    finally:
        connection.close()


def _where(url: str) -> str:
    params = pika.URLParameters(url)
    return f"{params.host}:{params.port} vhost {params.virtual_host}"


def _exchange(connection, name: str, kind: str) -> Line:
    def again(channel):
        channel.exchange_declare(name, kind, durable=True)

    return _look(
        connection,
        "exchange",
        name,
        lambda ch: ch.exchange_declare(name, passive=True),
        again,
        f"a durable {kind} exchange",
    )


def _queue(connection, name: str, arguments: dict) -> Line:
    def again(channel):
        channel.queue_declare(name, durable=True, arguments=arguments)

    kind = arguments.get("x-queue-type", "classic")
    return _look(
        connection,
        "queue",
        name,
        lambda ch: ch.queue_declare(name, passive=True),
        again,
        f"a durable {kind} queue",
    )


def _look(connection, what: str, name: str, passive, again, shape: str) -> Line:
    try:
        passive(connection.channel())
    except ChannelClosedByBroker as exc:
        if exc.reply_code == NOT_FOUND:
            return warn(AREA, f"{what} {name} is missing", "it will be declared at start")
        return _refused(what, name, exc)
    try:
        again(connection.channel())
    except ChannelClosedByBroker as exc:
        if exc.reply_code != PRECONDITION_FAILED:
            return _refused(what, name, exc)
        if "x-delivery-limit" in exc.reply_text:
            return warn(
                AREA,
                f"{what} {name} has another delivery limit ({exc.reply_text})",
                f"rabbitmqctl set_policy --apply-to queues {name}-limit '^{name}$' "
                f"'{{\"delivery-limit\": {DELIVERY_LIMIT}}}'",
            )
        return fail(
            AREA,
            f"{what} {name} is not {shape}: {exc.reply_text}",
            f"delete {name} (move its messages first) so the worker declares it anew, or set "
            "PROVISIONER_NAMESPACE to one of its own",
        )
    return ok(AREA, f"{what} {name}: {shape}")


def _refused(what: str, name: str, exc: ChannelClosedByBroker) -> Line:
    if exc.reply_code == ACCESS_REFUSED:
        fix = "grant the AMQP_URL user configure/write/read on the namespace (set_permissions)"
    else:
        fix = "see the broker's log"
    return fail(AREA, f"{what} {name}: {exc.reply_code} {exc.reply_text}", fix)
