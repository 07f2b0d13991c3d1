"""What happens to each offering: triggers, rules, team, status follow-up, ordering."""

from __future__ import annotations

from dataclasses import replace

import pytest

from handlers.ports import SetupReport
from schemas.inbound import Money
from tests import builders as b
from tests.unit.world import World


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def test_in_progress_provisions_sold_ticked_offerings_and_explains_the_rest(world):
    sold, unticked, unsold = b.offering(), b.offering("Build"), b.offering("Extra", sold=False)
    project = b.project(sold, unticked, unsold)
    world.send(b.closed_won(project))

    result = world.send(b.status_changed(project, "in_progress", {unticked["id"]: False}))

    outcomes = result.by_offering()
    assert outcomes[sold["id"]]["type"] == "timesheet.provisioned"
    assert outcomes[unticked["id"]]["data"]["reason"] == "opted_out"
    assert outcomes[unsold["id"]]["data"]["reason"] == "not_sold"
    assert len(world.tool.projects) == 1 and result.copy is None


def test_a_manual_rule_skips_in_progress_but_provision_new_still_works(tmp_path):
    world = World(tmp_path, '[[rules]]\nmatch = { offering = "Support*" }\nprovision_on = "manual"')
    support = b.offering("Support retainer")
    project = b.project(support)
    world.send(b.closed_won(project))

    skipped = world.send(b.status_changed(project, "in_progress"))
    asked = world.send(b.provision_requested(project, support["id"]))

    assert skipped.of("timesheet.skipped")[0]["reason"] == "manual_only"
    assert asked.of("timesheet.provisioned")[0]["created"] is True


def test_a_closed_won_rule_provisions_when_the_deal_is_won(tmp_path):
    world = World(
        tmp_path, '[defaults]\nprovision_on = "closed_won"\nname = "{client}: {offering}"'
    )
    project = b.project(b.offering("Discovery"), b.offering("Later", sold=False))

    result = world.send(b.closed_won(project))

    assert [e["type"] for e in result.events] == ["project.activated", "timesheet.provisioned"]
    [made] = world.tool.projects.values()
    assert made.spec.name == f"{project['client']['name']}: Discovery"


def test_rules_route_offerings_to_their_tools(tmp_path):
    rules = '[[rules]]\nmatch = { kind = "fixed_bid" }\ntool = "clockify"\n'
    world = World(tmp_path, rules, tools=("harvest", "clockify"))
    fixed, hourly = b.offering("Build", kind="fixed_bid"), b.offering("Advice")
    project = b.project(fixed, hourly)
    world.send(b.closed_won(project))

    result = world.send(b.status_changed(project, "in_progress"))

    tools = {o: e["data"]["tool"] for o, e in result.by_offering().items()}
    assert tools == {fixed["id"]: "clockify", hourly["id"]: "harvest"}
    assert len(world.tools["clockify"].projects) == len(world.tools["harvest"].projects) == 1


def test_team_members_missing_in_the_tool_are_listed_by_default(world):
    world.tool.add_user("ana@example.com")
    team = [b.member("ana@example.com"), b.member("bo@example.com")]
    project = b.project(b.offering(team=team))
    world.send(b.closed_won(project))

    [done] = world.send(b.status_changed(project, "in_progress")).of("timesheet.provisioned")

    assert (done["team_assigned"], done["team_missing"]) == (
        ["ana@example.com"],
        ["bo@example.com"],
    )


def test_a_fail_rule_refuses_to_provision_with_a_member_missing(tmp_path):
    world = World(tmp_path, '[defaults]\nmissing_member = "fail"')
    project = b.project(b.offering(team=[b.member("ghost@example.com")]))
    world.send(b.closed_won(project))

    result = world.send(b.status_changed(project, "in_progress"))

    [failed] = result.of("timesheet.failed")
    assert failed["code"] == "team_member_missing" and "ghost@example.com" in failed["message"]
    assert (failed["dead_lettered"], failed["retryable"]) == (False, False)
    assert result.copy is None and world.tool.projects == {}


def test_assign_team_false_leaves_the_team_out(tmp_path):
    world = World(tmp_path, "[defaults]\nassign_team = false")
    world.tool.add_user("ana@example.com")
    project = b.project(b.offering(team=[b.member("ana@example.com")]))
    world.send(b.closed_won(project))

    [done] = world.send(b.status_changed(project, "in_progress")).of("timesheet.provisioned")

    assert done["team_assigned"] == [] and not next(iter(world.tool.projects.values())).members


