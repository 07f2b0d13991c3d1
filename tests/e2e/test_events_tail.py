"""``provisioner events tail`` on the real broker, as a separate process: it prints the
worker's outcome events as they come, filters by type glob, stops cleanly on a signal, and
says so (exit 1) when the broker or the namespace is not there."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from tests import builders as b
from tests.e2e.tcp_proxy import TcpProxy
from worker.asyncapi import example_event
from worker.topology import connection_parameters

LINE_TIMEOUT = 30.0  # generous: the machine is shared


class Tail:
    """``python -m worker.commands events tail ARGS``; its lines read with deadlines."""

    def __init__(self, env: dict[str, str], *args: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.commands", "events", "tail", *args],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.errors: list[str] = []
        self.ready = threading.Event()
        self.readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.lines.put)),
            threading.Thread(target=self._read, args=(self.process.stderr, self._stderr)),
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, put) -> None:
        for line in stream:
            put(line.rstrip("\n"))

    def _stderr(self, line: str) -> None:
        self.errors.append(line)
        if "listening on" in line:
            self.ready.set()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + LINE_TIMEOUT
        while not self.ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"tail never listened; stderr: {self.errors}")

    def next_line(self) -> str:
        try:
            return self.lines.get(timeout=LINE_TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no line within {LINE_TIMEOUT}s; stderr: {self.errors}") from None

    def wait(self) -> int:
        """The exit status, once the process and its pipes are done."""
        status = self.process.wait(LINE_TIMEOUT)
        for reader in self.readers:
            reader.join(LINE_TIMEOUT)
        return status

    def remaining_lines(self) -> list[str]:
        self.wait()
        return [self.lines.get_nowait() for _ in range(self.lines.qsize())]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def tail(worker_env):
    started: list[Tail] = []

    def start(*args: str, **env: str) -> Tail:
        t = Tail({**worker_env, **env}, *args)
        started.append(t)
        return t

    yield start
    for t in started:
        t.kill()


def publish_outcome(bus, event_type: str, project_id: str) -> dict:
    """An outcome event on NS.events, as the worker would publish it."""
    event = example_event(event_type)
    event = {**event, "id": b.rid("e"), "data": {**event["data"], "project_id": project_id}}
    bus.channel.basic_publish(bus.topology.events, event_type, json.dumps(event).encode())
    return event


def test_json_lines_are_the_workers_outcome_events_as_they_come(bus, start_worker, tail):
    t = tail("--json")
    t.wait_ready()
    start_worker()
    project = b.project(b.offering("Discovery"))

    bus.publish(b.closed_won(project))

    printed = json.loads(t.next_line())
    [on_the_bus] = bus.wait_for(1, project_id=project["id"])
    assert printed == on_the_bus
    assert printed["type"] == "project.activated"


def test_a_readable_line_names_time_type_project_offering_tool_and_outcome(bus, tail):
    t = tail()
    t.wait_ready()

    publish_outcome(bus, "timesheet.provisioned", "P-7")
    publish_outcome(bus, "timesheet.failed", "P-8")

    provisioned, failed = t.next_line(), t.next_line()
    assert provisioned.split() == [
        *("2026-11-29", "10:00:00Z", "timesheet.provisioned", "P-7", "O-1", "harvest"),
        "timesheet_project_id=19258455",
    ]
    assert failed.split()[2:7] == [
        *("timesheet.failed", "P-8", "O-1", "harvest"),
        "code=vendor_unavailable",
    ]


@pytest.mark.parametrize(
    ("globs", "wanted"),
    [
        (["timesheet.*"], ["timesheet.skipped", "timesheet.failed"]),
        (["*.failed", "project.activated"], ["project.activated", "timesheet.failed"]),
        (["timesheet.failed"], ["timesheet.failed"]),  # exact: bound as the routing key
    ],
    ids=["glob", "two-globs", "exact"],
)
def test_type_globs_print_only_the_matching_events_and_count_ends_it(bus, tail, globs, wanted):
    args = [a for g in globs for a in ("--type", g)]
    t = tail("--json", "--count", str(len(wanted)), *args)
    t.wait_ready()

    for event_type in ("project.activated", "timesheet.skipped", "timesheet.failed"):
        publish_outcome(bus, event_type, "P-1")

    assert t.wait() == 0, t.errors
    assert [json.loads(line)["type"] for line in t.remaining_lines()] == wanted


def test_a_timeout_before_the_count_is_reached_is_exit_1(bus, tail):
    t = tail("--count", "2", "--timeout", "1")
    t.wait_ready()
    publish_outcome(bus, "timesheet.skipped", "P-1")

    assert t.wait() == 1
    assert t.errors[-1] == "provisioner: 1 of 2 event(s) came within 1 s"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_it_cleanly_with_exit_0(bus, tail, sig):
    t = tail()
    t.wait_ready()

    t.process.send_signal(sig)

    assert t.wait() == 0
    assert not [e for e in t.errors if "Traceback" in e or "Error" in e], t.errors


def test_a_mistyped_namespace_is_exit_1_and_declares_nothing(amqp_url, tail):
    missing = f"nosuch{os.getpid()}"
    t = tail(PROVISIONER_NAMESPACE=missing)

    assert t.wait() == 1
    assert t.errors == [
        f"provisioner: {missing}.events does not exist: is PROVISIONER_NAMESPACE right? "
        "(the worker declares it when it starts)"
    ]
    connection = pika.BlockingConnection(connection_parameters(amqp_url))
    try:
        with pytest.raises(ChannelClosedByBroker) as gone:
            connection.channel().exchange_declare(f"{missing}.events", passive=True)
        assert gone.value.reply_code == 404
    finally:
        if connection.is_open:
            connection.close()


def test_an_unreachable_broker_is_one_line_without_the_password(tail):
    t = tail(AMQP_URL="amqp://ops:hunter2-secret@127.0.0.1:1/")

    assert t.wait() == 1
    assert len(t.errors) == 1 and "broker unreachable at 127.0.0.1:1" in t.errors[0]
    assert "hunter2" not in t.errors[0]


def test_losing_the_broker_mid_tail_is_exit_1_with_one_line(bus, tail):
    proxy = TcpProxy(("127.0.0.1", 5672)).start()
    try:
        t = tail(AMQP_URL=f"amqp://guest:guest@127.0.0.1:{proxy.port}/")
        t.wait_ready()
    finally:
        proxy.stop()  # every connection through it closes, as a dead broker's would

    assert t.wait() == 1
    assert t.errors[-1].startswith("provisioner: lost the broker: "), t.errors
    assert not [e for e in t.errors if "Traceback" in e]


def test_a_message_that_is_no_cloudevent_is_passed_over_with_a_note(bus, tail):
    t = tail("--json", "--count", "1")
    t.wait_ready()

    bus.channel.basic_publish(bus.topology.events, "timesheet.failed", b"\xff not json")
    good = publish_outcome(bus, "timesheet.failed", "P-2")

    assert t.wait() == 0
    assert [json.loads(line) for line in t.remaining_lines()] == [good]
    assert any("passed over a message that is no CloudEvent" in e for e in t.errors)
