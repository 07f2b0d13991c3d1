"""Scale-out: do three workers do three workers' work, and keep one vendor budget together?

``python -m bench.scale [--provisionings N] [--rounds N] [--concurrency N] [--partitions N]``

(a) vendor-latency bound. One fake Harvest, in a process of its own like a real vendor,
    answers every call after 100 ms (``FakeVendor(latency=0.1)``) and has no rate limit.
    ``--provisionings`` projects (one offering each) are activated first (no vendor call,
    not timed), then their ``in_progress`` events are published at once and timed until the
    last ``timesheet.provisioned``: provisionings/s ("steady": between the 10th and the
    90th percentile outcome, without the start and the tail). Once with 1 worker, once with 3
    (``python -m worker.commands run``), everything else equal: the same events, the same
    ``PROVISIONER_CONCURRENCY`` per worker and ``PROVISIONER_PARTITIONS``, one PostgreSQL
    schema, the shared pacing budget in Redis (limit far above what is asked). Each worker
    works ``concurrency`` provisionings at a time, each a handful of sequential 100 ms calls,
    so a worker's rate is bounded by the vendor's latency: ``concurrency / (calls x 0.1 s)``.
    The "cpu" column is the CPU the workers used over the timed window, as a share of the
    machine's cores: well under 100 % means the latency, not the CPU, set the pace.
    "busiest" is the share of the provisionings made by the busiest worker: the partitions
    are dealt evenly, but projects hash into them by chance, so with 480 projects one worker
    gets about 36 % of them and 3 workers can be at most ~2.8x one.
    Goal: 3 workers >= 2.5x one worker, whole run (median over ``--rounds``).
(b) one budget. ``bench.shared_budget``'s shared run: three workers on one fake Harvest
    limited to 20 calls per 2 s (429 with Retry-After beyond), one Redis budget: the share
    of the limit used (goal >= 90 %) and the 429s the fake answered (goal 0).

Every run gets a fresh namespace (all its queues deleted afterwards, partition queues too)
and a fresh PostgreSQL schema. Exit status 0 whenever the benchmark ran, goals met or not.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace

from bench.pacing import machine
from bench.shared_budget import run_mode
from bench.throughput import Collector, WorkerProcess
from fakes.harvest import FakeHarvest
from tests import builders as b
from tests.e2e.bus import Bus
from tests.postgres import fresh_schema
from tests.scale_show.show import delete_namespace
from worker.topology import Topology

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LATENCY = 0.1
GOAL_RATIO = 2.5
BUDGET = (20, 2.0)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def serve_slow_harvest(conn: Connection) -> None:
    """A fake Harvest answering every call after ``LATENCY``, in its own process."""
    fake = FakeHarvest(rate_limit=None, latency=LATENCY).start()
    conn.send({"origin": fake.origin, "token": fake.token, "account_id": fake.account_id})
    conn.recv()  # the run is over
    with fake.lock:
        conn.send(len(fake.log))
    fake.stop()


@dataclass
class Rate:
    workers: int
    provisioned: int
    seconds: float
    calls: int  # vendor calls the fake answered in the whole run
    cpu: float  # the workers' CPU over the timed window, as a share of all cores
    busiest: float  # the share of the provisionings the busiest worker made
    steady: float  # provisionings/s between the 10th and the 90th percentile outcome

    @property
    def per_second(self) -> float:
        return self.provisioned / self.seconds


def cpu_seconds(worker: WorkerProcess) -> float:
    fields = Path(f"/proc/{worker.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def confirmed(bus: Bus, events: list[dict]) -> None:
    """Publishes ``events`` to ``NS.inbound``, each confirmed by the broker: an outcome
    that never comes is then the worker's doing, not a publish lost on the way."""
    for event in events:
        bus.publish(event)


