"""Three workers, one vendor budget: do three ``provisioner run`` processes together keep one
Harvest account's rate limit, and use it?

One fake Harvest, in a process of its own like a real vendor, enforces a small limit
(``--limit``, 20 per 2 s) and answers 429 with Retry-After beyond it. Three real workers
(``python -m worker.commands run``) share one namespace on the local RabbitMQ and one fresh
PostgreSQL schema, each with ``HARVEST_RATE_LIMIT`` set to that same limit,
``PROVISIONER_CONCURRENCY`` 8 and ``PROVISIONER_PREFETCH`` 8 (the backlog spread over the
three). ``--provisionings`` projects are activated (no vendor call),
then their ``in_progress`` events are published at once and timed until the last
``timesheet.provisioned``. Three runs, everything else equal:

- shared: ``PROVISIONER_PACING_URL`` on the local Redis, one budget for the three;
- local: unset, each worker paces alone at the full limit (the behaviour before);
- Redis away: ``PROVISIONER_PACING_URL`` on a closed port, ``PROVISIONER_PACING_WORKERS``
  3, so each worker falls back to a third of the limit.

Figures per run, from what the fake saw after the first ``in_progress`` was published:

- requests / throttled: requests the fake received, and the 429s among them (goal 0);
- attempted: requests / their time span, as a share of the limit (3 local pacers: ~3x);
- of limit: the pace of the accepted requests, ``calls / mean(t[i + calls] - t[i])``, as a
  share of calls/period (as in ``bench.pacing``); goal >= 90% when shared;
- tightest: the shortest time in which ``calls + 1`` accepted requests arrived (>= period
  means the fake never had to refuse);
- store away: ``pacing_store_unreachable`` lines in the workers' logs;
- load: the machine's 1-minute load average as the run ended. A start is counted when the
  budget grants it and the fake counts it when it arrives; on a starved CPU the gap
  between the two can pass the pacer's 50 ms margin, and an odd 429 follows.

    .venv/bin/python -m bench.shared_budget
    .venv/bin/python -m bench.shared_budget --provisionings 30 --only shared
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from bench.pacing import THROTTLE_STATUSES, machine, serve_fake
from bench.throughput import Collector, WorkerProcess, namespace, publish
from tests import builders as b
from tests.integration.harnesses.harvest import ACCOUNT_ID
from tests.postgres import fresh_schema

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WORKERS = 3


@dataclass
class Run:
    mode: str
    limit: tuple[int, float]
    provisioned: int
    requests: int
    throttled: int
    span: float  # first to last request the fake received
    elapsed: float  # first in_progress published to last timesheet.provisioned
    paced_rate: float
    tightest: float
    store_away: int
    load: float  # the machine's 1-minute load average at the end of the run

    @property
    def allowed(self) -> float:
        return self.limit[0] / self.limit[1]

    @property
    def attempted(self) -> float:
        return self.requests / self.span / self.allowed if self.span else float("nan")

    @property
    def share(self) -> float:
        return self.paced_rate / self.allowed


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pacing_env(mode: str) -> dict[str, str]:
    if mode == "shared":
        return {"PROVISIONER_PACING_URL": REDIS_URL}
    if mode == "Redis away":
        return {
            "PROVISIONER_PACING_URL": f"redis://127.0.0.1:{closed_port()}/0",
            "PROVISIONER_PACING_WORKERS": str(WORKERS),
        }
    return {}


def run_mode(mode: str, limit: tuple[int, float], provisionings: int) -> Run:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=serve_fake, args=("harvest", limit, theirs), daemon=True)
    server.start()
    try:
        fake = SimpleNamespace(**ours.recv())
        with (
            namespace(AMQP_URL) as topology,
            fresh_schema(POSTGRES_URL, "bench") as database_url,
            tempfile.TemporaryDirectory() as tmp,
        ):
            env = {
                "AMQP_URL": AMQP_URL,
                "PROVISIONER_NAMESPACE": topology.namespace,
                "PROVISIONER_METRICS_BIND": "off",  # several at once must not share a port
                "PROVISIONER_DATABASE_URL": database_url,
                "PROVISIONER_RETRY_DELAYS": "1,2",
                "PROVISIONER_CONCURRENCY": "8",
                "PROVISIONER_PREFETCH": "8",  # the backlog spread over the three
                "HARVEST_ACCOUNT_ID": ACCOUNT_ID,
                "HARVEST_ACCESS_TOKEN": fake.token,
                "HARVEST_BASE_URL": f"{fake.origin}/v2",
                "HARVEST_RATE_LIMIT": f"{limit[0]}/{limit[1]:g}",
                **pacing_env(mode),
            }
            logs = [Path(tmp) / f"worker{i}.log" for i in range(WORKERS)]
            collector = Collector(AMQP_URL, topology)
            workers = [WorkerProcess(env, log) for log in logs]
            alive = lambda: all(w.alive() for w in workers)  # noqa: E731
            try:
                projects = [b.project(b.offering()) for _ in range(provisionings)]
                publish(AMQP_URL, topology, [b.closed_won(p) for p in projects], check_depth=False)
                collector.wait(provisionings, type="project.activated", alive=alive)
                started = time.monotonic()
                changed = [b.status_changed(p, "in_progress") for p in projects]
                publish(AMQP_URL, topology, changed, check_depth=False)
                done = collector.wait(provisionings, type="timesheet.provisioned", alive=alive)
            except Exception:
                for worker in workers:
                    print(f"worker log, last lines:\n{worker.tail()}", file=sys.stderr)
                raise
            finally:
                for worker in workers:
                    worker.stop()
                collector.close()
            store_away = sum(
                log.read_text(errors="replace").count("pacing_store_unreachable") for log in logs
            )
        ours.send("done")
        _statuses, arrivals = ours.recv()
    finally:
        server.join(timeout=10)
        if server.is_alive():
            server.kill()
    seen = sorted((t, status) for t, status in arrivals if t >= started)
    accepted = [t for t, status in seen if status not in THROTTLE_STATUSES]
    c = limit[0]
    gaps = [later - earlier for earlier, later in zip(accepted, accepted[c:], strict=False)]
    return Run(
        mode=mode,
        limit=limit,
        provisioned=done.count,
        requests=len(seen),
        throttled=sum(1 for _, status in seen if status in THROTTLE_STATUSES),
        span=seen[-1][0] - seen[0][0] if len(seen) > 1 else 0.0,
        elapsed=done.last - started,
        paced_rate=c / (sum(gaps) / len(gaps)) if gaps else float("nan"),
        tightest=min(gaps) if gaps else float("nan"),
        store_away=store_away,
        load=os.getloadavg()[0],
    )


def table(runs: list[Run]) -> str:
    header = (
        "pacing",
        "provisioned",
        "requests",
        "throttled",
        "elapsed",
        "attempted",
        "of limit",
        "tightest",
        "store away",
        "load",
    )
    rows = [header] + [
        (
            r.mode,
            str(r.provisioned),
            str(r.requests),
            str(r.throttled),
            f"{r.elapsed:.1f}s",
            f"{r.attempted:.0%}",
            f"{r.share:.1%}",
            f"{r.tightest:.3f}s",
            str(r.store_away),
            f"{r.load:.1f}",
        )
        for r in runs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


MODES = ("shared", "local", "Redis away")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.shared_budget", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--provisionings", type=int, default=60, help="per run (60)")
    parser.add_argument("--limit", default="20/2", help="the fake's and each worker's (20/2)")
    parser.add_argument("--only", choices=MODES, action="append", help="run(s) to do")
    args = parser.parse_args(argv)
    calls, seconds = args.limit.split("/")
    limit = (int(calls), float(seconds))

    print(f"shared vendor budget benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M UTC}")
    print(f"machine: {machine()}")
    print(
        f"{WORKERS} workers (provisioner run, concurrency 8) on one fake Harvest account"
        f" limited to {calls}/{seconds}s;\n{args.provisionings} Harvest provisionings per run;"
        " each worker's HARVEST_RATE_LIMIT is the same limit",
        flush=True,
    )
    runs = []
    for mode in args.only or MODES:
        print(f"  running {mode} ...", file=sys.stderr, flush=True)
        runs.append(run_mode(mode, limit, args.provisionings))
    print()
    print(table(runs))
    shared = [r for r in runs if r.mode == "shared"]
    if shared:
        ok = all(r.throttled == 0 and r.share >= 0.9 for r in shared)
        print()
        print("goal (shared: 0 throttled, >= 90% of limit):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
