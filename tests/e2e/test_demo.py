"""``provisioner demo`` as a person runs it: a process of its own on the real broker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from worker.topology import Topology

# The outcome lines of the story, in order: (event type, project, offering, a word of detail).
STORY = [
    ("project.activated", "P-1001", "-", "offerings O-1, O-2, O-3"),
    ("timesheet.provisioned", "P-1001", "O-1", "created"),
    ("timesheet.provisioned", "P-1001", "O-2", "created"),
    ("timesheet.skipped", "P-1001", "O-3", "opted_out"),
    ("timesheet.connected", "P-1001", "O-3", "connected"),
    ("project.activated", "P-1002", "-", "offerings O-1"),
    ("timesheet.failed", "P-1002", "O-1", "client_ambiguous, dead-lettered"),
    ("dlq.replayed", "-", "-", "1 dead letter(s) by"),
    ("timesheet.provisioned", "P-1002", "O-1", "created"),
    ("timesheet.archived", "P-1001", "O-1", "project"),
    ("timesheet.archived", "P-1001", "O-2", "project"),
    ("timesheet.archived", "P-1001", "O-3", "project"),
]


def in_story_order(items: list, key) -> list:
    """``items`` with the replay's audit event put before the outcome of the event it
    replayed: the two are published by two processes (the dlq command and the worker), so
    either may reach NS.events first. Every other outcome waits for its step."""
    items = list(items)
    types = [key(i) for i in items]
    if "dlq.replayed" in types:
        at = types.index("dlq.replayed")
        if at > 0 and types[at - 1] == "timesheet.provisioned":
            items[at - 1], items[at] = items[at], items[at - 1]
    return items


# Seconds each step may take, for the runs that must succeed: the demo's 30 s is for a
# person's machine, not for CI's two busy cores.
PATIENT = ("--timeout", "120")


def demo(amqp_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AMQP_URL": amqp_url}
    # A real credential in the caller's environment must not matter: the demo drops it.
    env |= {"TOGGL_API_TOKEN": "real-looking-token", "TOGGL_WORKSPACE_ID": "42"}
    command = [sys.executable, "-m", "worker.commands", "demo", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def namespace_left(amqp_url: str, namespace: str) -> list[str]:
    """The demo's queues and exchanges still on the broker."""
    topology = Topology(namespace, (1.0, 5.0))
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    found = []
    checks = [(q, "queue") for q in topology.queues()]
    checks += [(e, "exchange") for e in topology.exchanges()]
    for name, kind in checks:
        channel = connection.channel()
        try:
            if kind == "queue":
                channel.queue_declare(name, passive=True)
            else:
                channel.exchange_declare(name, passive=True)
            found.append(name)
            channel.close()
        except ChannelClosedByBroker:
            pass
    connection.close()
    return found


@pytest.fixture
def demo_namespace(amqp_url):
    namespace = f"tdemo-{uuid.uuid4().hex[:8]}"
    yield namespace
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    Topology(namespace, (1.0, 5.0)).delete(connection.channel())
    connection.close()


def test_the_demo_tells_the_whole_story_and_leaves_nothing_behind(amqp_url, demo_namespace):
    done = demo(amqp_url, "--namespace", demo_namespace, *PATIENT)

    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split(None, 5)[1:] for line in done.stdout.splitlines() if line[:2].isdigit()]
    rows = in_story_order(rows, key=lambda r: r[0])
    assert [tuple(r[:3]) for r in rows] == [s[:3] for s in STORY]
    for row, (*_, detail) in zip(rows, STORY, strict=True):
        assert row[-1].startswith(detail) or detail in row[-1], row
    assert "$ provisioner clients map --tool harvest --crm C-78" in done.stdout
    assert "moved 1 (client_ambiguous 1)" in done.stdout
    assert done.stdout.rstrip().endswith("story complete: 12 outcome events")
    assert "toggl" not in done.stdout and done.stderr == ""
    assert namespace_left(amqp_url, demo_namespace) == []


def test_json_lines_and_keep_leave_the_topology_to_look_at(amqp_url, demo_namespace):
    done = demo(amqp_url, "--namespace", demo_namespace, "--json", "--keep", *PATIENT)

    assert done.returncode == 0, done.stdout + done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    events = in_story_order(events, key=lambda e: e["type"])
    assert [e["type"] for e in events] == [s[0] for s in STORY]
    assert all(e["source"] == "timesheet-provisioner" for e in events)
    assert "story complete" in done.stderr  # the narration goes beside the JSON, not in it
    kept = Topology(demo_namespace, (1.0, 5.0))
    essentials = {kept.work_queue, kept.dead_letter, kept.dead_letter_journal}
    assert essentials | {kept.inbound, kept.events} <= set(namespace_left(amqp_url, demo_namespace))


def test_a_step_whose_outcome_does_not_come_is_exit_1_naming_it(amqp_url, demo_namespace):
    done = demo(amqp_url, "--namespace", demo_namespace, "--timeout", "0")

    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    reason, _, log = line.partition("; worker log in ")
    assert reason == "provisioner: step 1: no project.activated P-1001 (waited up to 0 s)"
    assert Path(log).is_file()  # kept, to be read
    shutil.rmtree(Path(log).parent)
    assert namespace_left(amqp_url, demo_namespace) == []


def test_a_bad_namespace_is_exit_2_before_anything_starts(amqp_url):
    done = demo(amqp_url, "--namespace", "has space")

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("provisioner: PROVISIONER_NAMESPACE: ")
