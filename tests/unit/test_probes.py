"""``/healthz``, ``/readyz`` and ``/metrics`` of the worker (``worker.probes``), served over a
real local socket."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import pytest

from worker import probes


class Worker:
    """The looks the probes take, set by each test; the store answers ``store_ok`` (None:
    raises) once ``store_gate`` is open."""

    def __init__(self):
        self.connected = True
        self.turned_at = time.monotonic()
        self.store_ok = True
        self.store_gate = threading.Event()
        self.store_gate.set()
        self.store_checks = 0

    def store(self) -> bool:
        self.store_checks += 1
        self.store_gate.wait(30)
        if self.store_ok is None:
            raise ConnectionError("database gone")
        return self.store_ok


@pytest.fixture
def worker():
    return Worker()


@pytest.fixture
def serve(worker):
    """``serve(every=…, timeout=…)``: the probes over HTTP; returns their origin."""
    servers = []

    def start(every: float = 60.0, timeout: float = 5.0) -> str:
        looks = probes.Probes(
            connected=lambda: worker.connected,
            turned_at=lambda: worker.turned_at,
            store=probes.StoreCheck(worker.store, every=every, timeout=timeout),
        )
        server = probes.serve(("127.0.0.1", 0), looks)
        servers.append(server)
        host, port = server.server_address[:2]
        return f"http://{host}:{port}"

    yield start
    worker.store_gate.set()
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def origin(serve):
    return serve()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def wait_answer(url: str, expected: tuple[int, str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := get(url)) != expected:
        assert time.monotonic() < deadline, got
        time.sleep(0.01)


def test_ready_when_the_broker_is_connected_and_the_store_answers(origin, worker):
    wait_answer(origin + "/readyz", (200, "ok\n"))

    worker.connected = False
    assert get(origin + "/readyz") == (503, "broker not connected\n")


def test_the_store_is_asked_every_few_seconds_not_every_scrape(serve, worker):
    origin = serve(every=60.0)
    wait_answer(origin + "/readyz", (200, "ok\n"))
    worker.store_ok = None  # raises from now on

    for _ in range(5):
        assert get(origin + "/readyz") == (200, "ok\n")  # the answer of a moment ago
    assert worker.store_checks == 1


def test_a_store_that_fails_makes_the_worker_unready(serve, worker):
    origin = serve(every=0.0)
    wait_answer(origin + "/readyz", (200, "ok\n"))

    worker.store_ok = None
    wait_answer(origin + "/readyz", (503, "store unreachable\n"))


def test_a_store_that_hangs_makes_the_worker_unready_and_the_probes_stay_quick(serve, worker):
    origin = serve(every=0.0, timeout=0.3)
    wait_answer(origin + "/readyz", (200, "ok\n"))

    worker.store_gate.clear()  # the next look never returns
    wait_answer(origin + "/readyz", (503, "store unreachable\n"))
    started = time.monotonic()
    assert get(origin + "/healthz") == (200, "ok\n")
    assert time.monotonic() - started < 1.0


def test_alive_while_the_loop_turns_even_without_a_broker(origin, worker):
    worker.connected = False
    assert get(origin + "/healthz") == (200, "ok\n")

    worker.turned_at = time.monotonic() - probes.STALL - 5
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
