"""The commercial shape of a project (issue 21), run against each tool's fake over HTTP.

Every case is written through the harness, so it holds for any tool: a field is set where the
tool has it and the plan and the currency allow; else it is left out, with a warning, never
converted. Which fields a tool lacks or takes only on a paid plan, the harness says.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from handlers.ports import ProjectSpec, SetupReport
from schemas.inbound import Money
from tests.integration.harness import spec_for, unique

TOOLS = ["harvest", "toggl", "clockify"]
MONEY = {"fixed_fee": "12000.00", "money_budget": "9000.00", "hourly_rate": "150.00"}
FIELDS = [*MONEY, "code"]


def capabilities(tool: str):
    """The harness class of ``tool``: what the tool lacks and takes only on a paid plan."""
    module = importlib.import_module(f"tests.integration.harnesses.{tool}")
    return getattr(module, f"{tool.capitalize()}Harness")


def cases(fields, keep) -> list:
    """(tool, field) for each tool and field where ``keep(harness class, field)``: a case
    that does not apply to a tool is not generated, rather than skipped."""
    return [
        pytest.param(tool, field, id=f"{tool}-{field}")
        for tool in TOOLS
        for field in fields
        if keep(capabilities(tool), field)
    ]


@pytest.fixture
def harness(tool):
    module = importlib.import_module(f"tests.integration.harnesses.{tool}")
    h = module.open_harness()
    try:
        yield h
    finally:
        h.fake.stop()


@pytest.fixture(params=TOOLS)
def tool(request):
    return request.param


def other_currency(harness) -> str:
    return "JPY" if harness.currency != "JPY" else "CHF"


def asked(harness, field: str, currency: str | None = None) -> dict:
    """The spec fields that ask for ``field``: money in ``currency`` (the tool's by default)."""
    if field == "code":
        return {"code": f"ACME-{unique('')[1:5]}"}
    if field == "notes":
        return {"notes": "Deal: https://app.hubspot.com/contacts/42/record/0-3/7"}
    return {field: Money(amount=MONEY[field], currency=currency or harness.currency)}


def provision(tool, client_id: str, **fields) -> tuple[str, ProjectSpec, SetupReport]:
    """As the handler does: create, then complete the setup (no hours budget, so that it
    never competes with a money budget)."""
    spec = spec_for(client_id, budget_hours=None, **fields)
    made = tool.create_project(spec)
    return made.id, spec, tool.complete_setup(made.id, spec) or SetupReport()


def shown(harness, project_id: str, field: str):
    return getattr(harness.money(project_id), field)


@pytest.mark.parametrize(("tool", "field"), cases(FIELDS, lambda h, f: f not in h.lacks))
def test_each_field_is_set_when_the_tool_has_it_and_plan_and_currency_allow(harness, field):
    tool = harness.tool()
    client = tool.create_client(unique("Acme"))

    project_id, spec, report = provision(tool, client.id, **asked(harness, field))

    wanted = getattr(spec, field)
    assert shown(harness, project_id, field) == (wanted.value if field in MONEY else wanted), (
        report.warnings
    )
    if field in MONEY:
        assert harness.money(project_id).currency == harness.currency
    assert field not in report.left_out
    assert report.warnings == ()


@pytest.mark.parametrize(("tool", "field"), cases(FIELDS, lambda h, f: f in h.lacks))
def test_a_field_the_tool_has_no_place_for_is_left_out_with_a_warning(harness, field):
    tool = harness.tool()
    client = tool.create_client(unique("Acme"))

    project_id, _, report = provision(tool, client.id, **asked(harness, field))

    assert shown(harness, project_id, field) is None
    assert field in report.left_out
    assert any(w.startswith(f"{harness.tool_name}: ") for w in report.warnings)
    assert [p.id for p in harness.projects()] == [project_id]  # the project is made all the same


@pytest.mark.parametrize(("tool", "field"), cases(MONEY, lambda h, f: f not in h.lacks))
def test_money_in_another_currency_is_left_out_with_a_warning_never_converted(harness, field):
    tool = harness.tool()
    client = tool.create_client(unique("Acme"))
    foreign = other_currency(harness)

    project_id, _, report = provision(tool, client.id, **asked(harness, field, foreign))

    assert shown(harness, project_id, field) is None
    assert report.left_out == {field}
    [warning] = report.warnings
    assert foreign in warning and harness.currency in warning and MONEY[field] in warning


@pytest.mark.parametrize(("tool", "field"), cases(MONEY, lambda h, f: f in h.paid_only))
def test_a_plan_without_the_feature_leaves_the_field_out_with_a_warning(harness, field):
    harness.drop_paid_features()
    tool = harness.tool()
    client = tool.create_client(unique("Acme"))

    project_id, _, report = provision(tool, client.id, **asked(harness, field), billable=False)

    assert shown(harness, project_id, field) is None
    assert field in report.left_out
    assert any(MONEY[field] in w for w in report.warnings)


def test_notes_are_set_where_the_tool_has_them_or_said_to_be_left_out(harness):
    tool = harness.tool()
    client = tool.create_client(unique("Acme"))

    project_id, spec, report = provision(tool, client.id, **asked(harness, "notes"))

    notes = harness.money(project_id).notes
    if "notes" in harness.lacks:
        assert notes is None
        assert any("notes" in w for w in report.warnings)
    else:
        assert notes is not None and spec.notes in notes
        assert report.warnings == ()


def test_every_field_at_once_sets_what_the_tool_has_and_names_the_rest(harness):
    tool = harness.tool()
    client = tool.create_client(unique("Acme"))
    fields = {k: v for f in [*FIELDS, "notes"] for k, v in asked(harness, f).items()}
    if "fixed_fee" not in harness.lacks:  # a fee and a rate at once is the rules' question
        fields.pop("hourly_rate")

    project_id, spec, report = provision(tool, client.id, **fields)

    lacking = {f for f in fields if f in harness.lacks and f != "notes"}
    assert report.left_out == lacking
    view = harness.money(project_id)
    for field in set(fields) - harness.lacks - {"notes"}:
        wanted = getattr(spec, field)
        assert getattr(view, field) == (wanted.value if field in MONEY else wanted)


def test_the_template_projects_tasks_are_copied_with_their_estimates(harness):
    tool = harness.tool()
    client = tool.create_client(unique("Acme"))
    tasks = {"Discovery": 10.0, "Build": 32.5, "Review": None}
    template = harness.add_template(client.id, unique("Template"), tasks)

    project_id, _, report = provision(tool, client.id, template=template)

    assert harness.tasks(project_id) == tasks
    assert harness.tasks(template) == tasks  # the template is only read
    assert report.warnings == ()


def test_copying_the_template_again_adds_no_task_twice(harness):
    tool = harness.tool()
    client = tool.create_client(unique("Acme"))
    template = harness.add_template(client.id, unique("Template"), {"Discovery": 8.0})
    project_id, spec, _ = provision(tool, client.id, template=template)

    # A redelivery, in another process: the setup of an adopted project runs again.
    harness.tool().complete_setup(project_id, spec)

    assert harness.tasks(project_id) == {"Discovery": 8.0}


def test_a_template_that_is_gone_leaves_the_project_without_tasks_and_says_so(harness):
    tool = harness.tool()
    client = tool.create_client(unique("Acme"))

    project_id, _, report = provision(tool, client.id, template=harness.missing_project_id())

    assert harness.tasks(project_id) == {}
    assert any("template" in w for w in report.warnings)


@pytest.mark.parametrize(("tool", "field"), cases(["tasks"], lambda h, f: f in h.paid_only))
def test_a_plan_without_tasks_copies_none_and_says_so(harness, field):
    harness.drop_paid_features()
    tool = harness.tool()
    client = tool.create_client(unique("Acme"))
    template = harness.add_template(client.id, unique("Template"), {"Discovery": 8.0})

    project_id, _, report = provision(tool, client.id, template=template, billable=False)

    assert harness.tasks(project_id) == {}
    assert any("tasks" in w for w in report.warnings)


def test_an_interrupted_create_with_notes_and_money_is_adopted_exactly_once(harness):
    tool = harness.tool()
    client = tool.create_client(unique("Acme"))
    spec = spec_for(client.id, budget_hours=None, **asked(harness, "notes"))
    spec = replace(spec, hourly_rate=Money(amount="150.00", currency=harness.currency))
    intent = datetime.now(UTC)
    created = tool.create_project(spec)

    # The worker died before recording it; the retry, in a fresh process, looks first.
    found = harness.tool().find_project(client.id, spec.marker, spec.name, intent)

    assert found is not None and found.id == created.id
    assert len(harness.projects()) == 1
    assert harness.money(created.id).hourly_rate == Decimal("150.00")
