"""Metrics, probes and logs of a real worker process (issue 14): a scenario through the real
broker and the fake Harvest, then ``/metrics`` scraped over HTTP; ``/readyz`` following the
broker connection; and the process's stderr, every line of it, read back as JSON."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests import builders as b
from tests.e2e.tcp_proxy import TcpProxy


def json_lines(worker) -> list[dict]:
    """Every line the worker wrote; fails on the first that is not a JSON object."""
    parsed = []
    for number, line in enumerate(worker.logs().splitlines(), 1):
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"line {number} is not JSON: {line!r}") from None
    return parsed


def probes_origin(worker, timeout: float = 30.0) -> str:
    """http://host:port of the worker's probes, from its ``probes_serving`` line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in worker.logs().splitlines():
            if '"probes_serving"' in line:
                return "http://" + json.loads(line)["bind"]
        assert worker.process.poll() is None, worker.logs()[-3000:]
        time.sleep(0.05)
    raise AssertionError(f"no probes_serving line; log:\n{worker.logs()[-3000:]}")


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def scrape(origin: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics: (name, labels) -> value."""
    status, text = get(origin + "/metrics")
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def wait_answer(url: str, status: int, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        got, body = get(url)
        if got == status:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} answered {got} {body!r}, not {status}")
        time.sleep(0.1)


def test_metrics_count_what_a_scenario_did(bus, harvest, spawn_worker):
    won = [b.project() for _ in range(3)]
    never_won = b.project()
    worker = spawn_worker()
    origin = probes_origin(worker)
    harvest.throttle_next(1, retry_after=1)

    for project in won:
        bus.publish(b.closed_won(project))
        bus.publish(b.status_changed(project, "in_progress"))
    bus.publish(b.status_changed(never_won, "in_progress"))  # dead-lettered on its 3rd try
    bus.wait_for(3, type="timesheet.provisioned", timeout=60)
    [(headers, _)] = bus.wait_dead_letters(1)
    assert headers["x-error-code"] == "project_not_active"

    samples = scrape(origin)

    def value(name: str, **labels: str) -> float:
        return samples.get((name, frozenset(labels.items())), 0.0)

    def total(name: str, **labels: str) -> float:  # over the labels not named
        wanted = set(labels.items())
        return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)

    finished = "provisioner_events_finished_total"
    assert value(finished, type="deal.closed_won", outcome="done") == 3
    assert value(finished, type="project.status_changed", outcome="done") == 3
    assert value(finished, type="project.status_changed", outcome="retried") == 2
    assert value(finished, type="project.status_changed", outcome="dead_lettered") == 1
    assert value("provisioner_events_received_total", type="project.status_changed") == 6
    assert value("provisioner_retries_scheduled_total", code="project_not_active") == 2
    assert value("provisioner_dead_letters_total", code="project_not_active") == 1
    calls = "provisioner_vendor_request_duration_seconds_count"
    assert value(calls, vendor="harvest", method="POST", status="201") >= 3  # 3 projects
    assert total(calls, vendor="harvest", status="429") == 1
    assert value("provisioner_vendor_throttled_total", vendor="harvest") == 1
    # The 429's Retry-After held the account: the re-sent request waited on our pacer.
    assert value("provisioner_pacer_waits_total", vendor="harvest") >= 1
    assert value("provisioner_pacer_wait_seconds_total", vendor="harvest") > 0.5
    assert value("provisioner_lane_jobs_running") == 0
    assert value("provisioner_lane_jobs_waiting") == 0
    assert value("provisioner_prefetch_window") >= 1
    assert value("provisioner_ready") == 1
    assert get(origin + "/healthz") == (200, "ok\n")
    assert get(origin + "/readyz") == (200, "ok\n")


def test_readyz_follows_the_broker_connection(bus, spawn_worker):
    proxy = TcpProxy(("127.0.0.1", 5672)).start()
    worker = spawn_worker(AMQP_URL=f"amqp://guest:guest@127.0.0.1:{proxy.port}/")
    origin = probes_origin(worker)
    wait_answer(origin + "/readyz", 200)

    proxy.stop()  # the broker is gone
    assert wait_answer(origin + "/readyz", 503) == "broker not connected\n"
    assert scrape(origin)[("provisioner_ready", frozenset())] == 0
    assert get(origin + "/healthz") == (200, "ok\n")  # alive: it reconnects by itself

    proxy = TcpProxy(("127.0.0.1", 5672), proxy.port).start()
    try:
        wait_answer(origin + "/readyz", 200)
    finally:
        proxy.stop()


def test_every_line_is_json_with_its_event_and_no_secret_through_a_dropped_connection(
    bus, harvest, spawn_worker
):
    proxy = TcpProxy(("127.0.0.1", 5672)).start()
    worker = spawn_worker(AMQP_URL=f"amqp://guest:guest@127.0.0.1:{proxy.port}/")
    before, after = b.project(), b.project()
    bus.publish(b.closed_won(before))
    bus.wait_for(1, project_id=before["id"])

    proxy.stop()
    deadline = time.monotonic() + 60
    while sum('"broker_connect_failed"' in line for line in worker.logs().splitlines()) < 3:
        assert time.monotonic() < deadline, worker.logs()[-3000:]
        time.sleep(0.1)
    proxy = TcpProxy(("127.0.0.1", 5672), proxy.port).start()
    try:
        bus.publish(b.closed_won(after))
        bus.wait_for(1, project_id=after["id"], timeout=60)
        assert worker.stop() == 0
    finally:
        proxy.stop()

    lines = json_lines(worker)
    assert harvest.token not in worker.logs()
    pika = [line for line in lines if line.get("logger", "").startswith("pika")]
    assert pika and all(line["level"] in ("warning", "error") for line in pika)
    # pika's own account of each failed connect is quiet; ours is one line per attempt.
    assert not [line for line in pika if "connection_workflow" in line["logger"]]
    attempts = [line for line in lines if line["event"] == "broker_connect_failed"]
    assert [line["attempt"] for line in attempts] == list(range(1, len(attempts) + 1))
    assert all("Connection refused" in line["reason"] for line in attempts)
    assert [line["event"] for line in lines].count("connection_lost") == 1
    decided = [line for line in lines if line["event"] == "processed"]
    assert {line["project_id"] for line in decided} == {before["id"], after["id"]}
    assert all(line["event_id"] and line["type"] == "deal.closed_won" for line in decided)
