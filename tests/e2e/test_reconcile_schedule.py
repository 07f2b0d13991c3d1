"""``provisioner crm reconcile --every`` end to end: replicas as processes on the real
RabbitMQ against the fake HubSpot (a latency makes each sweep last), their structured log
lines read back as data. No worker is needed: what matters here is who sweeps when."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from tests.builders import rid
from tests.e2e.bus import wait_until
from tests.e2e.crm_stack import IN_PROGRESS
from tests.e2e.ingress import free_port

pytestmark = pytest.mark.broker

EVERY = 1.0  # seconds between ticks of the replicas under test


class Replica:
    """``provisioner crm reconcile --every 1s --crm hubspot`` as a process, JSON log lines
    to a file."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.commands", "crm", "reconcile", "--crm", "hubspot",
             "--every", f"{EVERY}s"],
            env={**os.environ, **env, "LOG_FORMAT": "json"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.killed_at: float | None = None

    def lines(self) -> list[dict]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue  # a line of a library that does not log through structlog
        return found

    def events(self, name: str) -> list[float]:
        return [stamp(line) for line in self.lines() if line.get("event") == name]

    def sweeps(self) -> list[tuple[float, float]]:
        """(start, end) of each sweep; one cut short by a kill ends at the kill."""
        starts = self.events("reconcile_sweep_started")
        ends = sorted(
            self.events("reconcile_sweep_finished") + self.events("reconcile_sweep_abandoned")
        )
        if len(ends) < len(starts):
            ends.append(self.killed_at if self.killed_at is not None else time.time())
        return list(zip(starts, ends, strict=True))

    def sweeping(self) -> bool:
        starts = self.events("reconcile_sweep_started")
        ends = self.events("reconcile_sweep_finished") + self.events("reconcile_sweep_abandoned")
        return len(starts) > len(ends)

    def kill(self) -> None:
        self.process.kill()
        self.killed_at = time.time()
        self.process.wait(10)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        status = self.process.wait(30)
        self.log.close()
        return status


def stamp(line: dict) -> float:
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


@pytest.fixture
def replicas(crm_env, tmp_path, bus):
    """Starts replicas (``replicas(**env_overrides)``); kills what is left afterwards, before
    the namespace (and with it the lock) is deleted."""
    started: list[Replica] = []

    def start(**overrides: str) -> Replica:
        replica = Replica({**crm_env, **overrides}, tmp_path / f"reconcile{len(started)}.log")
        started.append(replica)
        return replica

    yield start
    for replica in started:
        if replica.process.poll() is None:
            replica.process.kill()
            replica.process.wait()
        replica.log.close()


def deal_in_delivery(hubspot) -> str:
    company = hubspot.add_company(rid("Swept Co"))
    return hubspot.add_deal(rid("Deal"), IN_PROGRESS, company=company, line_items=[])


def test_two_replicas_never_sweep_at_once_and_one_takes_over_when_the_holder_is_killed(
    replicas, hubspot
):
    deal_in_delivery(hubspot)
    hubspot.latency = 0.4  # each request: a sweep outlasts the moment both replicas try
    first, second = replicas(), replicas()
    both = (first, second)

    def skips() -> int:
        return sum(len(r.events("reconcile_skipped_locked")) for r in both)

    def finished() -> int:
        return sum(len(r.events("reconcile_sweep_finished")) for r in both)

    wait_until(lambda: finished() >= 3 and skips() >= 1, "3 sweeps and a skip", timeout=40)

    hubspot.latency = 2.0  # a long sweep, so that the kill lands inside one
    wait_until(lambda: any(r.sweeping() for r in both), "a sweep under way", timeout=20)
    holder = next(r for r in both if r.sweeping())
    survivor = second if holder is first else first
    holder.kill()
    hubspot.latency = 0.4

    def took_over() -> bool:
        return any(s > holder.killed_at for s in survivor.events("reconcile_sweep_started"))

    wait_until(took_over, "the survivor sweeps after the kill", timeout=20)
    taken = min(s for s in survivor.events("reconcile_sweep_started") if s > holder.killed_at)
    # The broker frees the lock with the killed connection: the next tick or the one after.
    assert taken - holder.killed_at < 2 * EVERY + 1.0, taken - holder.killed_at
    wait_until(lambda: not survivor.sweeping(), "the survivor's sweep ends", timeout=20)

    assert survivor.stop() == 0
    sweeps = sorted(s for r in both for s in r.sweeps())
    overlaps = [(a, b) for a, b in itertools.pairwise(sweeps) if b[0] < a[1]]
    assert overlaps == [] and len(sweeps) >= 4


def test_the_metrics_show_the_last_success_and_sigterm_mid_sweep_exits_0(replicas, hubspot):
    deal_in_delivery(hubspot)
    port = free_port()
    began = time.time()
    replica = replicas(PROVISIONER_METRICS_BIND=f"127.0.0.1:{port}")
    wait_until(lambda: replica.events("reconcile_sweep_finished"), "a sweep", timeout=30)

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
        assert answer.status == 200

    values = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("provisioner_")
    )
    last = float(values['provisioner_reconcile_last_success_timestamp_seconds{crm="hubspot"}'])
    assert began <= last <= time.time()
    assert float(values["provisioner_reconcile_interval_seconds"]) == EVERY
    assert float(values['provisioner_reconcile_sweeps_total{crm="hubspot",outcome="ok"}']) >= 1
    assert float(values['provisioner_reconcile_deals_published_total{crm="hubspot"}']) >= 1
    assert "provisioner_events_received" not in text  # the worker's registry is not served

    hubspot.latency = 3.0
    wait_until(replica.sweeping, "a sweep under way", timeout=20)
    replica.process.send_signal(signal.SIGTERM)

    assert replica.process.wait(15) == 0
    assert len(replica.events("reconcile_sweep_abandoned")) == 1  # cut short, cursor kept
    assert replica.events("reconcile_stopped")
