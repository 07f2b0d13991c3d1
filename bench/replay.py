"""``dlq replay --all`` against a raw pika loop that moves the same messages.

``python -m bench.replay [--letters N] [--rounds R] [--window W] [--audit-batch B]``

Each round gets a fresh namespace (deleted afterwards, also on failure) and fills its
``NS.dead-letter`` with N dead letters as the worker writes them (through the dead-letter
exchange, so the journal gets them too): ``deal.closed_won`` and
``timesheet.provision_requested`` bodies from ``tests.builders`` (about 1 KB), our failure
headers (code, message, attempts, first/last failure, a history of three lines, copy id,
original exchange and key). Then, in turns (the order alternates between rounds):

- ours: ``provisioner dlq list --json`` (timed apart: it reads the journal, holding
  nothing), then ``provisioner dlq replay --all --json``, both run in this process
  (``worker.commands.main``, stdout and stderr to /dev/null). A replay is timed from the
  call to its return: connecting, the count, the topology declare, every letter's copy to
  NS.inbound, the ``dlq.replayed`` audit events on NS.events (one confirmed publish for
  each batch of up to B letters), every ack, every output line.
- raw: the baseline a person would write with pika alone: a ``SelectConnection``, a
  consumer on NS.dead-letter with prefetch W, each message published unchanged to
  NS.inbound in confirm mode with W publishes in flight, acked once its confirm came
  (``multiple`` confirms honoured). One publish a message and no audit, no header rewrite.

Both move all N into ``NS.worker`` (a quorum queue, as in production); the queue is checked
and purged between the two. msg/s = N / seconds. Goals: ours >= 0.8x raw (median of the
rounds' ratios) and >= 5,000 msg/s (median). The exit status is 0 whenever it ran.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pika
from pika.adapters.select_connection import SelectConnection
from pika.spec import Basic

from bench.throughput import delete_namespace, queue_depth
from tests import builders as b
from worker.commands import main as cli
from worker.commands import moving
from worker.messages import (
    ATTEMPTS,
    COPY_ID,
    ERROR_CODE,
    ERROR_MESSAGE,
    FAILURES,
    FIRST_FAILED_AT,
    LAST_FAILED_AT,
    ORIGINAL_EXCHANGE,
    ORIGINAL_ROUTING_KEY,
)
from worker.topology import Topology, connection_parameters

RETRY_DELAYS = (10.0, 60.0)
GOAL_RATIO = 0.8
GOAL_RATE = 5000.0
CODES = ("vendor_unavailable", "vendor_auth", "client_ambiguous", "vendor_rejected")


def dead_letters(n: int) -> list[tuple[bytes, pika.BasicProperties]]:
    """N dead letters with realistic bodies and the worker's failure headers."""
    letters = []
    for i in range(n):
        project = b.project(b.offering(), b.offering())
        event = (
            b.closed_won(project)
            if i % 2
            else b.provision_requested(project, project["offerings"][0]["id"], tool="harvest")
        )
        code = CODES[i % len(CODES)]
        first = datetime.now(UTC) - timedelta(hours=2, seconds=i)
        times = [(first + timedelta(minutes=m)).isoformat() for m in (0, 10, 70)]
        headers = {
            ERROR_CODE: code,
            ERROR_MESSAGE: f"{code}: the tool answered 503 three times",
            ATTEMPTS: 3,
            FIRST_FAILED_AT: times[0],
            LAST_FAILED_AT: times[-1],
            ORIGINAL_EXCHANGE: "ns.inbound",
            ORIGINAL_ROUTING_KEY: event["type"],
            FAILURES: [f"{t} attempt {a}: {code}: 503" for a, t in enumerate(times, 1)],
            COPY_ID: uuid.uuid4().hex,
        }
        properties = pika.BasicProperties(
            content_type="application/cloudevents+json",
            message_id=event["id"],
            type=event["type"],
            delivery_mode=2,
            headers=headers,
        )
        letters.append((json.dumps(event).encode(), properties))
    return letters


def fill(url: str, topology: Topology, letters) -> None:
    """Publishes the letters through the dead-letter exchange; waits until all are queued."""
    connection = pika.BlockingConnection(connection_parameters(url))
    channel = connection.channel()
    for body, properties in letters:
        channel.basic_publish(topology.dead_letter_exchange, topology.dead_letter, body, properties)
    deadline = time.monotonic() + 120
    while queue_depth(channel, topology.dead_letter) < len(letters):
        if time.monotonic() > deadline:
            raise RuntimeError("the dead letters never all arrived")
        connection.process_data_events(time_limit=0.05)
    connection.close()


