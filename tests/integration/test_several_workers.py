"""Several worker processes on one PostgreSQL: a project is worked by one at a time, so two
copies of an event delivered to two workers at once still make one vendor project."""

from __future__ import annotations

import json
import threading

import pika

from adapters.store import SqlStore
from handlers.rules import Rules
from handlers.run import Deps
from schemas.inbound import parse_inbound
from tests import builders as b
from tests.unit.memory_tool import MemoryTool
from tests.unit.test_client_races import MeetingTool
from worker.messages import Decision, Delivery
from worker.processing import Processor
from worker.topology import Topology


class SlowTool(MemoryTool):
    """Creates take a while, long enough for a second worker to arrive meanwhile."""

    def __init__(self):
        super().__init__()
        self.creating = threading.Event()
        self.finish = threading.Event()

    def create_project(self, spec):
        self.creating.set()
        self.finish.wait(10)
        return super().create_project(spec)


def worker(url: str, tool: MemoryTool, **store_options) -> Processor:
    deps = Deps(SqlStore.from_url(url, **store_options), {"harvest": tool}, Rules())
    return Processor(deps, Topology("pg", (1.0,)), source="test")


def deliver_decision(processor: Processor, event: dict) -> Decision:
    body = json.dumps(event).encode()
    delivery = Delivery(body, pika.BasicProperties(headers={}), "pg.inbound", event["type"])
    return processor.process(delivery, parse_inbound(body))


def deliver(processor: Processor, event: dict, results: list) -> None:
    decision = deliver_decision(processor, event)
    results.append([json.loads(p.body)["type"] for p in decision.publishes if p.exchange])


def test_two_workers_given_one_event_at_once_make_one_project(pg_schema_url):
    tool = SlowTool()
    first, second = worker(pg_schema_url, tool), worker(pg_schema_url, tool)
    project = b.project()
    deliver(first, b.closed_won(project), [])
    event = b.status_changed(project, "in_progress")
    results: list = []

    one = threading.Thread(target=deliver, args=(first, event, results))
    one.start()
    assert tool.creating.wait(10)
    two = threading.Thread(target=deliver, args=(second, event, results))
    two.start()
    two.join(0.5)
    assert two.is_alive()  # waiting for the first worker to finish with the project
    tool.finish.set()
    one.join(10)
    two.join(10)

    assert results == [["timesheet.provisioned"], ["timesheet.provisioned"]]
    assert len(tool.projects) == 1


def test_two_workers_resolving_one_new_client_at_once_make_one_tool_client(pg_schema_url):
    """Two processes, each its own store: only the database can keep them apart."""
    tool = MeetingTool()
    first, second = worker(pg_schema_url, tool), worker(pg_schema_url, tool)
    client = {"id": b.rid("C"), "name": b.rid("Acme")}
    projects = [b.project(client=client), b.project(client=client)]
    for processor, p in zip((first, second), projects, strict=True):
        deliver(processor, b.closed_won(p), [])
    results: list = []

    lanes = [
        threading.Thread(target=deliver, args=(w, b.status_changed(p, "in_progress"), results))
        for w, p in zip((first, second), projects, strict=True)
    ]
    for lane in lanes:
        lane.start()
    for lane in lanes:
        lane.join(30)

    assert results == [["timesheet.provisioned"], ["timesheet.provisioned"]]
    assert len(tool.clients) == 1 and len(tool.projects) == 2
