"""Drives the real processing entry (``worker.processing.Processor``) without a broker:
an event in, the decision out, decoded into what the broker would be asked to do."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pika

from adapters.store import SqlStore
from handlers.rules import Rules, load_rules
from handlers.run import Deps
from schemas.errors import Unreadable
from schemas.inbound import parse_inbound
from tests.unit.memory_tool import MemoryTool
from worker.messages import Decision, Delivery
from worker.processing import Processor
from worker.topology import Topology

TOPOLOGY = Topology("unit", (1.0, 2.0))


@dataclass
class Result:
    decision: Decision

    @property
    def events(self) -> list[dict]:
        return [json.loads(p.body) for p in self.decision.publishes if not p.mandatory]

    def of(self, type_: str) -> list[dict]:
        return [e["data"] for e in self.events if e["type"] == type_]

    def by_offering(self) -> dict[str, dict]:
        return {e["data"]["offering_id"]: e for e in self.events if "offering_id" in e["data"]}

    @property
    def copy(self):
        copies = [p for p in self.decision.publishes if p.mandatory]
        return copies[0] if copies else None

    @property
    def dead_lettered(self) -> bool:
        return self.copy is not None and self.copy.routing_key == TOPOLOGY.dead_letter

    @property
    def retried(self) -> bool:
        return self.copy is not None and self.copy.routing_key.startswith("unit.retry.")


class World:
    def __init__(
        self, tmp_path: Path, rules: str | None = None, tools=("harvest",), url: str | None = None
    ):
        self.store = SqlStore.from_url(url or f"sqlite:///{tmp_path / 'state.db'}")
        self.tools = {name: MemoryTool(name) for name in tools}
        if rules is None:
            loaded = Rules()
        else:
            (tmp_path / "rules.toml").write_text(rules)
            loaded = load_rules(tmp_path / "rules.toml")
        self.deps = Deps(self.store, self.tools, loaded)
        self.processor = Processor(self.deps, TOPOLOGY, source="unit-test")

    @property
    def tool(self) -> MemoryTool:
        return self.tools["harvest"]

    def send(
        self, event: dict, attempts_before: int = 0, *, redelivered: bool = False, run_by: str = ""
    ) -> Result:
        """``redelivered`` and ``run_by``: as the broker hands a message again after a crash,
        to the connection ``run_by`` names."""
        body = json.dumps(event).encode()
        properties = pika.BasicProperties(headers={"x-attempts": attempts_before})
        delivery = Delivery(
            body, properties, "unit.inbound", event.get("type", "x"), redelivered, run_by=run_by
        )
        try:
            parsed = parse_inbound(body)
        except Unreadable as exc:
            parsed = exc
        return Result(self.processor.process(delivery, parsed))

    def retry(self, event: dict, result: Result) -> Result:
        """Delivers ``event`` again the way the retry queue would."""
        return self.send(event, attempts_before=result.copy.properties.headers["x-attempts"])
