"""End-to-end fixtures: a namespace of our own on the real RabbitMQ, a fake Harvest over
HTTP, and the real worker (the same composition root as production) in a thread or in a
separate process."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pika
import pytest
import structlog

from fakes.harvest import FakeHarvest
from tests.e2e.bus import DEADLINE, Bus
from tests.e2e.crm_stack import (  # noqa: F401 - fixtures of the CRM stories, shared
    crm_env,
    hubspot,
    pipedrive,
    salesforce,
    stack,
    start_ingress,
)
from worker import bootstrap
from worker.settings import Settings
from worker.topology import Topology

RETRY_DELAYS = "0.2,0.4"


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def harvest():
    with FakeHarvest(rate_limit=(1000, 1.0)) as fake:
        yield fake


@pytest.fixture
def worker_env(namespace, tmp_path, harvest, amqp_url) -> dict[str, str]:
    """The environment a worker gets: the contract's variables, pointed at the fakes."""
    return {
        "AMQP_URL": amqp_url,
        "PROVISIONER_NAMESPACE": namespace,
        "PROVISIONER_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "PROVISIONER_RETRY_DELAYS": RETRY_DELAYS,
        "PROVISIONER_CONCURRENCY": "4",
        "HARVEST_ACCOUNT_ID": harvest.account_id,
        "HARVEST_ACCESS_TOKEN": harvest.token,
        "HARVEST_BASE_URL": f"{harvest.origin}/v2",
        "HARVEST_RATE_LIMIT": "1000/1",
        # Any free port: workers of parallel tests (and test runs) never collide on 9464.
        "PROVISIONER_METRICS_BIND": "127.0.0.1:0",
    }


@pytest.fixture
def other_delays() -> list[str]:
    """PROVISIONER_RETRY_DELAYS values a test's workers used, so their queues go too."""
    return []


@pytest.fixture
def bus(amqp_url, worker_env, other_delays):
    topology = Topology(
        worker_env["PROVISIONER_NAMESPACE"], tuple(float(d) for d in RETRY_DELAYS.split(","))
    )
    b = Bus(amqp_url, topology)
    yield b
    b.delete_namespace(extra_delays=[float(d) for v in other_delays for d in v.split(",")])


class ThreadWorker:
    def __init__(self, env: dict[str, str]):
        # The worker's log lines go to the process's real stderr (pytest shows them with a
        # failure), never into the sys.stdout that a test reads a command's output from.
        structlog.reset_defaults()  # whatever an earlier test configured (worker.logs)
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.__stderr__))
        self.settings = Settings(**env)
        self.deps = bootstrap.build_deps(self.settings)
        self.consumer = bootstrap.build_consumer(self.settings, self.deps)
        self.thread = threading.Thread(target=self.consumer.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.consumer.stop()
        self.thread.join(15)
        assert not self.thread.is_alive(), "worker did not stop"
        self.deps.store.close()


@pytest.fixture
def start_worker(worker_env, other_delays):
    """Starts the worker in this process: ``start_worker(**env_overrides)``."""
    started: list[ThreadWorker] = []

    def start(**overrides: str) -> ThreadWorker:
        if "PROVISIONER_RETRY_DELAYS" in overrides:
            other_delays.append(overrides["PROVISIONER_RETRY_DELAYS"])
        w = ThreadWorker({**worker_env, **overrides})
        started.append(w)
        return w

    yield start
    for w in started:
        if w.thread.is_alive():
            w.stop()


class ProcessWorker:
    """``provisioner run`` as a separate process, for signals and crashes."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.commands", "run"],
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = DEADLINE) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.logs():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged; log:\n{self.logs()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(30)


@pytest.fixture
def spawn_worker(worker_env, tmp_path, other_delays):
    spawned: list[ProcessWorker] = []

    def spawn(**overrides: str) -> ProcessWorker:
        if "PROVISIONER_RETRY_DELAYS" in overrides:
            other_delays.append(overrides["PROVISIONER_RETRY_DELAYS"])
        w = ProcessWorker({**worker_env, **overrides}, tmp_path / f"worker{len(spawned)}.log")
        spawned.append(w)
        return w

    yield spawn
    for w in spawned:
        if w.process.poll() is None:
            w.process.kill()
            w.process.wait()


@pytest.fixture
def partitioned(amqp_url, namespace):
    """Topologies with partitions (``partitioned(count)``); their partition queues and
    exchange go afterwards (the ``bus`` fixture removes the rest of the namespace)."""
    counts: list[int] = []

    def topology(count: int) -> Topology:
        counts.append(count)
        return Topology(namespace, tuple(float(d) for d in RETRY_DELAYS.split(",")), count)

    yield topology
    if counts:
        topo = Topology(namespace, (), max(counts))
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        channel = connection.channel()
        for partition in range(max(counts)):
            channel.queue_delete(topo.partition_queue(partition))
        channel.exchange_delete(topo.partition_exchange)
        connection.close()
