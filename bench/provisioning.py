"""The hourly quotas and the calls one provisioning costs, for ``python -m bench.pacing``.

Two measurements, each through the real handler (``handlers.offerings.provision``) on a
SQLite store, against the fakes in this process:

- calls per provisioning, per tool: the requests the fake received for the first offering of
  a new client (client lookup and create, per-process reads such as Toggl's plan), for a
  later one of a client already mapped with a team not seen before (cold: the team's users
  are read), and for one more with that same team (steady state: the users are served from
  the adapter's read cache, ``adapters.read_cache``), each with ``team`` members. "before" runs the
  adapters of another git revision (``main`` by default, copied out of git into a package of
  their own) under today's handler; "after" runs this tree's.
- the hourly quotas: a run of provisionings against a free Toggl workspace (30 requests an
  hour) and a free Clockify workspace (30 an hour), the hour scaled down to ``hour`` seconds.
  The goal is 0 refusals (402 for Toggl's quota, 429 for Clockify's) and every offering made.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.pacing import Pacer
from adapters.store import SqlStore
from fakes.base import FakeVendor
from handlers.offerings import provision
from handlers.rules import Defaults, Rules, RulesFile
from handlers.run import Deps
from schemas.inbound import Client, Offering, Project, TeamMember
from tests.integration.harness import fast_retrying

TOOLS = ("harvest", "toggl", "clockify")
# read_cache is only in revisions that have it; a module a revision lacks is left out.
ADAPTER_MODULES = ("__init__", "http", "pacing", "read_cache", "harvest", "toggl", "clockify")
HARNESSES = {
    "harvest": "tests.integration.harnesses.harvest:HarvestHarness",
    "toggl": "tests.integration.harnesses.toggl:TogglHarness",
    "clockify": "tests.integration.harnesses.clockify:ClockifyHarness",
}
TOOL_CLASSES = {"harvest": "HarvestTool", "toggl": "TogglTool", "clockify": "ClockifyTool"}


def adapters_at(revision: str) -> str:
    """Copies the adapters of ``revision`` into a package of their own; returns its name."""
    package = f"adapters_{uuid.uuid4().hex[:8]}"
    root = Path(tempfile.mkdtemp(prefix="bench-adapters-"))
    (root / package).mkdir()
    for module in ADAPTER_MODULES:
        shown = subprocess.run(
            ["git", "show", f"{revision}:adapters/{module}.py"], capture_output=True, text=True
        )
        if shown.returncode != 0:
            continue
        source = shown.stdout
        (root / package / f"{module}.py").write_text(
            source.replace("from adapters.", f"from {package}.")
        )
    sys.path.insert(0, str(root))
    return package


def _fake(tool: str, **plan: Any) -> FakeVendor:
    if tool == "harvest":
        from fakes.harvest import FakeHarvest
        from tests.integration.harnesses.harvest import ACCOUNT_ID, TOKEN

        return FakeHarvest(ACCOUNT_ID, TOKEN, rate_limit=None, **plan)
    if tool == "toggl":
        from fakes.toggl import FakeToggl

        return FakeToggl(rate_limit=None, **plan)
    from fakes.clockify import FakeClockify

    return FakeClockify(**({"rate_limit": None} | plan))


def _tool(tool: str, fake: FakeVendor, package: str | None, pacer: Pacer | None) -> Any:
    """The adapter the conformance harness builds, or the same class from ``package``."""
    module, name = HARNESSES[tool].split(":")
    harness = getattr(importlib.import_module(module), name)(fake)
    built = harness.tool(retrying=fast_retrying(), pacer=pacer)
    if package is None:
        return built
    old = getattr(importlib.import_module(f"{package}.{tool}"), TOOL_CLASSES[tool])
    args = {
        "harvest": lambda: (built.http.session.headers["Harvest-Account-Id"], fake.token),
        "toggl": lambda: (fake.token, str(fake.workspace_id)),
        "clockify": lambda: (fake.api_key, fake.workspace_id),
    }[tool]()
    return old(*args, base_url=built.http.base_url, retrying=fast_retrying(), pacer=pacer)


def _offering(team: list[str]) -> Offering:
    members = [TeamMember(email=e, hours=10) for e in team]
    return Offering(id=f"O-{uuid.uuid4().hex[:6]}", name="Discovery", budget_hours=40, team=members)


def _provisioner(tool: str, fake: FakeVendor, adapter: Any, directory: Path):
    store = SqlStore.from_url(f"sqlite:///{directory / f'{uuid.uuid4().hex}.db'}")
    rules = Rules(RulesFile(defaults=Defaults(tool=tool)))
    deps = Deps(store=store, tools={tool: adapter}, rules=rules)
    client = Client(id=f"C-{uuid.uuid4().hex[:6]}", name=f"Acme {uuid.uuid4().hex[:6]}")

    def one(team: list[str]) -> None:
        offering = _offering(team)
        project = Project(
            id=f"P-{uuid.uuid4().hex[:6]}", name=f"Site {uuid.uuid4().hex[:6]}", client=client
        )
        project = project.model_copy(update={"offerings": [offering]})
        provision(project, offering, rules.plan_for(project, offering), deps)

    return one


def _team(fake: FakeVendor, size: int) -> list[str]:
    emails = [f"member{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(size)]
    for email in emails:
        fake.add_user(email)
    return emails


@dataclass
class Calls:
    tool: str
    first: int  # a new client's first offering, with the team
    later: int  # an offering of a client already mapped, with a team not seen before
    steady: int  # the next one, with the same team (whatever the adapter kept, warm)
    alone: int  # the same without a team
    per_member: float  # what each further member adds


def calls_per_provisioning(tool: str, package: str | None, team: int, directory: Path) -> Calls:
    """Requests for one provisioning with ``team`` members (new client, mapped client cold,
    then warm), with none, and with twice as many, so that what one more member costs shows
    as a difference."""
    with _fake(tool) as fake:
        one = _provisioner(tool, fake, _tool(tool, fake, package, None), directory)
        counts = []
        emails: list[str] = []
        for size, again in ((team, False), (team, False), (team, True), (0, False)):
            emails = emails if again else _team(fake, size)
            before = len(fake.log)
            one(emails)
            counts.append(len(fake.log) - before)
        first, later, steady, alone = counts
        # Twice the team, every member new, after the same team once (so its users are as
        # warm or cold as in ``later``'s steady state): the difference is per member.
        double = _team(fake, 2 * team)
        before = len(fake.log)
        one(double)
        per = (len(fake.log) - before - later) / team if team else 0.0
    return Calls(tool, first, later, steady, alone, per)


@dataclass
class Quota:
    tool: str
    plan: str
    hour: float
    provisionings: int
    requests: int
    refused: int
    failed: int
    elapsed: float


def hourly_quota(tool: str, provisionings: int, team: int, hour: float, directory: Path) -> Quota:
    """A run of provisionings on a free workspace whose hour lasts ``hour`` seconds, paced as
    production paces it (Toggl: its quota headers; Clockify: CLOCKIFY_PLAN=free)."""
    if tool == "toggl":
        fake, pacer = _fake(tool, plan="free", quota_window=hour), Pacer(1000, 1.0)
        refusal = 402
    else:
        fake, pacer = _fake(tool, plan="free", hour=hour), Pacer(30, hour)
        refusal = 429
    with fake:
        adapter = _tool(tool, fake, None, pacer)
        one = _provisioner(tool, fake, adapter, directory)
        failed = 0
        started = time.monotonic()
        for _ in range(provisionings):
            try:
                one(_team(fake, team))
            except Exception:  # counted and reported
                failed += 1
        elapsed = time.monotonic() - started
        statuses = [status for *_, status in fake.log]
    return Quota(
        tool=tool,
        plan="free: 30 requests/hour",
        hour=hour,
        provisionings=provisionings,
        requests=len(statuses),
        refused=statuses.count(refusal),
        failed=failed,
        elapsed=elapsed,
    )


def calls_table(before: list[Calls], after: list[Calls], revision: str, team: int) -> str:
    lines = [
        f"vendor calls per provisioning (team of {team}; before = adapters at {revision!r})",
        "tool      new client     mapped (cold)  steady (warm)  no team        per member",
        "          before  after  before  after  before  after  before  after  before  after",
    ]
    for b, a in zip(before, after, strict=True):
        lines.append(
            f"{a.tool:<9} {b.first:>6} {a.first:>6} {b.later:>7} {a.later:>6} {b.steady:>7}"
            f" {a.steady:>6} {b.alone:>7} {a.alone:>6} {b.per_member:>7g} {a.per_member:>6g}"
        )
    return "\n".join(lines)


def quota_table(results: list[Quota]) -> str:
    lines = [
        "hourly quotas (free plans; the hour scaled down)",
        "tool      plan                    hour   provisionings  requests  refused  failed"
        "  elapsed",
    ]
    for r in results:
        lines.append(
            f"{r.tool:<9} {r.plan:<22} {r.hour:>4g}s {r.provisionings:>15} {r.requests:>9}"
            f" {r.refused:>8} {r.failed:>7} {r.elapsed:>7.1f}s"
        )
    return "\n".join(lines)
