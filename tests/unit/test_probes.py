"""``/healthz``, ``/readyz`` and ``/metrics`` of the worker (``worker.probes``), served over a
real local socket."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from worker import probes


class Worker:
    """The three looks the probes take, set by each test."""

    def __init__(self):
        self.connected = True
        self.turned_at = 0.0
        self.store_ok = True
        self.store_checks = 0
        self.now = 10.0

    def store(self) -> bool:
        self.store_checks += 1
        if self.store_ok is None:
            raise ConnectionError("database gone")
        return self.store_ok


@pytest.fixture
def worker():
    return Worker()


@pytest.fixture
def origin(worker):
    looks = probes.Probes(
        connected=lambda: worker.connected,
        turned_at=lambda: worker.turned_at,
        store_reachable=worker.store,
        clock=lambda: worker.now,
    )
    server = probes.serve(("127.0.0.1", 0), looks)
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}"
    server.shutdown()
    server.server_close()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def test_ready_when_the_broker_is_connected_and_the_store_answers(origin, worker):
    assert get(origin + "/readyz") == (200, "ok\n")

    worker.connected = False
    assert get(origin + "/readyz") == (503, "broker not connected\n")


def test_the_store_is_looked_at_every_few_seconds_not_every_scrape(origin, worker):
    get(origin + "/readyz")
    worker.store_ok = None  # raises
    assert get(origin + "/readyz") == (200, "ok\n")  # the answer of a moment ago
    assert worker.store_checks == 1

    worker.now += probes.STORE_CHECK_EVERY
    assert get(origin + "/readyz") == (503, "store unreachable\n")
    assert worker.store_checks == 2


def test_alive_while_the_loop_turns_even_without_a_broker(origin, worker):
    worker.connected = False
    worker.turned_at = worker.now - 1
    assert get(origin + "/healthz") == (200, "ok\n")

    worker.turned_at = worker.now - probes.STALL - 5
    assert get(origin + "/healthz") == (503, "loop stalled for 65 s\n")


def test_metrics_are_the_prometheus_text_format_and_other_paths_are_404(origin):
    status, text = get(origin + "/metrics")

    assert status == 200
    assert "# TYPE provisioner_lane_jobs_running gauge" in text
    assert "process_cpu_seconds_total" in text
    assert get(origin + "/")[0] == 404


def test_a_probe_that_fails_answers_500_and_the_server_goes_on(origin, worker):
    worker.connected = None
    worker.turned_at = "not a number"  # health() raises TypeError

    assert get(origin + "/healthz")[0] == 500
    assert get(origin + "/readyz") == (503, "broker not connected\n")
