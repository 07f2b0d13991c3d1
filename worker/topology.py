"""Every exchange and queue, as values, and their idempotent declaration.

Contract names (``NS.inbound``, ``NS.worker``, ``NS.events``, ``NS.dead-letter``) are fixed;
the retry queues and the dead-letter exchange are ours. A failed message waits in the retry
queue for its delay (a per-queue TTL, so messages in one queue expire in order), then the
broker dead-letters it through the default exchange straight back to ``NS.worker``.

Broker-side safety: ``NS.worker`` has an explicit delivery limit, a backstop so that nothing
loops for ever. It is high on purpose: on RabbitMQ before 4.3 every return of a message counts
as a delivery, also the return of work a worker held but never started when it was killed,
so a low limit turns a restart storm into dead letters of work that never ran. A message
that really does kill the worker is stopped much earlier by the worker's own count of runs
(``worker.processing``). ``NS.dead-letter`` is pinned to a classic queue: a broker whose
default queue type is quorum would give it a delivery limit, and browsing it (every
``dlq list`` returns what it looked at) would count towards that limit until letters went.
``NS.worker`` and the retry queues are quorum queues with at-least-once dead-lettering
(into ``NS.dead-letter``, and back into ``NS.worker``), which needs RabbitMQ 3.10+, the
``stream_queue`` feature flag, ``x-dead-letter-strategy: at-least-once`` and
``x-overflow: reject-publish``: the broker then keeps a message until the target queue has
confirmed it, instead of dropping it if that queue cannot take it.

The dead-letter journal (``NS.dead-letter.journal``, ours) is a stream bound to the
dead-letter exchange, next to ``NS.dead-letter``: every dead letter, the worker's and the
broker's, lands in both. It is also bound to ``NS.events`` for ``dlq.replayed`` and
``dlq.discarded``, so the audit events of replays and discards (each naming a batch of
letters) land there too, after the letters they remove. Reading a stream takes nothing
away, so ``dlq list`` reads the journal (letters minus removals) and never holds the queue
(``worker.commands.journal``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pika
import structlog
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import ChannelClosedByBroker

log = structlog.get_logger()

PRECONDITION_FAILED = 406
DELIVERY_LIMIT = 500  # deliveries before the broker itself gives a message to a person
# Quorum queues whose dead-lettering is at-least-once: the broker keeps a message until the
# target queue has confirmed it, instead of dropping it if the target cannot take it.
SAFE_DEAD_LETTERING = {
    "x-queue-type": "quorum",
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}
# Long enough that a dead letter nobody looked at for weeks is still listed; a letter older
# than this (or past the size cap) leaves the journal but stays in the queue, and ``dlq list``
# says that the two disagree. Small segments let retention drop old letters in small steps.
JOURNAL_ARGUMENTS = {
    "x-queue-type": "stream",
    "x-max-age": "90D",
    "x-max-length-bytes": 2_000_000_000,
    "x-stream-max-segment-size-bytes": 50_000_000,
}
AUDIT_TYPES = ("dlq.replayed", "dlq.discarded")  # routing keys of the dlq audit events


@dataclass(frozen=True)
class Topology:
    namespace: str
    retry_delays: tuple[float, ...]
    partitions: int = 1  # 1: the worker consumes NS.worker itself (``worker.partitioning``)

    @property
    def inbound(self) -> str:
        return f"{self.namespace}.inbound"

    @property
    def events(self) -> str:
        return f"{self.namespace}.events"

    @property
    def work_queue(self) -> str:
        return f"{self.namespace}.worker"

    @property
    def dead_letter(self) -> str:
        return f"{self.namespace}.dead-letter"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.namespace}.dead-letter.exchange"

    @property
    def dead_letter_journal(self) -> str:
        return f"{self.namespace}.dead-letter.journal"

    @property
    def partition_exchange(self) -> str:
        return f"{self.namespace}.partitions"

    @property
    def router_lock(self) -> str:
        """An exclusive queue: whoever holds it routes (``worker.router``)."""
        return f"{self.namespace}.router"

    @property
    def reconcile_lock(self) -> str:
        """An exclusive queue: whoever holds it sweeps the CRMs (``worker.reconcile_schedule``)."""
        return f"{self.namespace}.reconcile"

    def partition_queue(self, partition: int) -> str:
        return f"{self.namespace}.partition.{partition}"

    def retry_queue(self, delay: float) -> str:
        return f"{self.namespace}.retry.{int(delay * 1000)}ms"

    def retry_queue_for(self, attempt: int) -> str | None:
        """The queue that holds a message after its ``attempt``-th failure, if any retry is left."""
        delay = self.retry_delay_for(attempt)
        return None if delay is None else self.retry_queue(delay)

    def retry_delay_for(self, attempt: int, hint: float | None = None) -> float | None:
        """The wait after the ``attempt``-th failure, if any retry is left: the ladder's rung,
        or, when the vendor's ``hint`` is longer, the shortest retry queue that lasts it (the
        longest queue when none does). Rungs are skipped, attempts are not: an attempt is a
        call to the vendor, and the ladder's length still bounds them."""
        if attempt > len(self.retry_delays):
            return None
        rung = self.retry_delays[attempt - 1]
        return rung if hint is None or hint <= rung else self.delay_lasting(hint)

    def delay_lasting(self, seconds: float) -> float:
        """The shortest retry delay of at least ``seconds``, else the longest there is."""
        return min((d for d in self.retry_delays if d >= seconds), default=self.longest_delay)

    @property
    def longest_delay(self) -> float | None:
        return max(self.retry_delays, default=None)

    def queues(self) -> list[str]:
        """Every queue ``declare`` makes (the locks are exclusive and go by themselves)."""
        retries = sorted({self.retry_queue(d) for d in self.retry_delays})
        partitions = [self.partition_queue(p) for p in range(self.partitions)]
        partitions = partitions if self.partitions > 1 else []
        return [self.work_queue, self.dead_letter, self.dead_letter_journal, *retries, *partitions]

    def exchanges(self) -> list[str]:
        partitioned = [self.partition_exchange] if self.partitions > 1 else []
        return [self.inbound, self.events, self.dead_letter_exchange, *partitioned]

    def delete(self, channel: BlockingChannel) -> None:
        """Removes the whole installation: for throw-away namespaces (the demo, tests)."""
        for queue in self.queues():
            channel.queue_delete(queue)
        for exchange in self.exchanges():
            channel.exchange_delete(exchange)
        # Gone already unless a sweeper still holds it; then the broker refuses (405) and
        # deleting the namespace under a running schedule fails loudly, as it should.
        channel.queue_delete(self.reconcile_lock)

    def declare(self, channel: BlockingChannel) -> None:
        """Declares everything; safe to run from every process, every time it connects."""
        channel.exchange_declare(self.inbound, "topic", durable=True)
        channel.exchange_declare(self.events, "topic", durable=True)
        channel.exchange_declare(self.dead_letter_exchange, "fanout", durable=True)
        channel.queue_declare(self.dead_letter, durable=True, arguments={"x-queue-type": "classic"})
        channel.queue_bind(self.dead_letter, self.dead_letter_exchange)
        self.declare_journal(channel)
        channel = _declare_work_queue(
            channel,
            self.work_queue,
            {
                **SAFE_DEAD_LETTERING,
                "x-delivery-limit": DELIVERY_LIMIT,
                "x-dead-letter-exchange": self.dead_letter_exchange,
            },
        )
        channel.queue_bind(self.work_queue, self.inbound, routing_key="#")
        if self.partitions > 1:
            self._declare_partitions(channel)
        for delay in sorted(set(self.retry_delays)):
            channel.queue_declare(
                self.retry_queue(delay),
                durable=True,
                arguments={
                    **SAFE_DEAD_LETTERING,
                    "x-message-ttl": int(delay * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": self.work_queue,
                },
            )

    def declare_journal(self, channel: BlockingChannel) -> None:
        """The journal and its bindings: new things only, so an older installation gains
        them on the next start of a worker or a dlq command, and nothing it has changes."""
        channel.queue_declare(self.dead_letter_journal, durable=True, arguments=JOURNAL_ARGUMENTS)
        channel.queue_bind(self.dead_letter_journal, self.dead_letter_exchange)
        for key in AUDIT_TYPES:
            channel.queue_bind(self.dead_letter_journal, self.events, routing_key=key)

    def _declare_partitions(self, channel: BlockingChannel) -> None:
        """The intake router (``worker.router``) moves NS.worker's messages here, each
        project's to one partition queue, which one worker at a time consumes: the broker's
        single active consumer. Dead-lettering as NS.worker's; a retry goes back through
        NS.worker and the router, so it comes back to the same partition."""
        channel.exchange_declare(self.partition_exchange, "direct", durable=True)
        for partition in range(self.partitions):
            queue = self.partition_queue(partition)
            channel.queue_declare(
                queue,
                durable=True,
                arguments={
                    **SAFE_DEAD_LETTERING,
                    "x-delivery-limit": DELIVERY_LIMIT,
                    "x-dead-letter-exchange": self.dead_letter_exchange,
                    "x-single-active-consumer": True,
                },
            )
            channel.queue_bind(queue, self.partition_exchange, routing_key=str(partition))


def _declare_work_queue(channel: BlockingChannel, name: str, arguments: dict) -> BlockingChannel:
    """Declares the work queue; returns the channel to go on with.

    A queue made by an earlier version with other arguments (a delivery limit of 20 before
    this one) cannot be declared with these: the broker closes the channel. It keeps working
    as it is, so we go on with it on a new channel and say how to bring it up to date."""
    try:
        channel.queue_declare(name, durable=True, arguments=arguments)
        return channel
    except ChannelClosedByBroker as exc:
        if exc.reply_code != PRECONDITION_FAILED:
            raise
        channel = channel.connection.channel()
        channel.queue_declare(name, passive=True)
        log.warning(
            "work_queue_arguments_differ",
            queue=name,
            broker_says=exc.reply_text,
            fix=f"rabbitmqctl set_policy --apply-to queues {name}-limit '^{name}$' "
            f"'{{\"delivery-limit\": {DELIVERY_LIMIT}}}'",
        )
        return channel


def connection_parameters(
    url: str, heartbeat: int | None = None, name: str = "timesheet-provisioner"
) -> pika.URLParameters:
    params = pika.URLParameters(url)
    if heartbeat is not None:
        params.heartbeat = heartbeat
    params.blocked_connection_timeout = 60
    # Shown by rabbitmqctl and the management UI: says which process and namespace it is.
    params.client_properties = {"connection_name": name}
    return params


def close_keeping_order(channel) -> None:
    """Closes ``channel`` without cancelling its subscriptions first, as pika would.

    On RabbitMQ 3.10 a quorum queue puts the deliveries still in flight to a cancelled
    subscription back *behind* the messages waiting, while a channel that closes with its
    subscription live has every message it held put back at the head, in order (measured:
    3,000 messages, 900 held, a cancel reorders about a hundred, a close none). Where order
    matters (the intake router, a partition), a subscription ends this way and no other."""
    channel._consumers.clear()  # pika sends basic.cancel for each one still registered
    channel.close()


def declare_all(url: str, topology: Topology) -> None:
    """A short-lived connection that declares the topology (start-up of every command)."""
    connection = pika.BlockingConnection(connection_parameters(url))
    try:
        topology.declare(connection.channel())
    finally:
        connection.close()
