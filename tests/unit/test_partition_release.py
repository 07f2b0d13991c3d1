"""A partition handed to another worker is let go in order: nothing new is started, what
was started is finished and acked, and only then does its channel close (without a cancel,
which on RabbitMQ 3.10 would send deliveries in flight behind the queue)."""

from __future__ import annotations

import pika

from schemas.errors import Unreadable
from tests.unit.test_consumer_reconnect import Connection, Inline
from worker.consumer import Consumer
from worker.messages import Decision, Delivery
from worker.subscription import Subscription
from worker.topology import Topology


class Channel:
    is_open = True

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self._consumers = {"ctag": object()}  # pika's registry, which close() would cancel

    def close(self) -> None:
        self.calls.append(("close", dict(self._consumers)))
        self.is_open = False

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


class Recorder:
    def __init__(self) -> None:
        self.worked: list[int] = []

    def process(self, delivery, parsed) -> Decision:
        self.worked.append(len(self.worked))
        return Decision([], "processed")


def partitioned_consumer() -> tuple[Consumer, Subscription, Channel, Recorder]:
    recorder = Recorder()
    consumer = Consumer(
        amqp_url="amqp://localhost/",
        topology=Topology("t", (1.0,), partitions=4),
        processor=recorder,
        concurrency=1,
    )
    consumer.lanes.close()
    Inline(consumer)
    consumer._switch_to(Connection())
    channel = Channel()
    sub = Subscription("t.partition.2", consumer.window, ordered=True, channel=channel)
    consumer.subscriptions[sub.queue] = sub
    return consumer, sub, channel, recorder


def deliver(sub: Subscription, tag: int) -> None:
    sub.unacked.append(tag)
    sub.sizes[tag] = 2
    sub.window.delivered(2)


def work(consumer: Consumer, sub: Subscription, tag: int) -> None:
    delivery = Delivery(b"{}", pika.BasicProperties(), "t.partitions", "2")
    consumer._work(consumer.generation, sub, tag, delivery, Unreadable("not_json", "x"))


def test_a_released_partition_starts_nothing_new_and_closes_once_its_work_is_acked():
    consumer, sub, channel, recorder = partitioned_consumer()
    deliver(sub, 1)
    deliver(sub, 2)
    work(consumer, sub, 1)  # started (its decision waits for the I/O loop)

    consumer._release(sub)
    work(consumer, sub, 2)  # a lane reaches the next one after the release

    assert recorder.worked == [0]  # the second was not started
    assert not any(call[0] == "close" for call in channel.calls)  # one is still unacked
    consumer._drain_decided()  # the I/O loop acks the first, then lets go
    assert ("basic_ack", (1,), {"multiple": True}) in channel.calls
    assert channel.calls[-1] == ("close", {})  # closed with no subscription left to cancel
    assert not any(call[0] == "basic_cancel" for call in channel.calls)


def test_a_partition_never_resizes_nor_gives_work_back():
    consumer, sub, channel, _ = partitioned_consumer()
    sub.consumer_tag = "ctag"
    sub.window.granted = 1
    sub.window.service_time = 1e-6  # the window would grow a thousandfold
    for tag in range(1, 200):
        deliver(sub, tag)
    consumer._connection.is_open = True
    consumer._connection.ioloop.call_later = lambda *_: None

    consumer._tick()

    assert not [c for c in channel.calls if c[0] in ("basic_cancel", "basic_nack")]
