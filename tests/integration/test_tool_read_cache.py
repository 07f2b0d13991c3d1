"""The tool adapters' short-lived read cache (``adapters.read_cache``), over HTTP against the
fakes: what a steady run of provisionings saves, and what happens when a kept id goes stale."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from adapters.read_cache import ReadCache, StaleRead
from adapters.store import SqlStore
from handlers.offerings import provision
from handlers.rules import Defaults, Rules, RulesFile
from handlers.run import Deps
from schemas.errors import VendorRejected
from schemas.inbound import Client, Offering, Project, TeamMember
from tests.integration.harness import spec_for, unique
from tests.integration.harnesses.harvest import open_harness as open_harvest


class Provisioning:
    """The real handler on a SQLite store, for offerings of one CRM client."""

    def __init__(self, tool, directory: Path):
        self.tool = tool
        self.store = SqlStore.from_url(f"sqlite:///{directory / f'{uuid.uuid4().hex}.db'}")
        self.rules = Rules(RulesFile(defaults=Defaults(tool=tool.name)))
        self.deps = Deps(store=self.store, tools={tool.name: tool}, rules=self.rules)
        self.client = Client(id=f"C-{uuid.uuid4().hex[:6]}", name=unique("Acme"))
        self.project = Project(id=f"P-{uuid.uuid4().hex[:6]}", name="Site", client=self.client)

    def offering(self, team: list[str]):
        offering = Offering(
            id=f"O-{uuid.uuid4().hex[:6]}",
            name=unique("Discovery"),
            budget_hours=40,
            team=[TeamMember(email=e) for e in team],
        )
        project = self.project.model_copy(update={"offerings": [offering]})
        return project, offering

    def provision(self, project, offering):
        plan = self.rules.plan_for(project, offering)
        return provision(project, offering, plan, self.deps).outcomes[0]


def calls(fake, action) -> int:
    before = len(fake.log)
    action()
    return len(fake.log) - before


def test_a_mapped_clients_next_provisioning_costs_fewer_calls_once_the_users_are_kept(
    harness, tmp_path
):
    team = [f"{uuid.uuid4().hex[:8]}@example.com" for _ in range(2)]
    for email in team:
        harness.add_user(email)
    cold, warm = harness.tool(), harness.tool()
    cold.reads = ReadCache(ttl=0)  # reads everything every time: the floor before the cache
    costs = {}
    for name, tool in (("cold", cold), ("warm", warm)):
        run = Provisioning(tool, tmp_path)
        run.provision(*run.offering(team))  # the new client, and the first read of the users
        costs[name] = calls(harness.fake, lambda run=run: run.provision(*run.offering(team)))

    assert costs["warm"] < costs["cold"]
    assert len(harness.projects()) == 4


def test_a_user_deactivated_since_being_kept_fails_once_then_is_read_afresh(tmp_path):
    harvest = open_harvest()
    try:
        fake, tool = harvest.fake, harvest.tool()
        email = f"{uuid.uuid4().hex[:8]}@example.com"
        user_id = fake.add_user(email)
        run = Provisioning(tool, tmp_path)
        assert run.provision(*run.offering([email])).team_assigned == [email]
        with fake.lock:
            fake.users[user_id]["is_active"] = False  # deactivated in Harvest meanwhile

        project, offering = run.offering([email])
        with pytest.raises(StaleRead):
            run.provision(project, offering)  # the kept id: refused, and dropped
        again = run.provision(project, offering)  # the redelivery reads the users afresh

        assert again.team_assigned == [] and again.team_missing == [email]
        assert not again.created  # the project the first attempt made is adopted
        assert fake.requests_to("POST", r"/v2/projects") == 2
    finally:
        harvest.fake.stop()


def test_a_task_deleted_and_made_again_since_being_kept_is_read_afresh_once():
    harvest = open_harvest()
    try:
        fake, tool = harvest.fake, harvest.tool()
        name = unique("Design")
        old = fake.add_task(name)
        client = tool.create_client(unique("Acme"))
        spec = spec_for(client.id, options={"tasks": [name]})
        tool.complete_setup(tool.create_project(spec).id, spec)  # the task id is kept
        with fake.lock:
            del fake.tasks[old]  # deleted in Harvest, and a new one of that name made
        new = fake.add_task(name)

        second = spec_for(client.id, options={"tasks": [name]})
        made = tool.create_project(second)  # served from the kept id: no GET /tasks
        tasks_read = fake.requests_to("GET", r"/v2/tasks")
        tool.complete_setup(made.id, second)

        with fake.lock:
            assigned = [
                a["task"]["id"]
                for a in fake.task_assignments.values()
                if a["project"]["id"] == int(made.id)
            ]
        assert assigned == [new]
        assert fake.requests_to("GET", r"/v2/tasks") == tasks_read + 1
    finally:
        harvest.fake.stop()


def test_a_task_archived_since_being_kept_is_refused_with_its_name():
    harvest = open_harvest()
    try:
        fake, tool = harvest.fake, harvest.tool()
        name = unique("Design")
        task = fake.add_task(name)
        client = tool.create_client(unique("Acme"))
        spec = spec_for(client.id, options={"tasks": [name]})
        tool.complete_setup(tool.create_project(spec).id, spec)
        with fake.lock:
            fake.tasks[task]["is_active"] = False

        second = spec_for(client.id, options={"tasks": [name]})
        made = tool.create_project(second)
        with pytest.raises(VendorRejected, match="is archived"):
            tool.complete_setup(made.id, second)
    finally:
        harvest.fake.stop()


def test_kept_users_are_read_again_once_the_ttl_has_passed(harness):
    now = [1000.0]
    tool = harness.tool()
    tool.reads = ReadCache(ttl=60, clock=lambda: now[0])
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    user_id = harness.add_user(email)

    first = calls(harness.fake, lambda: tool.find_users([email]))
    now[0] += 59
    within = calls(harness.fake, lambda: tool.find_users([email]))
    now[0] += 2
    after = calls(harness.fake, lambda: tool.find_users([email]))

    assert (first, within) == (1, 0) and after == first
    assert tool.find_users([email]) == {email: user_id}


def test_an_address_the_tool_did_not_know_is_looked_up_again_not_remembered(harness):
    tool = harness.tool()
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    assert tool.find_users([email]) == {}
    user_id = harness.add_user(email)  # invited since
    assert tool.find_users([email]) == {email: user_id}
