"""Bad input, signals, broker restarts and bad settings (issue 2): the worker keeps going,
loses nothing and says clearly what is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests import builders as b
from tests.e2e.bus import rabbitmqctl, wait_until


def test_unreadable_messages_are_dead_lettered_with_their_reason(bus, start_worker):
    start_worker()
    valid_envelope = b.event("deal.closed_won", {"project": {"id": "P-1"}})  # no name, client
    unknown = b.event("deal.lost", {"project_id": "P-1"})
    huge = b.closed_won(b.project(b.offering(notes="x" * 300_000)))

    bus.publish(b"{not json", routing_key="deal.closed_won")
    bus.publish(unknown)
    bus.publish(valid_envelope)
    bus.publish(huge)
    letters = bus.wait_dead_letters(4)

    codes = sorted(h["x-error-code"] for h, _ in letters)
    assert codes == ["invalid_data", "message_too_large", "not_json", "unknown_type"]
    by_code = {h["x-error-code"]: (h, body) for h, body in letters}
    headers, body = by_code["invalid_data"]
    assert "project.name" in headers["x-error-message"]
    assert json.loads(body) == valid_envelope  # the body is kept as it was
    assert headers["x-attempts"] == 1 and headers["x-first-failed-at"]
    assert (headers["x-original-exchange"], headers["x-original-routing-key"]) == (
        bus.topology.inbound,
        "deal.closed_won",
    )
    assert "deal.lost" in by_code["unknown_type"][0]["x-error-message"]

    project = b.project()  # and the worker is still consuming
    bus.publish(b.closed_won(project))
    assert bus.wait_for(1, project_id=project["id"])[0]["type"] == "project.activated"
    assert not [o for o in bus.settle() if o["data"].get("project_id") == "P-1"]


def test_sigterm_during_a_slow_vendor_call_finishes_the_message(bus, harvest, spawn_worker):
    project = b.project()
    worker = spawn_worker()
    bus.publish(b.closed_won(project))
    bus.wait_for(1, project_id=project["id"])
    harvest.hold_answer("POST", "/v2/projects", 2.0)

    bus.publish(b.status_changed(project, "in_progress"))
    wait_until(lambda: harvest.projects, "the vendor got the create")
    worker.process.terminate()

    assert worker.process.wait(30) == 0
    [done] = bus.wait_for(1, type="timesheet.provisioned", project_id=project["id"])
    assert done["data"]["created"] is True
    assert bus.queue_depth(bus.topology.work_queue) == 0
    assert len(harvest.projects) == 1


def test_sigterm_past_the_grace_returns_the_message_and_the_next_worker_adopts(
    bus, harvest, spawn_worker
):
    project = b.project()
    worker = spawn_worker(PROVISIONER_SHUTDOWN_GRACE="0.2")
    bus.publish(b.closed_won(project))
    bus.wait_for(1, project_id=project["id"])
    harvest.hold_answer("POST", "/v2/projects", 5.0)
    bus.publish(b.status_changed(project, "in_progress"))
    wait_until(lambda: harvest.projects, "the vendor got the create")

    worker.process.terminate()
    assert worker.process.wait(30) == 0
    assert "shutdown_grace_expired" in worker.logs()
    assert not [o for o in bus.settle() if o["type"] == "timesheet.provisioned"]

    spawn_worker()
    [done] = bus.wait_for(1, type="timesheet.provisioned", project_id=project["id"])
    assert done["data"]["created"] is False  # adopted what the first worker made
    assert len(harvest.projects) == 1


def test_the_worker_reconnects_when_the_broker_drops_it(bus, namespace, start_worker):
    worker = start_worker()
    first = b.project()
    bus.publish(b.closed_won(first))
    bus.wait_for(1, project_id=first["id"])

    close_connections(f"provisioner-worker {namespace}")
    second = b.project()
    bus.publish(b.closed_won(second))

    assert bus.wait_for(1, project_id=second["id"], timeout=60)[0]["type"] == "project.activated"
    assert worker.thread.is_alive()


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "worker.commands", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_invalid_setting_stops_the_worker_with_one_line_naming_it(worker_env):
    bad = run_cli("run", **{**worker_env, "PROVISIONER_CONCURRENCY": "many"})
    half = run_cli("run", **{**worker_env, "HARVEST_ACCESS_TOKEN": ""})
    no_cpu = run_cli("run", **{**worker_env, "PROVISIONER_CPU": "4096"})

    assert bad.returncode == 2 and half.returncode == 2 and no_cpu.returncode == 2
    assert bad.stderr.count("\n") == 1 and "PROVISIONER_CONCURRENCY" in bad.stderr
    assert "HARVEST_ACCESS_TOKEN" in half.stderr
    assert no_cpu.stderr.count("\n") == 1 and "PROVISIONER_CPU: CPU 4096" in no_cpu.stderr


def test_a_rule_naming_a_tool_without_credentials_stops_the_worker(worker_env, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rules]]\nmatch = { client = "Globex*" }\ntool = "clockify"\n')

    done = run_cli("run", **{**worker_env, "PROVISIONER_RULES": str(rules)})

    assert done.returncode == 2
    assert "clockify" in done.stderr and str(rules) in done.stderr
    assert worker_env["HARVEST_ACCESS_TOKEN"] not in done.stderr


def close_connections(name: str) -> None:
    """Closes, broker-side, every connection whose client-provided name is ``name``."""
    listing = rabbitmqctl("list_connections", "pid", "client_properties")
    pids = [line.split("\t")[0] for line in listing.splitlines() if name in line]
    assert pids, f"no connection named {name!r}"
    for pid in pids:
        rabbitmqctl("close_connection", pid, "test: broker drop")