def test_on_hold_archives_and_in_progress_restores_and_provisions_the_rest(world):
    first, second = b.offering(), b.offering("Build")
    project = b.project(first, second)
    world.send(b.closed_won(project))
    world.send(b.status_changed(project, "in_progress", {second["id"]: False}))

    held = world.send(b.status_changed(project, "on_hold"))
    again = world.send(b.status_changed(project, "completed"))
    back = world.send(b.status_changed(project, "in_progress"))

    assert [e["offering_id"] for e in held.of("timesheet.archived")] == [first["id"]]
    assert again.events == []  # already archived: nothing more to do
    outcomes = back.by_offering()
    assert outcomes[first["id"]]["type"] == "timesheet.restored"
    assert outcomes[second["id"]]["type"] == "timesheet.provisioned"
    assert not any(p.project.archived for p in world.tool.projects.values())


def test_a_stale_status_change_never_undoes_a_newer_one(world):
    project = b.project()
    world.send(b.closed_won(project))
    world.send(b.status_changed(project, "in_progress"))
    older = b.status_changed(project, "on_hold")
    newer = b.status_changed(project, "in_progress")

    world.send(newer)
    result = world.send(older)

    assert result.events == [] and result.copy is None
    assert not any(p.project.archived for p in world.tool.projects.values())
    assert world.store.project(project["id"]).status == "in_progress"


def test_an_older_snapshot_is_ignored(world):
    project = b.project(b.offering("Discovery"))
    renamed = {**project, "offerings": [{**project["offerings"][0], "name": "Renamed"}]}

    world.send(b.closed_won(renamed) | {"time": "2026-11-02T00:00:00Z"})
    world.send(b.closed_won(project) | {"time": "2026-11-01T00:00:00Z"})

    assert world.store.project(project["id"]).project.offerings[0].name == "Renamed"


def test_the_same_event_again_republishes_its_outcomes_and_does_nothing_more(world):
    project = b.project()
    world.send(b.closed_won(project))
    event = b.status_changed(project, "in_progress")

    first, second = world.send(event), world.send(event)

    assert [e["id"] for e in first.events] == [e["id"] for e in second.events]
    assert len(world.tool.projects) == 1


def test_events_for_a_project_not_yet_won_are_retried_then_dead_lettered(world):
    project = b.project()
    event = b.status_changed(project, "in_progress")

    first = world.send(event)
    second = world.retry(event, first)
    last = world.retry(event, second)

    assert first.retried and second.retried and last.dead_lettered
    [failed] = last.of("timesheet.failed")
    assert (failed["code"], failed["attempts"], failed["dead_lettered"]) == (
        "project_not_active",
        3,
        True,
    )
    assert last.copy.properties.headers["x-error-code"] == "project_not_active"


def test_a_late_closed_won_within_the_retry_window_lets_the_retry_provision(world):
    project = b.project()
    event = b.status_changed(project, "in_progress")
    first = world.send(event)

    world.send(b.closed_won(project))
    result = world.retry(event, first)

    assert result.copy is None and len(result.of("timesheet.provisioned")) == 1


def test_a_retry_after_a_partial_failure_redoes_only_what_failed(world):
    one, two = b.offering("One"), b.offering("Two")
    project = b.project(one, two)
    world.send(b.closed_won(project))
    event = b.status_changed(project, "in_progress")
    world.tool.fail_creates = 1  # the first create is made but its answer is lost

    first = world.send(event)
    second = world.retry(event, first)

    assert first.retried and [e["offering_id"] for e in first.of("timesheet.provisioned")] == [
        two["id"]
    ]
    created = {e["offering_id"]: e["created"] for e in second.of("timesheet.provisioned")}
    assert created == {one["id"]: False, two["id"]: True}  # one adopted, two reported again
    assert len(world.tool.projects) == 2 and second.copy is None
    assert sorted(world.tool.completed) == sorted(world.tool.projects)  # adopted one too
    # The retry looks for what was made after the first attempt noted its intent.
    [since] = world.tool.found_since
    assert since is not None and since.tzinfo is not None


def test_asking_for_a_tool_without_credentials_is_vendor_auth_for_a_person(world):
    offering = b.offering()
    project = b.project(offering)
    world.send(b.closed_won(project))

    result = world.send(b.provision_requested(project, offering["id"], tool="toggl"))

    [failed] = result.of("timesheet.failed")
    assert (failed["code"], failed["tool"], failed["dead_lettered"]) == (
        "vendor_auth",
        "toggl",
        True,
    )
    assert "toggl is not enabled" in failed["message"] and result.dead_lettered


WON_RULE = '[defaults]\nprovision_on = "closed_won"'


