"""One run of the show: the services, the workers as processes, the load, the verdict.

A fake Harvest (real HTTP, in this process), a fresh PostgreSQL schema, a fresh namespace on
the broker, ``workers`` processes of ``python -m worker.commands run`` sharing all three and
the Redis pacing budget, and a seeded scenario (``tests.scale_show.scenario``) published in
one go with publisher confirms. With ``kill``, one worker is SIGKILLed once ``kill_at`` of
the events have outcomes, and another started in its place. The victim is chosen when it is
killed, by what it holds then: a worker that has processed events and owns partitions with
messages still in them (a worker that started late on a busy machine may own nothing yet, so
a victim named in advance could hold nothing and the kill would prove nothing). Everything
made is removed afterwards; the workers' logs stay in ``directory`` when the run found a
problem.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pika

from fakes.harvest import FakeHarvest
from tests.chaos.evidence import harvest_marker
from tests.e2e.bus import Bus, rabbitmqctl
from tests.postgres import fresh_schema
from tests.scale_show import scenario as sc
from tests.scale_show.verdict import VendorProject, check, out_of_order
from worker.topology import Topology

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Generous, so that an event of a project whose Closed Won another worker still holds is
# retried until it is active, never dead-lettered for that: the old path's worst case.
RETRY_DELAYS = "0.5,1,2,4,8"
QUIET = 3.0  # seconds without a new outcome after the last expected one: proves an absence
# Seconds without a new outcome, every queue of the namespace empty, before a run that still
# misses outcomes is judged as it is: an event handled out of order may cause none at all.
STALL = 10.0
LOOK_EVERY = 1.0  # seconds between looks for a victim (each asks rabbitmqctl)


@dataclass
class Options:
    events: int = 1000
    projects: int = 200
    workers: int = 3
    partitions: int = 6
    concurrency: int = 8
    kill: bool = False
    kill_at: float = 0.25  # share of the events with outcomes when one worker is killed
    seed: int | None = None
    timeout: float = 600.0
    amqp_url: str = AMQP_URL
    postgres_url: str = POSTGRES_URL
    redis_url: str = REDIS_URL


@dataclass
class Result:
    seed: int
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    publications: int = 0
    copies: int = 0
    outcomes: int = 0
    vendor_projects: int = 0
    out_of_order: int = 0  # projects whose outcomes went back in their order
    killed: int | None = None  # pid of the worker killed mid-run
    worked: list[int] = field(default_factory=list)  # events each worker processed (its log)
    directory: Path | None = None  # the workers' logs, kept when there were problems


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "worker.commands", "run"],
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def processed(self) -> int:
        return self.log_path.read_text(errors="replace").count('"event": "processed"')

    def partitions(self) -> list[int]:
        """The partitions its last ``partitions_assigned`` line says it owns."""
        owned: list[int] = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if "partitions_assigned" in line:
                with contextlib.suppress(ValueError):
                    owned = json.loads(line).get("partitions", owned)
        return owned

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def delete_namespace(bus: Bus, namespace: str) -> None:
    """Every queue and exchange of the namespace, whatever made them (partition queues and
    their exchange included): the broker is shared, nothing of ours may stay."""
    channel = bus.connection.channel()
    for queue in rabbitmqctl("list_queues", "name", "--no-table-headers").split():
        if queue.startswith(f"{namespace}."):
            channel.queue_delete(queue)
    for exchange in rabbitmqctl("list_exchanges", "name", "--no-table-headers").split():
        if exchange.startswith(f"{namespace}."):
            channel.exchange_delete(exchange)
    channel.close()
    bus.delete_namespace()


def run(options: Options) -> Result:
    seed = options.seed if options.seed is not None else random.randrange(2**32)
    scenario = sc.build(random.Random(seed), options.events, options.projects)
    result = Result(seed, publications=len(scenario.publications), copies=scenario.copies)
    directory = Path(tempfile.mkdtemp(prefix=f"scale-show-{seed}-"))
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        harvest = stack.enter_context(FakeHarvest(rate_limit=None))
        for email in sc.TEAM:
            harvest.add_user(email)
        refs = {p.placeholder: _premake(harvest, p) for p in scenario.premade}
        database_url = stack.enter_context(fresh_schema(options.postgres_url, "scale"))
        namespace = f"scale{uuid.uuid4().hex[:10]}"
        delays = tuple(float(d) for d in RETRY_DELAYS.split(","))
        bus = Bus(options.amqp_url, Topology(namespace, delays))
        stack.callback(delete_namespace, bus, namespace)
        env = {
            "AMQP_URL": options.amqp_url,
            "PROVISIONER_NAMESPACE": namespace,
            "PROVISIONER_DATABASE_URL": database_url,
            "PROVISIONER_RETRY_DELAYS": RETRY_DELAYS,
            "PROVISIONER_CONCURRENCY": str(options.concurrency),
            "PROVISIONER_PARTITIONS": str(options.partitions),
            "PROVISIONER_PACING_URL": options.redis_url,
            "PROVISIONER_METRICS_BIND": "off",
            "PROVISIONER_SHUTDOWN_GRACE": "5",
            "HARVEST_ACCOUNT_ID": harvest.account_id,
            "HARVEST_ACCESS_TOKEN": harvest.token,
            "HARVEST_BASE_URL": f"{harvest.origin}/v2",
            "HARVEST_RATE_LIMIT": "1000/1",
        }
        workers: list[WorkerProcess] = []

        def spawn() -> WorkerProcess:
            w = WorkerProcess(env, directory / f"worker{len(workers)}.log")
            workers.append(w)
            stack.callback(w.stop)
            return w

        for _ in range(options.workers):
            spawn()
        _publish(bus, scenario.with_refs(refs))
        distinct = {e for ids in scenario.order.values() for e in ids}

        progress = {"count": 0, "at": time.monotonic(), "asked": 0.0}

        def caused(share: float):
            def enough(outcomes: list[dict]) -> bool:
                seen = {o.get("causationid") for o in outcomes}
                if len(distinct & seen) >= share * len(distinct):
                    return True
                now = time.monotonic()
                if len(outcomes) != progress["count"]:
                    progress.update(count=len(outcomes), at=now)
                    return False
                if now - progress["at"] < STALL or now - progress["asked"] < 2.0:
                    return False
                progress["asked"] = now
                return share == 1.0 and _drained(namespace)

            return enough

        deadline = time.monotonic() + options.timeout
        chosen: list[WorkerProcess] = []
        looked = {"at": 0.0}

        def victim_found(outcomes: list[dict]) -> bool:
            """Once ``kill_at`` of the events have outcomes: a worker holding work right now."""
            if not caused(options.kill_at)(outcomes):
                return False
            if time.monotonic() - looked["at"] < LOOK_EVERY:
                return False
            looked["at"] = time.monotonic()
            victim = _holding_work(workers, namespace)
            chosen[:] = [victim] if victim else []
            return victim is not None

        try:
            if options.kill:
                bus.wait_until(victim_found, deadline - time.monotonic())
                [victim] = chosen
                victim.kill()
                result.killed = victim.process.pid
                spawn()
            bus.wait_until(caused(1.0), deadline - time.monotonic())
        except AssertionError as exc:  # a timeout: say how far it got, then judge the rest
            result.problems.append(str(exc)[:300])
        outcomes = bus.settle(QUIET)
        result.seconds = time.monotonic() - started
        dead = len(bus.dead_letters())
        with harvest.lock:
            projects = [
                VendorProject(str(p["id"]), harvest_marker(p), p["is_active"])
                for p in harvest.projects.values()
            ]
            client_names = [c["name"] for c in harvest.clients.values()]
        for i, w in enumerate(workers):
            if w.process.poll() is not None and w.process.pid != result.killed:
                result.problems.append(f"worker{i} exited by itself ({w.process.returncode})")
        result.problems += check(scenario, outcomes, projects, client_names, dead, refs)
        result.worked = [w.log_path.read_text().count('"event": "processed"') for w in workers]
        killed = [i for i, w in enumerate(workers) if w.process.pid == result.killed]
        if options.kill and (not killed or result.worked[killed[0]] == 0):
            # Then the kill proved nothing. (The replacement may find little left to do: the
            # survivors take the victim's partitions as soon as its session is gone.)
            result.problems.append(f"the kill missed: events processed by worker {result.worked}")
        result.outcomes = len(outcomes)
        result.vendor_projects = sum(1 for p in projects if p.code)
        result.out_of_order = len(out_of_order(scenario, outcomes))
    if result.problems:
        result.directory = directory
    else:
        shutil.rmtree(directory, ignore_errors=True)
    return result


def _holding_work(workers: list[WorkerProcess], namespace: str) -> WorkerProcess | None:
    """The live worker that has processed events and whose partitions hold the most messages
    (ready or unacked) right now, if any does."""
    depths = _depths(namespace)
    best, most = None, 0
    for w in workers:
        if w.process.poll() is not None or not w.processed():
            continue
        held = sum(depths.get(f"{namespace}.partition.{p}", 0) for p in w.partitions())
        if held > most:
            best, most = w, held
    return best


def _depths(namespace: str) -> dict[str, int]:
    """Messages (ready and unacked) in each queue of the namespace, as the broker says."""
    rows = rabbitmqctl("list_queues", "name", "messages", "--no-table-headers").splitlines()
    return {row.split()[0]: int(row.split()[1]) for row in rows if row.startswith(f"{namespace}.")}


def _drained(namespace: str) -> bool:
    """Every queue of the namespace is empty, nothing unacked (what the broker says)."""
    return all(count == 0 for count in _depths(namespace).values())


def _premake(harvest: FakeHarvest, premade: sc.Premade) -> str:
    """A project a person made in Harvest before, under the client the CRM client maps to."""
    with harvest.lock:
        client_id = next(
            (cid for cid, c in harvest.clients.items() if c["name"] == premade.client_name), None
        )
    if client_id is None:
        client_id = harvest.add_client(premade.client_name)
    return str(harvest.add_project(client_id, premade.name))


def _publish(bus: Bus, publications: list[sc.Publication]) -> None:
    """Every publication in order, each confirmed by the broker (the bus channel confirms)."""
    for p in publications:
        properties = pika.BasicProperties(
            content_type="application/cloudevents+json",
            delivery_mode=2,
            message_id=p.event_id,
            type=p.routing_key,
        )
        bus.channel.basic_publish(bus.topology.inbound, p.routing_key, p.body, properties)
