"""Throughput and memory of the worker on the local RabbitMQ, next to a naive pika baseline.

``python -m bench.throughput [--quick] [--events N] [--offerings N] [--memory-events N]``

What is measured, and how (every phase gets a fresh random namespace, deleted afterwards,
and a fresh SQLite file in a temporary directory):

(a) baseline: a raw pika loop, the naive correct consumer. One BlockingConnection with
    ``confirm_delivery``, prefetch 100; for each message: parse it, publish one small result
    to ``NS.events`` (the call returns once the broker confirmed it), ack. It runs in a
    child process on the same pre-published ``deal.closed_won`` events and the same quorum
    work queue as (b).
(b) the worker (``python -m worker.commands run``, a child process) on N ``deal.closed_won``
    events, each for a different project: it stores the snapshot and publishes
    ``project.activated``, no vendor call. The events are published into ``NS.worker``
    before the worker starts.
    For (a) and (b) a collector in this process consumes ``NS.events`` and stamps each
    outcome's arrival; events/s is steady state, (N - 1) / (last arrival - first arrival),
    so that process start-up (imports, connecting) is not counted. "wall" is from starting
    the consumer to the last outcome, start-up included. (a) and (b) run in turns, ``--rounds``
    of each (default 5): on a shared machine one run of each swings by a third either way.
(c) the worker provisioning one Harvest offering for each of M projects against
    ``FakeHarvest`` (real HTTP, 100 ms per request, no rate limit; the worker's pacing is
    off with HARVEST_RATE_LIMIT=100000/1), at PROVISIONER_CONCURRENCY 1 and 32. The
    ``deal.closed_won`` events go first and are not timed; the timed part is from publishing
    the M ``project.status_changed`` in_progress events to the M-th ``timesheet.provisioned``.
(d) the worker's memory over K ``deal.closed_won`` events (pre-published, as in (b)):
    VmRSS from /proc/PID/status once K/5 outcomes arrived and once all K did, and VmHWM
    (peak RSS) at the end. Growth is between those two samples, i.e. over the last 4/5.

Goals: (b) >= 1.0x (a), on the median of the rounds' ratios; (c) concurrency 32 >= 20x
concurrency 1; (d) peak RSS < 150 MB and growth < 5 %. The exit status is 0 whenever the
benchmark ran, goals met or not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pika

from fakes.harvest import FakeHarvest
from tests import builders as b
from worker.topology import Topology, connection_parameters

RETRY_DELAYS = (10.0, 60.0)
BASELINE_PREFETCH = 100
PUBLISH_BATCH = 1000  # messages between two checks that the broker has kept up
DRAIN_AFTER_EXIT = 5.0  # seconds the collector keeps reading after its consumer exited

GOAL_B_OVER_A = 1.0
GOAL_C32_OVER_C1 = 20.0
GOAL_PEAK_RSS_MB = 150.0
GOAL_GROWTH_PCT = 5.0


# -- the broker side: namespaces, publishing, collecting --------------------------------------
@contextlib.contextmanager
def namespace(url: str):
    """A fresh namespace, declared; its queues and exchanges are deleted on the way out."""
    topology = Topology(f"bench{uuid.uuid4().hex[:8]}", RETRY_DELAYS)
    connection = pika.BlockingConnection(connection_parameters(url))
    topology.declare(connection.channel())
    connection.close()
    try:
        yield topology
    finally:
        delete_namespace(url, topology)


def delete_namespace(url: str, t: Topology) -> None:
    connection = pika.BlockingConnection(connection_parameters(url))
    channel = connection.channel()
    for queue in [
        t.work_queue,
        t.dead_letter,
        t.dead_letter_journal,
        *(t.retry_queue(d) for d in t.retry_delays),
    ]:
        channel.queue_delete(queue)
    for exchange in (t.inbound, t.events, t.dead_letter_exchange):
        channel.exchange_delete(exchange)
    connection.close()


def publish(url: str, topology: Topology, events: list[dict], *, check_depth: bool = True):
    """Publishes ``events`` to ``NS.inbound`` on one connection, without a confirm each.

    With ``check_depth`` (nothing consumes the work queue yet) it waits, every
    ``PUBLISH_BATCH`` messages and at the end, until the queue holds all that were sent,
    which is what confirms would have told us. With a worker consuming, the collector's
    count is the check instead: a lost event would show as a timeout.
    """
    connection = pika.BlockingConnection(connection_parameters(url))
    channel = connection.channel()
    before = queue_depth(channel, topology.work_queue) if check_depth else 0
    for i, event in enumerate(events, 1):
        properties = pika.BasicProperties(
            content_type="application/cloudevents+json",
            delivery_mode=2,
            message_id=event["id"],
            type=event["type"],
        )
        channel.basic_publish(topology.inbound, event["type"], json.dumps(event), properties)
        if check_depth and (i % PUBLISH_BATCH == 0 or i == len(events)):
            wait_depth(connection, channel, topology.work_queue, before + i)
    connection.close()


def queue_depth(channel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def wait_depth(connection, channel, queue: str, depth: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while queue_depth(channel, queue) < depth:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{queue} did not reach {depth} messages in {timeout}s")
        connection.sleep(0.01)


@dataclass
class Arrivals:
    count: int = 0
    first: float | None = None
    last: float | None = None
    by_type: dict[str, int] = field(default_factory=dict)


class Collector:
    """Consumes everything published to ``NS.events`` (bound before any consumer starts)."""

    def __init__(self, url: str, topology: Topology):
        self.connection = pika.BlockingConnection(connection_parameters(url))
        self.channel = self.connection.channel()
        self.queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.queue, topology.events, routing_key="#")

    def wait(self, count, *, type=None, timeout=600.0, alive=lambda: True, at=None) -> Arrivals:
        """Until ``count`` outcomes (of ``type``) arrived; ``at`` maps a count to a callback."""
        seen = Arrivals()
        at = dict(at or {})
        deadline = time.monotonic() + timeout
        gone_at = None  # a consumer that finished may have outcomes still on their way
        for _method, properties, _body in self.channel.consume(
            self.queue, auto_ack=True, inactivity_timeout=0.5
        ):
            now = time.monotonic()
            if properties is not None:
                seen.by_type[properties.type] = seen.by_type.get(properties.type, 0) + 1
                if type is None or properties.type == type:
                    seen.count += 1
                    seen.first = seen.first or now
                    seen.last = now
                    if seen.count in at:
                        at.pop(seen.count)()
                    if seen.count >= count:
                        break
            if gone_at is None and not alive():
                gone_at = now
            if now > deadline or (gone_at is not None and now - gone_at > DRAIN_AFTER_EXIT):
                self.channel.cancel()
                raise RuntimeError(f"got {seen.count} of {count} outcomes: {seen.by_type}")
        self.channel.cancel()
        return seen

    def close(self) -> None:
        self.connection.close()


# -- what gets published -----------------------------------------------------------------------
def closed_won_events(n: int) -> list[dict]:
    return [b.closed_won(b.project()) for _ in range(n)]


# -- the consumers under test ------------------------------------------------------------------
def raw_loop(url: str, topology: Topology, n: int) -> None:
    """(a): consume, publish one result with a confirm, ack; one message at a time."""
    connection = pika.BlockingConnection(connection_parameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_qos(prefetch_count=BASELINE_PREFETCH)
    for done, (method, _properties, body) in enumerate(channel.consume(topology.work_queue), 1):
        project_id = json.loads(body)["data"]["project"]["id"]
        result = json.dumps({"type": "project.activated", "data": {"project_id": project_id}})
        properties = pika.BasicProperties(
            content_type="application/cloudevents+json", delivery_mode=2, type="result"
        )
        channel.basic_publish(topology.events, "result", result, properties)  # waits: confirm
        channel.basic_ack(method.delivery_tag)
        if done == n:
            break
    channel.cancel()
    connection.close()


class WorkerProcess:
    """``python -m worker.commands run`` with the contract's environment; logs go to a file."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "worker.commands", "run"],
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def status_kb(self, field_name: str) -> int:
        """A field of /proc/PID/status in kB, e.g. VmRSS or VmHWM."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
        raise KeyError(field_name)

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def worker_env(url: str, topology: Topology, workdir: Path, concurrency: int, harvest=None):
    """Harvest credentials are always set: the default rules name Harvest."""
    origin = harvest.origin if harvest else "http://127.0.0.1:9"  # never called in (b), (d)
    return {
        "AMQP_URL": url,
        "PROVISIONER_NAMESPACE": topology.namespace,
        "PROVISIONER_METRICS_BIND": "off",  # several at once must not share a port
        "PROVISIONER_DATABASE_URL": f"sqlite:///{workdir / 'state.db'}",
        "PROVISIONER_RETRY_DELAYS": ",".join(str(d) for d in RETRY_DELAYS),
        "PROVISIONER_CONCURRENCY": str(concurrency),
        "HARVEST_ACCOUNT_ID": harvest.account_id if harvest else "1",
        "HARVEST_ACCESS_TOKEN": harvest.token if harvest else "unused",
        "HARVEST_BASE_URL": f"{origin}/v2",
        "HARVEST_RATE_LIMIT": "100000/1",
    }


@contextlib.contextmanager
def running_worker(env: dict[str, str], workdir: Path):
    worker = WorkerProcess(env, workdir / "worker.log")
    try:
        yield worker
    except Exception:
        print(f"worker log, last lines:\n{worker.tail()}", file=sys.stderr)
        raise
    finally:
        worker.stop()


# -- the phases ----------------------------------------------------------------------------------
@dataclass
class Rate:
    events: int
    seconds: float  # the timed window
    wall: float  # from starting the consumer, start-up included

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def steady(arrivals: Arrivals, started: float) -> Rate:
    return Rate(arrivals.count - 1, arrivals.last - arrivals.first, arrivals.last - started)


def phase_baseline(url: str, n: int) -> Rate:
    with namespace(url) as topology:
        publish(url, topology, closed_won_events(n))
        collector = Collector(url, topology)
        started = time.monotonic()
        loop = multiprocessing.Process(target=raw_loop, args=(url, topology, n))
        loop.start()
        arrivals = collector.wait(n, alive=loop.is_alive)
        loop.join(30)
        collector.close()
        return steady(arrivals, started)


def phase_closed_won(url: str, n: int, concurrency: int) -> Rate:
    with namespace(url) as topology, tempfile.TemporaryDirectory() as tmp:
        publish(url, topology, closed_won_events(n))
        collector = Collector(url, topology)
        started = time.monotonic()
        env = worker_env(url, topology, Path(tmp), concurrency)
        with running_worker(env, Path(tmp)) as worker:
            arrivals = collector.wait(n, type="project.activated", alive=worker.alive)
        collector.close()
        return steady(arrivals, started)


@dataclass
class Provisioning:
    rate: Rate
    requests_per_offering: float


def phase_provision(url: str, m: int, concurrency: int, latency: float) -> Provisioning:
    projects = [b.project(b.offering()) for _ in range(m)]
    with (
        namespace(url) as topology,
        tempfile.TemporaryDirectory() as tmp,
        FakeHarvest(rate_limit=None, latency=latency) as harvest,
    ):
        collector = Collector(url, topology)
        env = worker_env(url, topology, Path(tmp), concurrency, harvest)
        with running_worker(env, Path(tmp)) as worker:
            publish(url, topology, [b.closed_won(p) for p in projects], check_depth=False)
            collector.wait(m, type="project.activated", alive=worker.alive)
            requests_before = len(harvest.log)
            started = time.monotonic()
            in_progress = [b.status_changed(p, "in_progress") for p in projects]
            publish(url, topology, in_progress, check_depth=False)
            arrivals = collector.wait(m, type="timesheet.provisioned", alive=worker.alive)
        collector.close()
        elapsed = arrivals.last - started
        calls = (len(harvest.log) - requests_before) / m
        return Provisioning(Rate(m, elapsed, elapsed), calls)


@dataclass
class Memory:
    events: int
    early_sample_at: int
    rss_early_mb: float
    rss_end_mb: float
    peak_mb: float
    rate: Rate

    @property
    def growth_pct(self) -> float:
        return 100.0 * (self.rss_end_mb - self.rss_early_mb) / self.rss_early_mb


def phase_memory(url: str, k: int, concurrency: int) -> Memory:
    early = max(1, k // 5)
    with namespace(url) as topology, tempfile.TemporaryDirectory() as tmp:
        publish(url, topology, closed_won_events(k))
        collector = Collector(url, topology)
        started = time.monotonic()
        env = worker_env(url, topology, Path(tmp), concurrency)
        samples: dict[str, int] = {}
        with running_worker(env, Path(tmp)) as worker:

            def sample(name: str):
                return lambda: samples.__setitem__(name, worker.status_kb("VmRSS"))

            arrivals = collector.wait(
                k,
                type="project.activated",
                alive=worker.alive,
                at={early: sample("early"), k: sample("end")},
            )
            samples["peak"] = worker.status_kb("VmHWM")
        collector.close()
        mb = {name: kb / 1024 for name, kb in samples.items()}
        return Memory(k, early, mb["early"], mb["end"], mb["peak"], steady(arrivals, started))


# -- the report ----------------------------------------------------------------------------------
def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"pika {pika.__version__}, RabbitMQ {rabbitmq_version()}, {platform.platform()}"
    )


def rabbitmq_version() -> str:
    try:
        done = subprocess.run(
            ["rabbitmqctl", "version"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (rabbitmqctl not available)"
    return done.stdout.strip() or "unknown"


def row(label: str, rate: Rate, round_: int | str = "", note: str = "") -> str:
    return (
        f"  {label:<46} {round_!s:>5} {rate.events:>7} {rate.seconds:>9.2f} {rate.wall:>8.2f} "
        f"{rate.per_second:>10.1f}  {note}"
    )


def goal(label: str, value: str, target: str, met: bool) -> str:
    return f"  {label:<34} {value:>12}   goal {target:<10} {'MET' if met else 'MISSED'}"


def run(args: argparse.Namespace) -> Iterator[str]:
    """The report, a line at a time as the phases finish; the goals come last."""
    url = args.amqp_url
    yield f"timesheet-provisioner throughput, {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
    yield f"machine: {machine()}"
    yield ""
    yield (
        f"  {'phase':<46} {'round':>5} {'events':>7} {'seconds':>9} {'wall':>8} {'events/s':>10}"
    )
    goals = []
    phases = set(args.phases.split(","))
    if {"a", "b"} <= phases:
        # (a) and (b) take turns, round after round, so that a slow spell of a shared machine
        # falls on both; the goal is judged on the median of the rounds' ratios.
        ratios = []
        for n in range(1, args.rounds + 1):
            a = phase_baseline(url, args.events)
            yield row(f"(a) raw pika loop, confirm each, prefetch {BASELINE_PREFETCH}", a, n)
            bw = phase_closed_won(url, args.events, args.concurrency)
            label = f"(b) worker, deal.closed_won, concurrency {args.concurrency}"
            ratios.append(bw.per_second / a.per_second)
            yield row(label, bw, n, f"{ratios[-1]:.2f}x (a)")
        ratio = statistics.median(ratios)
        spread = f"rounds: {', '.join(f'{r:.2f}x' for r in ratios)}"
        goals.append(
            goal(
                "(b) / (a), median", f"{ratio:.2f}x", f">= {GOAL_B_OVER_A}x", ratio >= GOAL_B_OVER_A
            )
            + f"   ({spread})"
        )
    if "c" in phases:
        latency_ms = round(args.latency * 1000)
        c = {n: phase_provision(url, args.offerings, n, args.latency) for n in (1, 32)}
        for n, result in c.items():
            label = f"(c) worker, provision, {latency_ms} ms/request, conc {n}"
            note = f"{result.requests_per_offering:.1f} requests/offering"
            yield row(label, result.rate, note=note)
        ratio = c[32].rate.per_second / c[1].rate.per_second
        target = f">= {GOAL_C32_OVER_C1:.0f}x"
        goals.append(
            goal("(c) conc 32 / conc 1", f"{ratio:.1f}x", target, ratio >= GOAL_C32_OVER_C1)
        )
    if "d" in phases:
        d = phase_memory(url, args.memory_events, args.concurrency)
        yield row(f"(d) worker, deal.closed_won, concurrency {args.concurrency}", d.rate)
        yield (
            f"  (d) RSS after {d.early_sample_at} events {d.rss_early_mb:.1f} MB, after "
            f"{d.events} {d.rss_end_mb:.1f} MB, peak (VmHWM) {d.peak_mb:.1f} MB"
        )
        peak, target = f"{d.peak_mb:.1f} MB", f"< {GOAL_PEAK_RSS_MB:.0f} MB"
        goals.append(goal("(d) peak RSS", peak, target, d.peak_mb < GOAL_PEAK_RSS_MB))
        label, growth = f"(d) RSS growth {d.early_sample_at}->{d.events}", f"{d.growth_pct:+.1f} %"
        target = f"< {GOAL_GROWTH_PCT:.0f} %"
        goals.append(goal(label, growth, target, d.growth_pct < GOAL_GROWTH_PCT))
    yield ""
    yield "goals:"
    yield from goals


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--events", type=int, help="events for (a) and (b) (default 5000)")
    parser.add_argument("--offerings", type=int, help="offerings for (c) (default 200)")
    parser.add_argument("--memory-events", type=int, help="events for (d) (default 50000)")
    parser.add_argument("--concurrency", type=int, default=16, help="worker lanes, (b) and (d)")
    parser.add_argument("--rounds", type=int, default=5, help="turns of (a) then (b) (default 5)")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per Harvest request")
    parser.add_argument("--phases", default="a,b,c,d", help="which phases, e.g. a,b or d")
    parser.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    args = parser.parse_args(argv)
    sizes = (500, 20, 5000) if args.quick else (5000, 200, 50000)
    args.events = args.events or sizes[0]
    args.offerings = args.offerings or sizes[1]
    args.memory_events = args.memory_events or sizes[2]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for line in run(args):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