def test_a_deal_won_again_skips_an_offering_linked_by_connect_existing(tmp_path):
    world = World(tmp_path, WON_RULE)
    offering = b.offering(sold=False)  # not sold at first: nothing is made when won
    project = b.project(offering)
    world.send(b.closed_won(project))
    existing = world.tool.add_project(world.tool.add_client(project["client"]["name"]))
    world.send(b.connect_requested(project, offering["id"], existing, tool="harvest"))
    linked = world.store.link(project["id"], offering["id"])

    sold = {**project, "offerings": [{**offering, "sold": True}]}
    again = world.send(b.closed_won(sold))  # moved back and won again: a new event id

    [skipped] = again.of("timesheet.skipped")
    assert (skipped["offering_id"], skipped["reason"]) == (offering["id"], "already_linked")
    assert again.of("timesheet.provisioned") == [] and again.copy is None
    assert list(world.tool.projects) == [existing]
    assert world.store.link(project["id"], offering["id"]) == linked


def test_a_deal_won_again_leaves_an_archived_link_archived_and_in_progress_restores_it(tmp_path):
    world = World(tmp_path, WON_RULE)
    offering = b.offering()
    project = b.project(offering)
    world.send(b.closed_won(project))
    world.send(b.status_changed(project, "on_hold"))
    archived = world.store.link(project["id"], offering["id"])

    again = world.send(b.closed_won(project))

    assert again.of("timesheet.skipped")[0]["reason"] == "already_linked"
    assert world.store.link(project["id"], offering["id"]) == archived and archived.archived
    back = world.send(b.status_changed(project, "in_progress"))
    [restored] = back.of("timesheet.restored")
    assert restored["timesheet_project_id"] == archived.timesheet_project_id
    [made] = world.tool.projects.values()
    assert not made.project.archived


def test_connected_held_won_again_then_in_progress_restores_the_one_project(tmp_path):
    world = World(tmp_path, WON_RULE)
    offering = b.offering(sold=False)
    project = b.project(offering)
    world.send(b.closed_won(project))
    existing = world.tool.add_project(world.tool.add_client(project["client"]["name"]))
    world.send(b.connect_requested(project, offering["id"], existing, tool="harvest"))
    held = world.send(b.status_changed(project, "on_hold"))

    world.send(b.closed_won({**project, "offerings": [{**offering, "sold": True}]}))
    back = world.send(b.status_changed(project, "in_progress"))

    assert held.of("timesheet.archived")[0]["timesheet_project_id"] == existing
    assert [e["type"] for e in back.events] == ["timesheet.restored"]
    assert list(world.tool.projects) == [existing]
    assert not world.tool.projects[existing].project.archived


def test_a_budget_the_tools_plan_cannot_hold_is_reported_null_with_a_warning(world):
    world.tool.setup_report = SetupReport(budget_set=False, warnings=("no estimates here",))
    project = b.project(b.offering(budget_hours=40))
    world.send(b.closed_won(project))

    [done] = world.send(b.status_changed(project, "in_progress")).of("timesheet.provisioned")

    assert (done["budget_hours"], done["warnings"]) == (None, ["no estimates here"])


def test_a_budget_the_tool_holds_is_reported_with_no_warnings(world):
    project = b.project(b.offering(budget_hours=40))
    world.send(b.closed_won(project))

    [done] = world.send(b.status_changed(project, "in_progress")).of("timesheet.provisioned")

    assert (done["budget_hours"], done["warnings"]) == (40, [])


class Killed(BaseException):
    """The worker dies here: nothing after this line of the run happens."""


def kill_at_first_step_record(world, monkeypatch) -> None:
    record = world.store.finish_step
    calls = []

    def dies_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise Killed
        return record(*args, **kwargs)

    monkeypatch.setattr(world.store, "finish_step", dies_once)


def test_an_archive_cut_short_by_a_kill_is_undone_by_a_newer_in_progress(world, monkeypatch):
    """Chaos seeds 2015, 2019, 2024: On Hold archives in the tool and the worker dies before
    the step is recorded; a newer In Progress runs first; the On Hold comes back and is
    refused as older. The project must end active in the tool too."""
    project = b.project()
    world.send(b.closed_won(project))
    world.send(b.status_changed(project, "in_progress"))
    on_hold = b.status_changed(project, "on_hold")
    kill_at_first_step_record(world, monkeypatch)
    with pytest.raises(Killed):
        world.send(on_hold)
    [made] = world.tool.projects.values()
    assert made.project.archived  # the tool has it; our record does not

    back = world.send(b.status_changed(project, "in_progress"))
    late = world.send(on_hold)  # redelivered: older than the stored status

    assert [e["type"] for e in back.events] == ["timesheet.restored"]
    assert late.events == []
    assert not made.project.archived
    assert not world.store.link(project["id"], project["offerings"][0]["id"]).unsettled


def test_an_archive_cut_short_before_the_tool_heard_is_done_by_a_newer_completed(
    world, monkeypatch
):
    project = b.project()
    world.send(b.closed_won(project))
    world.send(b.status_changed(project, "in_progress"))
    monkeypatch.setattr(world.tool, "set_archived", lambda *a: (_ for _ in ()).throw(Killed))
    with pytest.raises(Killed):
        world.send(b.status_changed(project, "on_hold"))
    monkeypatch.undo()

    done = world.send(b.status_changed(project, "completed"))

    assert [e["type"] for e in done.events] == ["timesheet.archived"]
    [made] = world.tool.projects.values()
    assert made.project.archived