def latency_run(workers: int, provisionings: int, concurrency: int, partitions: int) -> Rate:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=serve_slow_harvest, args=(theirs,), daemon=True)
    server.start()
    topology = Topology(f"benchscale{uuid.uuid4().hex[:8]}", (1.0, 2.0))
    bus = Bus(AMQP_URL, topology)  # declares the namespace; deletes all of it at the end
    try:
        fake = SimpleNamespace(**ours.recv())
        with (
            fresh_schema(POSTGRES_URL, "bench") as database_url,
            tempfile.TemporaryDirectory() as tmp,
        ):
            env = {
                "AMQP_URL": AMQP_URL,
                "PROVISIONER_NAMESPACE": topology.namespace,
                "PROVISIONER_DATABASE_URL": database_url,
                "PROVISIONER_RETRY_DELAYS": "1,2",
                "PROVISIONER_CONCURRENCY": str(concurrency),
                "PROVISIONER_PARTITIONS": str(partitions),
                # No PROVISIONER_PREFETCH: each partition has one owner, so taking ahead never
                # starves another worker, and a worker capped at its lane count starves its
                # own lanes at the end of a run, once only a few of its partitions have work.
                "PROVISIONER_PACING_URL": REDIS_URL,
                "PROVISIONER_METRICS_BIND": "off",
                "HARVEST_ACCOUNT_ID": fake.account_id,
                "HARVEST_ACCESS_TOKEN": fake.token,
                "HARVEST_BASE_URL": f"{fake.origin}/v2",
                "HARVEST_RATE_LIMIT": "100000/1",
            }
            collector = Collector(AMQP_URL, topology)
            started_workers = [
                WorkerProcess(env, Path(tmp) / f"worker{i}.log") for i in range(workers)
            ]
            alive = lambda: all(w.alive() for w in started_workers)  # noqa: E731
            try:
                projects = [b.project(b.offering()) for _ in range(provisionings)]
                confirmed(bus, [b.closed_won(p) for p in projects])
                collector.wait(provisionings, type="project.activated", alive=alive, timeout=120)
                cpu_before = sum(cpu_seconds(w) for w in started_workers)
                started = time.monotonic()
                changed = [b.status_changed(p, "in_progress") for p in projects]
                marks: dict[int, float] = {}
                tenth, ninetieth = provisionings // 10, provisionings - provisionings // 10
                at = {
                    n: (lambda n=n: marks.__setitem__(n, time.monotonic()))
                    for n in (tenth, ninetieth)
                }
                confirmed(bus, changed)
                done = collector.wait(
                    provisionings, type="timesheet.provisioned", alive=alive, timeout=120, at=at
                )
                cpu = sum(cpu_seconds(w) for w in started_workers) - cpu_before
            except Exception:
                for worker in started_workers:
                    print(f"worker log, last lines:\n{worker.tail()}", file=sys.stderr)
                raise
            finally:
                for worker in started_workers:
                    worker.stop()
                collector.close()
            made = [
                w.log_path.read_text().count('"timesheet.provisioned"') for w in started_workers
            ]
        ours.send("done")
        calls = ours.recv()
    finally:
        delete_namespace(bus, topology.namespace)
        server.join(timeout=10)
        if server.is_alive():
            server.kill()
    seconds = done.last - started
    cpu_share = cpu / seconds / os.cpu_count()
    steady = (ninetieth - tenth) / (marks[ninetieth] - marks[tenth])
    return Rate(workers, done.count, seconds, calls, cpu_share, max(made) / sum(made), steady)


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    rows = [header, *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--provisionings", type=int, default=480, help="per run in (a) (480)")
    parser.add_argument("--concurrency", type=int, default=8, help="per worker in (a) (8)")
    parser.add_argument("--partitions", type=int, default=24, help="PROVISIONER_PARTITIONS (24)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (a) (3)")
    parser.add_argument("--budget-provisionings", type=int, default=60, help="in (b) (60)")
    parser.add_argument("--skip-budget", action="store_true", help="only (a)")
    args = parser.parse_args(argv)

    print(f"scale-out benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M UTC}")
    print(f"machine: {machine()}")
    print(
        f"(a) {args.provisionings} Harvest provisionings per run against a fake answering"
        f" after {LATENCY * 1000:.0f} ms, no rate limit;\n    PROVISIONER_CONCURRENCY"
        f" {args.concurrency} per worker, PROVISIONER_PARTITIONS {args.partitions},"
        f" {args.rounds} rounds of 1 worker then 3",
        flush=True,
    )
    rows, ratios, steady_ratios = [], [], []
    for n in range(1, args.rounds + 1):
        one = latency_run(1, args.provisionings, args.concurrency, args.partitions)
        three = latency_run(3, args.provisionings, args.concurrency, args.partitions)
        ratios.append(three.per_second / one.per_second)
        steady_ratios.append(three.steady / one.steady)
        for r in (one, three):
            rows.append(
                (
                    f"round {n}",
                    str(r.workers),
                    str(r.provisioned),
                    f"{r.seconds:.1f}s",
                    f"{r.per_second:.1f}",
                    f"{r.steady:.1f}",
                    f"{r.calls / r.provisioned:.1f}",
                    f"{r.cpu:.0%}",
                    f"{r.busiest:.0%}",
                    f"{ratios[-1]:.2f}x" if r is three else "",
                )
            )
        print(f"  round {n}: {ratios[-1]:.2f}x", file=sys.stderr, flush=True)
    header = (
        "(a)",
        "workers",
        "provisioned",
        "elapsed",
        "prov/s",
        "steady",
        "calls each",
        "cpu",
        "busiest",
        "3 vs 1",
    )
    print()
    print(table(header, rows))
    ratio = statistics.median(ratios)
    print(
        f"\nmedian 3 workers / 1 worker: {ratio:.2f}x; goal >= {GOAL_RATIO}x:",
        "met" if ratio >= GOAL_RATIO else "NOT met",
    )
    print(
        f"median of the steady rates (10th to 90th percentile outcome): "
        f"{statistics.median(steady_ratios):.2f}x"
    )
    if not args.skip_budget:
        print(
            f"\n(b) 3 workers, one fake Harvest limited to {BUDGET[0]}/{BUDGET[1]:g}s, one"
            f" Redis budget, {args.budget_provisionings} provisionings",
            flush=True,
        )
        budget = run_mode("shared", BUDGET, args.budget_provisionings)
        header = ("(b)", "provisioned", "requests", "429s", "elapsed", "of limit", "tightest")
        row = (
            "shared budget",
            str(budget.provisioned),
            str(budget.requests),
            str(budget.throttled),
            f"{budget.elapsed:.1f}s",
            f"{budget.share:.1%}",
            f"{budget.tightest:.3f}s",
        )
        print()
        print(table(header, [row]))
        ok = budget.throttled == 0 and budget.share >= 0.9
        print("\ngoal (0 429s, >= 90% of the limit):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
