"""Taking dead letters out of NS.dead-letter with pipelined confirms: replay and discard.

One engine for both. It consumes the queue (up to the count it held at the start, so letters
that arrive meanwhile wait for the next run), asks ``plan`` what each letter needs published
(a replay: its copy to NS.inbound; a discard: nothing; ``None``: the letter stays), and
publishes with ``mandatory`` on a channel in confirm mode. Up to ``window`` publishes await
their confirm at once. A letter whose publishes are all confirmed joins the current audit
batch; ``audit`` turns a batch into ONE event (``dlq.replayed`` / ``dlq.discarded``), published
when the batch holds ``audit_batch`` letters or when nothing else is in flight or waiting, and
only once the broker has confirmed that event are the batch's letters acked (one multiple ack
where no held or failed letter lies below them). Waiting for each confirm in turn made a
replay about 600 letters a second; the window lets the quorum queue commit thousands in one
go, and the batch makes the audit cost one publish per few hundred letters instead of one
per letter.

The broker saying no stops the run cleanly:

| the broker                                  | the run                                          |
|---------------------------------------------|--------------------------------------------------|
| confirms a letter's publishes, then the     | acks the letter (and reports it done)            |
| audit event of its batch                    |                                                  |
| nacks a letter's publish, or returns it     | that letter stays; nothing new is published (no  |
| unroutable                                  | further audit event either, so letters confirmed |
|                                             | but not yet audited stay too); the confirms in   |
|                                             | flight are awaited; the rest stay                |
| nacks or returns an audit event             | none of its letters is acked: all stay dead-     |
|                                             | lettered (a replay's copies are already in       |
|                                             | NS.inbound: harmless, the worker dedupes by      |
|                                             | (source, id)); the run stops as above            |
| the connection dies (or we are killed)      | every letter not yet acked goes back to the      |
|                                             | queue: nothing is lost, some may be in both;     |
|                                             | every letter acked is named in a confirmed event |

A letter in both places after a crash is harmless: the worker dedupes by (source, id).
Letters ``plan`` did not choose are held until the end and return in place when the
connection closes.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pika
from pika.adapters.select_connection import SelectConnection
from pika.spec import Basic

from worker.commands import dead_letters as dl
from worker.commands.dead_letters import DeadLetter
from worker.messages import Publish

WINDOW = 2000  # publishes awaiting their confirm at once (bench.replay: 2000 beat 1000-4000)
AUDIT_BATCH = 500  # letters named in one audit event (bench.replay: see the README)
PREFETCH_CAP = 20_000  # letters held at once (the ones not chosen stay held until the end)
IDLE = 2.0  # seconds without a delivery after which the queue is taken as read

Done = list[tuple[DeadLetter, Any]]  # letters with plan's info
Plan = Callable[[DeadLetter], tuple[list[Publish], Any] | None]
Audit = Callable[[Done], tuple[Publish, Any]]  # a batch's event, and info for on_done


@dataclass
class Outcome:
    done: Done = field(default_factory=list)  # acked, with plan's info
    stopped: str | None = None  # why the run ended early: the broker refused something
    left: int = 0  # chosen letters that stay dead-lettered because of the stop
    expected: int = 0  # letters in the queue at the start
    read: int = 0  # letters this run saw
    error: Exception | None = None  # the connection or channel failed


@dataclass
class _Pending:
    """A letter and the publishes it needs (its copy; none for a discard)."""

    letter: DeadLetter
    info: Any
    publishes: list[Publish]
    remaining: int = 0  # publishes sent and not yet confirmed
    failed: bool = False


@dataclass
class _Batch:
    """Letters whose publishes are confirmed, named by one audit event in flight."""

    members: list[_Pending]
    info: Any = None
    remaining: int = 1  # the audit event
    failed: bool = False


class _Connection(SelectConnection):
    """pika hands the socket a publish's method, header and body frames one by one: three
    ``send`` calls a letter. Joined, they are one, which a replay of thousands notices."""

    def _output_marshaled_frames(self, marshaled_frames) -> None:
        super()._output_marshaled_frames([b"".join(marshaled_frames)])


class Mover:
    """``Mover(params, queue, plan, audit, on_done).run()`` -> ``Outcome``; one run per
    instance. ``on_done(batch, info)`` hears of each batch once it is acked, with the info
    ``audit`` gave; without ``audit`` a letter is acked once its own publishes are
    confirmed (and ``on_done`` hears of it alone)."""

    def __init__(
        self,
        params: pika.ConnectionParameters,
        queue: str,
        plan: Plan,
        audit: Audit | None = None,
        on_done: Callable[[Done, Any], None] = lambda batch, info: None,
        *,
        window: int = WINDOW,
        audit_batch: int | None = None,
    ):
        self.params, self.queue, self.plan, self.on_done = params, queue, plan, on_done
        self.audit = audit
        self.window = window
        self.audit_batch = audit_batch or AUDIT_BATCH
        self.outcome = Outcome()
        self._backlog: deque[_Pending] = deque()
        self._publishes: dict[int, tuple[_Pending | _Batch, tuple]] = {}  # seq -> (what, key)
        self._returned: set[tuple] = set()
        self._seq = 0
        self._letters_in_flight = 0  # letters with a publish not yet confirmed
        self._batch: list[_Pending] = []  # confirmed, not yet in an audit event
        self._flush_soon = False
        self._consumer: str | None = None
        self._reading = True
        self._closing = False
        self._last_delivery = 0.0
        # Acks: ``_floor`` and below are acked (or due); ``_finished`` are done above a gap.
        self._floor = 0
        self._finished: set[int] = set()
        self._ack_due = False
        self._single_acks = False

    def run(self) -> Outcome:
        self._connection = _Connection(
            self.params,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_failed,
            on_close_callback=self._on_closed,
        )
        # Every letter's objects live until the run ends (``Outcome.done``), so the cyclic
        # collector rescans an ever larger heap: a third of a 10,000-letter replay's CPU
        # (bench.replay). Reference counting still frees all that is not a cycle, and the
        # collector is back on as soon as the run ends; a run is bounded by the queue.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._connection.ioloop.start()
        finally:
            if collecting:
                gc.enable()
        return self.outcome

    # -- set-up --------------------------------------------------------------------------------
    def _on_open(self, connection) -> None:
        connection.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(self._on_confirm, callback=self._on_confirm_mode)

    def _on_confirm_mode(self, _frame) -> None:
        self._channel.queue_declare(self.queue, passive=True, callback=self._on_count)

    def _on_count(self, frame) -> None:
        self.outcome.expected = frame.method.message_count
        if not self.outcome.expected:
            self._close()
            return
        prefetch = min(self.outcome.expected, PREFETCH_CAP)
        self._channel.basic_qos(prefetch_count=prefetch, callback=self._on_qos)

    def _on_qos(self, _frame) -> None:
        self._last_delivery = self._now()
        self._consumer = self._channel.basic_consume(self.queue, self._on_delivery)
        self._connection.ioloop.call_later(IDLE, self._check_idle)

    # -- the flow ------------------------------------------------------------------------------
    def _on_delivery(self, _channel, method, properties, body) -> None:
        if not self._reading:
            return  # past the count, or stopping: held, and returned when we close
        self._last_delivery = self._now()
        self.outcome.read += 1
        if self.outcome.read >= self.outcome.expected:
            self._stop_reading()
        letter = dl.read(method.delivery_tag, properties, body, source=False)
        planned = self.plan(letter)
        if planned is None:
            self._ack_singly()  # a held letter: a multiple ack past it would take it too
        elif not planned[0]:
            self._confirmed(_Pending(letter, planned[1], []))  # a discard: nothing to await
        else:
            self._backlog.append(_Pending(letter, planned[1], planned[0]))
            self._pump()
        self._after()

    def _pump(self) -> None:
        while self._backlog and len(self._publishes) < self.window and not self.outcome.stopped:
            pending = self._backlog.popleft()
            pending.remaining = len(pending.publishes)
            self._letters_in_flight += 1
            for publish in pending.publishes:
                self._publish(publish, pending)

    def _publish(self, publish: Publish, what: _Pending | _Batch) -> None:
        self._seq += 1
        key = (publish.exchange, publish.routing_key, publish.properties.message_id)
        self._publishes[self._seq] = (what, key)
        self._channel.basic_publish(
            publish.exchange, publish.routing_key, publish.body, publish.properties, mandatory=True
        )

    def _on_return(self, _channel, method, properties, _body) -> None:
        # RabbitMQ sends basic.return before the basic.ack of the same publish.
        self._returned.add((method.exchange, method.routing_key, properties.message_id))
        where = f"{method.exchange or 'the default exchange'} key {method.routing_key!r}"
        self._stop(f"the broker could not route a publish to {where} ({method.reply_text})")

    def _on_confirm(self, frame) -> None:
        method = frame.method
        confirmed = isinstance(method, Basic.Ack)
        if not confirmed:
            self._stop("the broker refused a publish (basic.nack): a queue could not take it")
        for seq in self._settled(method.delivery_tag, method.multiple):
            what, key = self._publishes.pop(seq)
            if not confirmed or key in self._returned:
                self._returned.discard(key)
                what.failed = True
            what.remaining -= 1
            if what.remaining:
                continue
            if isinstance(what, _Batch):
                self._audited(what)
            else:
                self._letters_in_flight -= 1
                self._confirmed(what)
        self._pump()
        self._after()

    def _settled(self, tag: int, multiple: bool) -> list[int]:
        if not multiple:
            return [tag] if tag in self._publishes else []
        # Sequence numbers were inserted in order, so the first key is the lowest in flight.
        settled = []
        for seq in self._publishes:
            if seq > tag:
                break
            settled.append(seq)
        return settled

    def _confirmed(self, pending: _Pending) -> None:
        """Every publish of the letter is confirmed (or refused): it joins the audit batch."""
        if pending.failed or self.outcome.stopped:
            self._stays(1)  # refused, or confirmed after a stop: no new audit event goes out
        elif self.audit is None:
            self._acked([pending], None)
        else:
            self._batch.append(pending)
            if len(self._batch) >= self.audit_batch:
                self._flush()

    def _flush(self) -> None:
        """The batch's audit event goes out; its letters wait for its confirm."""
        batch, self._batch = _Batch(self._batch), []
        publish, batch.info = self.audit([(p.letter, p.info) for p in batch.members])
        self._publish(publish, batch)

    def _audited(self, batch: _Batch) -> None:
        if batch.failed:
            self._stays(len(batch.members))  # no record, no ack: they all stay
        else:
            self._acked(batch.members, batch.info)

    def _acked(self, members: list[_Pending], info: Any) -> None:
        done = [(p.letter, p.info) for p in members]
        self.outcome.done += done
        for pending in members:
            tag = pending.letter.tag
            if self._single_acks:
                self._channel.basic_ack(tag)
                continue
            # While every letter so far is chosen and none failed, one multiple ack covers
            # the letters finished without a gap (batches can finish them out of order).
            self._finished.add(tag)
            while self._floor + 1 in self._finished:
                self._floor += 1
                self._finished.remove(self._floor)
                self._ack_due = True
        self._ack_due_letters()
        self.on_done(done, info)

    def _stays(self, letters: int) -> None:
        self.outcome.left += letters
        self._ack_singly()  # a multiple ack past them would take them too

    def _ack_due_letters(self) -> None:
        if self._ack_due:
            self._ack_due = False
            self._channel.basic_ack(self._floor, multiple=True)

    def _ack_singly(self) -> None:
        """From now on one ack a letter; the finished letters still waiting are acked now."""
        if not self._single_acks:
            self._ack_due_letters()
            self._single_acks = True
            for tag in sorted(self._finished):
                self._channel.basic_ack(tag)
            self._finished.clear()

    def _after(self) -> None:
        """After each delivery or confirm: a batch with nothing left to wait for goes out on
        the next turn of the loop (the deliveries already read join it first), and a run with
        nothing left to do ends."""
        if self._batch and self._idle() and not self._flush_soon:
            self._flush_soon = True
            self._connection.ioloop.call_later(0, self._flush_if_idle)
        self._maybe_finish()

    def _flush_if_idle(self) -> None:
        self._flush_soon = False
        if self._batch and self._idle() and not self.outcome.stopped:
            self._flush()
        self._maybe_finish()

    def _idle(self) -> bool:
        return not self._letters_in_flight and not self._backlog

    # -- the end -------------------------------------------------------------------------------
    def _stop(self, reason: str) -> None:
        if self.outcome.stopped is None:
            self.outcome.stopped = reason
        self._stop_reading()
        self.outcome.left += len(self._backlog) + len(self._batch)
        self._backlog.clear()
        self._batch.clear()

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            if self._consumer is not None and self._channel.is_open:
                self._channel.basic_cancel(self._consumer)

    def _check_idle(self) -> None:
        # Fewer letters than the count came: another dlq command took some, or more than
        # PREFETCH_CAP letters not chosen fill the prefetch. The rest wait for another run.
        if self._closing:
            return
        waiting = self._backlog or self._publishes or self._batch  # a busy broker is not empty
        if self._reading and not waiting and self._now() - self._last_delivery > IDLE:
            self._stop_reading()
        self._maybe_finish()
        if not self._closing:
            self._connection.ioloop.call_later(IDLE / 4, self._check_idle)

    def _maybe_finish(self) -> None:
        if self._reading or self._backlog:
            return
        if self._batch and not self._letters_in_flight:
            self._flush()  # the last batch
        if not self._publishes and not self._batch:
            self._close()

    def _close(self) -> None:
        if not self._closing:
            self._closing = True
            if self._connection.is_open:
                self._connection.close()  # letters not acked go back to the queue, in place

    def _on_channel_closed(self, _channel, reason) -> None:
        if not self._closing:
            self.outcome.error = reason
            self._stop(f"the channel closed: {reason}")
            in_flight = {id(what): what for what, _ in self._publishes.values()}.values()
            self.outcome.left += sum(_letters(what) for what in in_flight)
            self._publishes.clear()
            self._close()

    def _on_failed(self, _connection, error) -> None:
        self.outcome.error = error
        self._connection.ioloop.stop()

    def _on_closed(self, _connection, reason) -> None:
        if not self._closing and self.outcome.error is None:
            self.outcome.error = reason
        self._connection.ioloop.stop()

    @staticmethod
    def _now() -> float:
        return time.monotonic()


def _letters(what: _Pending | _Batch) -> int:
    return len(what.members) if isinstance(what, _Batch) else 1
