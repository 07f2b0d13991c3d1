"""No exception escapes a pika callback (issue 10, finding 1): a failure in one closes the
connection cleanly; a decision that cannot be written is handed to the broker to
dead-letter."""

from __future__ import annotations

import pika

from tests.unit.test_consumer_reconnect import Connection
from worker.consumer import Consumer
from worker.messages import Decision, Publish
from worker.subscription import Subscription
from worker.topology import Topology


class Channel:
    is_open = True

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


class ClosingConnection(Connection):
    is_open = True
    is_closed = False

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def close(self) -> None:
        self.closed = True


def consumer() -> tuple[Consumer, Subscription, Channel, ClosingConnection]:
    built = Consumer(
        amqp_url="amqp://localhost/",
        topology=Topology("t", (1.0,)),
        processor=None,
        concurrency=1,
    )
    built.lanes.close()
    connection = ClosingConnection()
    built._switch_to(connection)
    channel = Channel()
    sub = Subscription(built.topology.work_queue, built.window, channel=channel)
    built.subscriptions[sub.queue] = sub
    return built, sub, channel, connection


def test_a_callback_that_fails_closes_the_connection_instead_of_raising_into_pika():
    built, sub, _, connection = consumer()

    class Frame:
        method = pika.spec.Basic.Ack(delivery_tag=7)  # a confirm we never asked for

    sub.seq_to_tag[7] = 99  # ...for a delivery whose bookkeeping is gone: KeyError inside

    assert built._on_confirm(sub, Frame()) is None
    assert connection.closed


def test_a_decision_marked_reject_is_rejected_without_requeue():
    built, sub, channel, _ = consumer()
    sub.unacked.append(5)
    sub.sizes[5] = 10
    sub.window.delivered(10)

    built._publish_then_ack(built.generation, sub, 5, Decision([], "rejected", reject=True))

    assert ("basic_reject", (5,), {"requeue": False}) in channel.calls
    assert not sub.unacked and sub.window.held == 0


def test_a_copy_whose_headers_pika_cannot_write_is_rejected_not_published():
    built, sub, channel, _ = consumer()
    sub.unacked.append(5)
    unwritable = pika.BasicProperties(headers={"x-odd": {1, 2}})  # a set: no AMQP type
    copy = Publish("", "t.dead-letter", b"{}", unwritable, mandatory=True)

    built._publish_then_ack(built.generation, sub, 5, Decision([copy], "dead_lettered"))

    assert [c[0] for c in channel.calls] == ["basic_reject"]
