"""One subscription of the consumer: a channel, the queue it consumes, its window, and the
bookkeeping of its deliveries and publishes (delivery tags and publish sequence numbers are
numbered per channel).

The consumer has one on NS.worker, or one per partition it owns (``worker.partitioning``).
A partition's is **ordered**: a project's messages must leave it in the order they came.
On RabbitMQ 3.10 a quorum queue puts a requeued message (basic.nack or basic.reject with
requeue) behind the messages waiting, and the deliveries in flight to a cancelled
subscription too; only a channel that closes puts every message it held back at the head,
in order (``worker.topology.close_keeping_order``). So an ordered subscription is never
cancelled to resize its window, gives nothing back, and requeues by closing its channel.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from worker.window import Window

PROBE_EVERY = 5.0  # seconds between looks at the queue: is our subscription alive?


@dataclass(eq=False)
class Subscription:
    queue: str
    window: Window
    ordered: bool = False
    channel: object | None = None
    consumer_tag: str | None = None
    resubscribing: bool = False
    announced: bool = False
    # An ordered subscription handed to another worker: no new message is started, and the
    # channel closes once the started ones are acked (``Consumer._release``).
    releasing: bool = False
    reopen: bool = False  # closed on purpose, to be opened again (assigned back, or requeue)
    # Delivery tags a lane has begun, and tags given back unstarted: a lane and the I/O
    # loop claim a tag under the consumer's lock, so a tag is worked or given back, not both.
    started: set[int] = field(default_factory=set)
    given_back: set[int] = field(default_factory=set)
    next_seq: int = 1
    seq_to_tag: dict[int, int] = field(default_factory=dict)  # publish seq -> delivery tag
    outstanding: dict[int, int] = field(default_factory=dict)  # delivery tag -> confirms awaited
    failed_tags: set[int] = field(default_factory=set)
    copies: dict[str, int] = field(default_factory=dict)  # x-copy-id of a mandatory copy -> seq
    copy_ids: dict[int, str] = field(default_factory=dict)  # and back, to forget once confirmed
    unacked: deque[int] = field(default_factory=deque)  # delivery tags, in delivery order
    ackable: set[int] = field(default_factory=set)  # of those, the ones with outcomes confirmed
    sizes: dict[int, int] = field(default_factory=dict)  # delivery tag -> body size (window)
    deliveries: int = 0  # deliveries on this channel, for the probe
    next_probe: float = field(default_factory=lambda: time.monotonic() + PROBE_EVERY)

    @property
    def is_open(self) -> bool:
        return self.channel is not None and self.channel.is_open

    @property
    def settled(self) -> bool:
        """Nothing started is still waiting for its outcome or its ack."""
        return not self.started and not self.outstanding and not self.ackable