# -- the commercial shape (issue 21) --------------------------------------------------------
EUR_12000 = {"amount": "12000.00", "currency": "EUR"}
EUR_95 = {"amount": "95.00", "currency": "EUR"}
SHAPE_RULES = """
[defaults]
code = "{project_id}/{offering_id}"
notes = "Sold in {deal_url}"
template = "4242"
"""


def provisioned(world, project) -> dict:
    world.send(b.closed_won(project))
    [done] = world.send(b.status_changed(project, "in_progress")).of("timesheet.provisioned")
    return done


def test_a_priced_fixed_bid_reaches_the_tool_and_the_event_as_rules_shape_it(tmp_path):
    world = World(tmp_path, SHAPE_RULES)
    offering = b.offering("Build", kind="fixed_bid", price=EUR_12000, hourly_rate=EUR_95)
    project = b.project(offering, url="https://crm.example/deals/7")

    done = provisioned(world, project)

    [made] = world.tool.projects.values()
    spec = made.spec
    assert (spec.fixed_fee.amount, spec.hourly_rate.amount, spec.money_budget) == (
        "12000.00",
        "95.00",
        None,
    )
    assert spec.code == f"{project['id']}/{offering['id']}"
    assert (spec.notes, spec.template) == ("Sold in https://crm.example/deals/7", "4242")
    assert (done["fixed_fee"], done["fee"], done["hourly_rate"]) == (True, EUR_12000, EUR_95)
    assert (done["money_budget"], done["code"]) == (None, spec.code)


def test_what_the_tool_left_out_is_null_on_the_event_with_its_warning(tmp_path):
    world = World(tmp_path, SHAPE_RULES)
    world.tool.setup_report = SetupReport(
        warnings=("harvest: the client is in USD; fee not set",),
        left_out=frozenset({"fixed_fee", "code"}),
    )
    project = b.project(b.offering(kind="fixed_bid", price=EUR_12000, hourly_rate=EUR_95))

    done = provisioned(world, project)

    assert (done["fixed_fee"], done["fee"], done["code"]) == (False, None, None)
    assert done["hourly_rate"] == EUR_95
    assert done["warnings"] == ["harvest: the client is in USD; fee not set"]


def test_an_offering_without_money_provisions_as_before_with_null_money(world):
    done = provisioned(world, b.project(b.offering(kind="fixed_bid")))

    assert (done["fixed_fee"], done["fee"], done["hourly_rate"], done["code"]) == (
        False,
        None,
        None,
        None,
    )
    assert done["warnings"] == []


def test_a_client_made_for_priced_work_takes_its_currency_where_clients_carry_one(world):
    world.tool.clients_carry_currency = True

    provisioned(world, b.project(b.offering(price=EUR_12000)))

    assert list(world.tool.client_currency.values()) == ["EUR"]


def test_a_client_is_made_without_currency_where_the_tool_clients_have_none(world):
    provisioned(world, b.project(b.offering(price=EUR_12000)))

    assert len(world.tool.clients) == 1 and world.tool.client_currency == {}


def test_the_rules_warning_about_a_rate_reaches_the_event(tmp_path):
    world = World(tmp_path, '[defaults]\nhourly_rate = "150"\n')

    done = provisioned(world, b.project(b.offering()))

    assert done["hourly_rate"] is None and "no currency" in done["warnings"][0]


def test_a_template_the_tool_cannot_read_is_left_out_with_a_warning(tmp_path):
    world = World(tmp_path, '[defaults]\ntemplate = "https://elsewhere.example/p/1"\n')

    done = provisioned(world, b.project(b.offering()))

    [made] = world.tool.projects.values()
    assert made.spec.template is None
    assert (
        "template 'https://elsewhere.example/p/1' is not a harvest project" in (done["warnings"][0])
    )


def test_connect_existing_reports_the_shape_the_existing_project_has(world):
    client_id = world.tool.add_client("Acme")
    pid = world.tool.add_project(client_id)
    entry = world.tool.projects[pid]
    entry.project = replace(entry.project, fixed_fee=True, fee=Money(**EUR_12000), code="ACME-7")
    project = b.project(b.offering(), client={"id": b.rid("C"), "name": "Acme"})
    world.send(b.closed_won(project))

    result = world.send(b.connect_requested(project, project["offerings"][0]["id"], pid))

    [done] = result.of("timesheet.connected")
    assert (done["fixed_fee"], done["fee"], done["code"], done["hourly_rate"]) == (
        True,
        EUR_12000,
        "ACME-7",
        None,
    )
