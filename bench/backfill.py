"""A backfill within the vendors' budgets: won HubSpot deals into Harvest projects, at
Harvest's documented limit, as near its floor as the calls allow.

``python -m bench.backfill [--deals N] [--items N] [--scale F] [--concurrency N]``

The in-repo HubSpot fake is seeded with ``--deals`` won deals (1,000), each with its own
company, ``--items`` line items (3) and an owner who is a Harvest user, in a stage the rules
map to ``in_progress``. One worker (``python -m worker.commands run``, a process) reads them
from the fake HubSpot and provisions one Harvest project per line item in the fake Harvest.
Both fakes enforce their vendor's documented limit with time scaled down by ``--scale``
(Harvest 100 requests per 15 s, HubSpot 100 per 10 s; at 10, 100 per 1.5 s and 100 per
1 s), and the worker's ``HARVEST_RATE_LIMIT`` / ``HUBSPOT_RATE_LIMIT`` say the same. The
fake Harvest runs in a process of its own, like a real vendor, so that the fake HubSpot and
the collector do not delay its arrival stamps. Scaling time shrinks the period but not the
machine's jitter (the pacer's slack is 50 ms at a 1.5 s period against 300 ms at Harvest's
real 15 s): a start counts from its answer, which comes after the vendor's stamp, so that
jitter cannot push a window over. The sweep and the worker share one budget in Redis
(``PROVISIONER_PACING_URL``), as a deployment of several processes runs.

No webhook is sent: the deals reach the bus through one ``provisioner crm reconcile --since
…`` sweep (a process), as an operator backfills at install. The run is timed from the
sweep's start to the last ``timesheet.provisioned``, so the sweep's own calls count.

The floor is what Harvest's limit allows for the calls that must be made: per deal the
client look-up by name (it guards "no second client", so it is never served from a cache)
and the client's create; per line item the project's create and its owner's assignment;
once per run the users and the account's address. Calls made beyond those show by kind.
Goals: 0 answers 429 from either fake, and a wall time within 1.15x the floor.
Exit status 0 whenever the benchmark ran, goals met or not.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace

from bench.pacing import machine
from bench.scale import AMQP_URL, POSTGRES_URL, REDIS_URL
from bench.throughput import Collector, WorkerProcess
from fakes.harvest import FakeHarvest
from fakes.hubspot import FakeHubSpot
from tests.e2e.bus import Bus
from tests.postgres import fresh_schema
from tests.scale_show.show import delete_namespace
from worker.topology import Topology

HARVEST_LIMIT = (100, 15.0)  # HV-DOCS: 100 requests per 15 s
HUBSPOT_LIMIT = (100, 10.0)  # private app on Free/Starter: 100 per 10 s
GOAL_RATIO = 1.15
PORTAL = 62515
IN_PROGRESS = "1385066797"  # a custom pipeline's stage id, as HubSpot makes them
RULES = f'[crm.hubspot.stages]\n"{IN_PROGRESS}" = "in_progress"\n'
OWNERS = 5
# Harvest calls by kind: the method and a path pattern, in the order the table prints them.
KINDS = {
    "GET /clients": ("GET", r"/v2/clients"),
    "POST /clients": ("POST", r"/v2/clients"),
    "POST /projects": ("POST", r"/v2/projects"),
    "GET /users": ("GET", r"/v2/users"),
    "GET /company": ("GET", r"/v2/company"),
    "GET /tasks": ("GET", r"/v2/tasks"),
    "GET user_assignments": ("GET", r"/v2/projects/\d+/user_assignments"),
    "POST user_assignments": ("POST", r"/v2/projects/\d+/user_assignments"),
    "GET task_assignments": ("GET", r"/v2/projects/\d+/task_assignments"),
    "GET /projects": ("GET", r"/v2/projects"),
}


@dataclass(frozen=True)
class Seeded:
    deals: list[str]
    offerings: int


def serve_harvest(conn: Connection, rate_limit: tuple[int, float], users: list[str]) -> None:
    """The fake Harvest in its own process: its address out, then its log once asked."""
    fake = FakeHarvest(rate_limit=rate_limit).start()
    for email in users:
        fake.add_user(email)
    conn.send({"origin": fake.origin, "token": fake.token, "account_id": fake.account_id})
    conn.recv()  # the run is over
    with fake.lock:
        seen = {"log": list(fake.log), "throttled": fake.throttled}
        conn.send(seen | {"projects": len(fake.projects)})
    fake.stop()


def seed(hubspot: FakeHubSpot, owner_emails: list[str], deals: int, items: int) -> Seeded:
    """Won deals in a delivery stage, each with its own company and an owner who is also a
    Harvest user (so every project gets a team of one)."""
    hubspot.add_pipeline("Delivery", [(IN_PROGRESS, "Kick-off", "false", "1.0")])
    owners = [hubspot.add_owner(email) for email in owner_emails]
    made = []
    for n in range(deals):
        company = hubspot.add_company(f"Backfill client {n} {uuid.uuid4().hex[:6]}")
        lines = [hubspot.add_line_item(f"Item {k}", 10 + k) for k in range(items)]
        made.append(
            hubspot.add_deal(
                f"Backfill deal {n}",
                IN_PROGRESS,
                company=company,
                line_items=lines,
                owner=owners[n % OWNERS],
            )
        )
    return Seeded(made, deals * items)


def sweep(env: dict[str, str], since: datetime) -> str:
    """The deals reach the bus by one ``provisioner crm reconcile`` sweep of the fake HubSpot,
    as a process, exactly as an operator backfills at install; returns its summary line."""
    done = subprocess.run(
        [sys.executable, "-m", "worker.commands", "crm", "reconcile", "--crm", "hubspot",
         "--since", since.isoformat()],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"crm reconcile failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def harvest_calls(log: list[tuple[str, str, int]]) -> Counter:
    counts: Counter = Counter()
    for method, path, _status in log:
        kind = next(
            (k for k, (m, p) in KINDS.items() if m == method and re.fullmatch(p, path)), None
        )
        counts[kind or f"{method} {path}"] += 1
    return counts


def required_calls(deals: int, offerings: int) -> int:
    """What must reach Harvest whatever is kept: per deal the client look-up and create, per
    offering the project and its one-member team, once the users and the company."""
    return 2 * deals + 2 * offerings + 2


@dataclass
class Result:
    deals: int
    offerings: int
    provisioned: int
    projects: int
    calls: Counter
    required: int
    rate: float  # Harvest calls per second the scaled limit allows
    wall: float
    harvest_429: int
    hubspot_429: int
    hubspot_calls: int
    swept: str  # the sweep's summary line

    @property
    def floor(self) -> float:
        return self.required / self.rate

    @property
    def ratio(self) -> float:
        return self.wall / self.floor


def run(deals: int, items: int, scale: float, concurrency: int) -> Result:
    harvest_limit = (HARVEST_LIMIT[0], HARVEST_LIMIT[1] / scale)
    hubspot_limit = (HUBSPOT_LIMIT[0], HUBSPOT_LIMIT[1] / scale)
    topology = Topology(f"benchbackfill{uuid.uuid4().hex[:8]}", (5.0, 30.0))
    owners = [f"owner{n}-{uuid.uuid4().hex[:6]}@example.com" for n in range(OWNERS)]
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(
        target=serve_harvest, args=(theirs, harvest_limit, owners), daemon=True
    )
    server.start()
    bus = Bus(AMQP_URL, topology)
    try:
        harvest = SimpleNamespace(**ours.recv())
        with (
            FakeHubSpot(f"pat-na1-{uuid.uuid4()}", rate_limit=hubspot_limit) as hubspot,
            fresh_schema(POSTGRES_URL, "backfill") as database_url,
            tempfile.TemporaryDirectory() as tmp,
        ):
            since = datetime.now(UTC) - timedelta(hours=1)
            seeded = seed(hubspot, owners, deals, items)
            rules = Path(tmp) / "rules.toml"
            rules.write_text(RULES)
            env = {
                "AMQP_URL": AMQP_URL,
                "PROVISIONER_NAMESPACE": topology.namespace,
                "PROVISIONER_DATABASE_URL": database_url,
                "PROVISIONER_RETRY_DELAYS": "5,30",
                "PROVISIONER_CONCURRENCY": str(concurrency),
                "PROVISIONER_METRICS_BIND": "off",
                "PROVISIONER_RULES": str(rules),
                "HUBSPOT_ACCESS_TOKEN": hubspot.token,
                "HUBSPOT_BASE_URL": hubspot.origin,
                "HUBSPOT_RATE_LIMIT": f"{hubspot_limit[0]}/{hubspot_limit[1]:g}",
                "HARVEST_ACCOUNT_ID": harvest.account_id,
                "HARVEST_ACCESS_TOKEN": harvest.token,
                "HARVEST_BASE_URL": f"{harvest.origin}/v2",
                "HARVEST_RATE_LIMIT": f"{harvest_limit[0]}/{harvest_limit[1]:g}",
                # The sweep and the worker are two processes reading one HubSpot account:
                # one budget for both, in Redis, as a deployment of several processes runs.
                "PROVISIONER_PACING_URL": REDIS_URL,
            }
            collector = Collector(AMQP_URL, topology)
            worker = WorkerProcess(env, Path(tmp) / "worker.log")
            try:
                wait_consuming(worker)
                started = time.monotonic()
                swept = sweep(env, since)
                done = collector.wait(
                    seeded.offerings,
                    type="timesheet.provisioned",
                    alive=worker.alive,
                    timeout=max(600.0, 20 * required_calls(deals, seeded.offerings) / scale),
                )
                wall = done.last - started
            except Exception:
                print(f"worker log, last lines:\n{worker.tail()}", file=sys.stderr)
                raise
            finally:
                worker.stop()
                collector.close()
            ours.send("done")
            seen = ours.recv()
            return Result(
                deals=deals,
                offerings=seeded.offerings,
                provisioned=done.count,
                projects=seen["projects"],
                calls=harvest_calls(seen["log"]),
                required=required_calls(deals, seeded.offerings),
                rate=harvest_limit[0] / harvest_limit[1],
                wall=wall,
                harvest_429=seen["throttled"],
                hubspot_429=hubspot.throttled,
                hubspot_calls=len(hubspot.log),
                swept=swept,
            )
    finally:
        delete_namespace(bus, topology.namespace)
        server.join(timeout=10)
        if server.is_alive():
            server.kill()


def wait_consuming(worker: WorkerProcess, timeout: float = 60.0) -> None:
    """Until the worker says it consumes (its start-up is not the backfill's time)."""
    deadline = time.monotonic() + timeout
    while "consuming" not in worker.log_path.read_text(errors="replace"):
        if not worker.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start:\n{worker.tail()}")
        time.sleep(0.1)


def report(r: Result, scale: float) -> str:
    total = sum(r.calls.values())
    lines = [
        f"deals                     {r.deals} ({r.offerings // r.deals} line items each)",
        f"sweep                     {r.swept}",
        f"projects made             {r.projects} ({r.provisioned} timesheet.provisioned)",
        f"harvest calls             {total}, of which required {r.required}",
    ]
    lines += [f"  {kind:<24}{n:>6}" for kind, n in r.calls.most_common()]
    lines += [
        f"harvest limit (scaled)    {HARVEST_LIMIT[0]} per {HARVEST_LIMIT[1] / scale:g} s"
        f" = {r.rate:.1f}/s (time scaled by {scale:g})",
        f"floor                     {r.floor:.1f} s (required calls / limit)",
        f"wall                      {r.wall:.1f} s = {r.ratio:.3f}x the floor",
        f"429s                      harvest {r.harvest_429}, hubspot {r.hubspot_429}"
        f" (hubspot calls {r.hubspot_calls})",
        f"calls per provisioning    harvest {total / r.offerings:.2f}"
        f" (required {r.required / r.offerings:.2f}), hubspot {r.hubspot_calls / r.offerings:.2f}",
    ]
    met = r.harvest_429 == 0 and r.hubspot_429 == 0 and r.ratio <= GOAL_RATIO
    met = met and r.projects == r.offerings
    lines.append(f"goal (0 x 429, wall <= {GOAL_RATIO}x floor): {'met' if met else 'NOT met'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.backfill", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--deals", type=int, default=1000, help="won deals to seed (1000)")
    parser.add_argument("--items", type=int, default=3, help="line items per deal (3)")
    parser.add_argument("--scale", type=float, default=10.0, help="time scaled down by (10)")
    parser.add_argument("--concurrency", type=int, default=16, help="worker lanes (16)")
    args = parser.parse_args(argv)
    print(f"backfill benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M UTC}")
    print(f"machine: {machine()}", flush=True)
    result = run(args.deals, args.items, args.scale, args.concurrency)
    print(report(result, args.scale))
    return 0


if __name__ == "__main__":
    sys.exit(main())