def ours(url: str, topology: Topology, *command: str) -> float:
    """Seconds ``provisioner dlq COMMAND`` (default: ``replay --all --json``) takes, here."""
    command = command or ("replay", "--all", "--json")
    env = {
        "AMQP_URL": url,
        "PROVISIONER_NAMESPACE": topology.namespace,
        "PROVISIONER_RETRY_DELAYS": ",".join(str(d) for d in RETRY_DELAYS),
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with (
            open(os.devnull, "w") as null,
            contextlib.redirect_stdout(null),
            contextlib.redirect_stderr(null),
        ):
            started = time.perf_counter()
            status = cli.main(["dlq", *command])
            elapsed = time.perf_counter() - started
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if status != 0:
        raise RuntimeError(f"dlq {' '.join(command)} exited {status}")
    return elapsed


class ReadyWatch:
    """The lowest ready count of ``queue`` while the block runs, sampled from a thread on a
    connection of its own: a list that held letters unacked would lower it."""

    def __init__(self, url: str, queue: str):
        self.url, self.queue = url, queue
        self.lowest = sys.maxsize
        self._done = threading.Event()

    def __enter__(self) -> ReadyWatch:
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        connection = pika.BlockingConnection(connection_parameters(self.url))
        channel = connection.channel()
        while not self._done.is_set():
            self.lowest = min(self.lowest, queue_depth(channel, self.queue))
        self.lowest = min(self.lowest, queue_depth(channel, self.queue))
        connection.close()


class RawLoop:
    """Consume, publish with pipelined confirms, ack after the confirm: pika and nothing else."""

    def __init__(self, url: str, source: str, exchange: str, count: int, window: int):
        self.params = connection_parameters(url)
        self.source, self.exchange, self.count, self.window = source, exchange, count, window
        self.seq, self.acked = 0, 0
        self.in_flight: dict[int, int] = {}  # publish seq -> delivery tag

    def run(self) -> float:
        self.connection = SelectConnection(
            self.params,
            on_open_callback=self._on_open,
            on_close_callback=lambda *_: self.connection.ioloop.stop(),
        )
        self.started = time.perf_counter()
        self.connection.ioloop.start()
        return self.elapsed

    def _on_open(self, connection) -> None:
        connection.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel) -> None:
        self.channel = channel
        channel.confirm_delivery(self._on_confirm, callback=lambda _: self._qos())

    def _qos(self) -> None:
        self.channel.basic_qos(
            prefetch_count=self.window,
            callback=lambda _: self.channel.basic_consume(self.source, self._on_message),
        )

    def _on_message(self, channel, method, properties, body) -> None:
        self.seq += 1
        self.in_flight[self.seq] = method.delivery_tag
        channel.basic_publish(self.exchange, properties.type, body, properties)

    def _on_confirm(self, frame) -> None:
        method = frame.method
        if not isinstance(method, Basic.Ack):
            raise RuntimeError("the broker nacked a publish")
        settled = (
            [s for s in self.in_flight if s <= method.delivery_tag]
            if method.multiple
            else [method.delivery_tag]
        )
        for seq in settled:
            self.channel.basic_ack(self.in_flight.pop(seq))
            self.acked += 1
        if self.acked >= self.count and self.connection.is_open:
            self.elapsed = time.perf_counter() - self.started
            self.connection.close()  # the acks go out first; then the ioloop stops


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__.split("\n")[0])
    ap.add_argument("--letters", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window", type=int, default=2000, help="the raw loop's prefetch/window")
    ap.add_argument(
        "--audit-batch",
        type=int,
        default=moving.AUDIT_BATCH,
        help="letters named in one of our audit events",
    )
    args = ap.parse_args(argv)
    moving.AUDIT_BATCH = args.audit_batch  # what ``dlq replay`` in this process then uses
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    letters = dead_letters(args.letters)
    print(
        f"bench.replay: {args.letters} dead letters a run, {args.rounds} rounds, "
        f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at the start)"
    )
    rates: dict[str, list[float]] = {"ours": [], "raw": []}
    ratios, lists = [], []
    for round_ in range(1, args.rounds + 1):
        topology = Topology(f"benchreplay{uuid.uuid4().hex[:8]}", RETRY_DELAYS)
        try:
            connection = pika.BlockingConnection(connection_parameters(url))
            channel = connection.channel()
            topology.declare(channel)
            got = {}
            order = ("ours", "raw") if round_ % 2 else ("raw", "ours")
            for who in order:
                fill(url, topology, letters)
                if who == "ours":
                    with ReadyWatch(url, topology.dead_letter) as watch:
                        got["list"] = ours(url, topology, "list", "--json")
                    got["held"] = len(letters) - watch.lowest
                    seconds = ours(url, topology)
                else:
                    loop = RawLoop(
                        url, topology.dead_letter, topology.inbound, len(letters), args.window
                    )
                    seconds = loop.run()
                moved = queue_depth(channel, topology.work_queue)
                left = queue_depth(channel, topology.dead_letter)
                if (moved, left) != (len(letters), 0):
                    raise RuntimeError(f"{who}: moved {moved}, left {left}, not {len(letters)}, 0")
                channel.queue_purge(topology.work_queue)
                got[who] = len(letters) / seconds
                rates[who].append(got[who])
            ratios.append(got["ours"] / got["raw"])
            lists.append(got["list"])
            print(
                f"round {round_}: ours {got['ours']:7.0f} msg/s   raw {got['raw']:7.0f} msg/s   "
                f"ratio {ratios[-1]:.2f}   (dlq list --json of the {len(letters)}: "
                f"{got['list']:.2f} s, at most {got['held']} held)"
            )
            connection.close()
        finally:
            delete_namespace(url, topology)
    ours_median, raw_median = statistics.median(rates["ours"]), statistics.median(rates["raw"])
    ratio = statistics.median(ratios)
    ours_publishes = ours_median * (1 + 1 / args.audit_batch)
    print(
        f"publishes: ours {ours_publishes:.0f}/s (a copy a letter, an audit event a batch of "
        f"up to {args.audit_batch}), raw {raw_median:.0f}/s (one a message)"
    )
    print(
        f"median: ours {ours_median:.0f} msg/s, raw {raw_median:.0f} msg/s, ratio {ratio:.2f} "
        f"(goals: ratio >= {GOAL_RATIO} {'met' if ratio >= GOAL_RATIO else 'NOT met'}, "
        f">= {GOAL_RATE:.0f} msg/s {'met' if ours_median >= GOAL_RATE else 'NOT met'}); "
        f"dlq list median {statistics.median(lists):.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
