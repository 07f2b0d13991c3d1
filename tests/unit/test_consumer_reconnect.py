"""A reconnect while a lane finishes a message of the old connection (issue 10, finding 5):
the old decision is dropped, and the new connection's decisions still reach its I/O loop."""

from __future__ import annotations

import threading

import pika

from schemas.errors import Unreadable
from worker.consumer import Consumer
from worker.messages import Decision, Delivery
from worker.subscription import Subscription
from worker.topology import Topology


class Loop:
    """The part of a pika I/O loop a lane touches: callbacks handed over from threads."""

    def __init__(self) -> None:
        self.handed: list = []

    def add_callback_threadsafe(self, callback) -> None:
        self.handed.append(callback)


class Connection:
    def __init__(self) -> None:
        self.ioloop = Loop()


class Processor:
    """Decides at once, except that the first message it is given runs while the consumer
    switches to a new connection: the window in which the old code lost its wake-up."""

    def __init__(self) -> None:
        self.consumer: Consumer | None = None
        self.new_connection = Connection()
        self.first = True

    def process(self, delivery, parsed) -> Decision:
        if self.first:
            self.first = False
            self.consumer._switch_to(self.new_connection)
        return Decision([], "processed")


class Inline:
    """The durability hand-off without its thread: decisions go on at once (no store)."""

    def __init__(self, consumer: Consumer) -> None:
        consumer._durable.close()
        self.hand_over = consumer._hand_over
        consumer._durable = self

    def submit(self, item) -> None:
        self.hand_over(item)

    def close(self) -> None:
        pass


def delivery() -> Delivery:
    return Delivery(b"{}", pika.BasicProperties(), "ex", "key")


def test_a_decision_for_a_lost_connection_is_dropped_and_the_next_one_wakes_the_new_loop():
    processor = Processor()
    consumer = Consumer(
        amqp_url="amqp://localhost/",
        topology=Topology("t", (1.0,)),
        processor=processor,
        concurrency=1,
    )
    consumer.lanes.close()
    Inline(consumer)
    processor.consumer = consumer
    old = Connection()
    consumer._switch_to(old)
    unreadable = Unreadable("not_json", "x")

    sub = Subscription(consumer.topology.work_queue, consumer.window)
    consumer._work(consumer.generation, sub, 1, delivery(), unreadable)  # reconnects meanwhile

    assert not consumer._decided and not consumer._wake_pending
    assert old.ioloop.handed == []  # a stopped loop would never have run it

    consumer._work(consumer.generation, sub, 1, delivery(), unreadable)  # the new connection's

    assert len(consumer._decided) == 1
    assert processor.new_connection.ioloop.handed == [consumer._drain_decided]


def test_lanes_finishing_together_wake_the_loop_once():
    consumer = Consumer(
        amqp_url="amqp://localhost/",
        topology=Topology("t", (1.0,)),
        processor=type("P", (), {"process": lambda self, d, p: Decision([], "processed")})(),
        concurrency=1,
    )
    consumer.lanes.close()
    Inline(consumer)
    connection = Connection()
    consumer._switch_to(connection)
    sub = Subscription(consumer.topology.work_queue, consumer.window)
    threads = [
        threading.Thread(
            target=consumer._work,
            args=(consumer.generation, sub, tag, delivery(), Unreadable("not_json", "x")),
        )
        for tag in range(1, 9)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(consumer._decided) == 8
    assert connection.ioloop.handed == [consumer._drain_decided]
