"""``crm.deal_changed`` through the real processing entry: the deal's state when read
decides, transitions never go back, and each decision survives a retry."""

from __future__ import annotations

import json
import uuid

import pika
import pytest

from handlers.crm_rules import CrmRules
from handlers.ports import StageFacts
from handlers.rules import RulesError, load_rules
from schemas.errors import VendorUnavailable
from schemas.inbound import parse_inbound
from tests.builders import event, member, offering, project
from tests.unit.memory_crm import MemoryCrm
from tests.unit.world import Result, World
from worker.crm_reads import SharedDealReads
from worker.messages import Delivery

RULES = """
[crm.hubspot.stages]
"1385066797" = "in_progress"
"onhold" = "on_hold"
"done" = "completed"
"""
IN_PROGRESS = "1385066797"


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path, rules=RULES)
    w.crm = MemoryCrm("hubspot")
    w.reads = SharedDealReads({"hubspot": w.crm})
    w.deps.deals = w.reads
    w.tool.add_user("ana@example.com")
    return w


def deal_changed(deal_id: str, **change) -> dict:
    data = {
        "crm": "hubspot",
        "account": "62515",
        "deal_id": deal_id,
        "occurred_at": "2026-11-27T14:25:28.000Z",
        "change": change,
    }
    return event("crm.deal_changed", data, id=str(uuid.uuid4()), source="crm/hubspot/62515")


def seed(world, stage: str, offerings: int = 2) -> tuple[str, dict]:
    deal_id = str(uuid.uuid4().int % 10**11)
    team = [member("ana@example.com")]
    raw = project(*[offering(f"Item {i}", team=team) for i in range(offerings)])
    world.crm.add_deal(deal_id, raw, stage)
    return deal_id, raw


def kinds(result: Result) -> list[str]:
    return [e["type"] for e in result.events]


def test_a_closed_won_deal_activates_its_project_with_client_and_offerings(world):
    deal_id, raw = seed(world, "closedwon")

    result = world.send(deal_changed(deal_id))

    [activated] = result.of("project.activated")
    assert activated["project_id"] == f"hubspot:{deal_id}"
    assert activated["offering_ids"] == [o["id"] for o in raw["offerings"]]
    state = world.store.project(f"hubspot:{deal_id}")
    assert state.active and state.project.client.name == raw["client"]["name"]
    assert world.tool.projects == {}  # provisioning waits for In Progress by default


def test_the_mapped_in_progress_stage_provisions_every_offering_with_the_owner(world):
    deal_id, raw = seed(world, "closedwon")
    world.send(deal_changed(deal_id))
    world.crm.move(deal_id, IN_PROGRESS)

    result = world.send(deal_changed(deal_id))

    provisioned = result.of("timesheet.provisioned")
    assert {p["offering_id"] for p in provisioned} == {o["id"] for o in raw["offerings"]}
    assert all(p["team_assigned"] == ["ana@example.com"] for p in provisioned)
    assert len(world.tool.projects) == 2


def test_a_deal_first_read_in_progress_is_activated_then_provisioned(world):
    deal_id, _ = seed(world, IN_PROGRESS)

    result = world.send(deal_changed(deal_id))

    assert kinds(result) == ["project.activated"] + ["timesheet.provisioned"] * 2


def test_a_late_closed_won_after_in_progress_changes_nothing(world):
    deal_id, _ = seed(world, IN_PROGRESS)
    world.send(deal_changed(deal_id))

    late = world.send(deal_changed(deal_id, propertyName="dealstage", propertyValue="closedwon"))

    assert late.events == [] and late.decision.fields["note"] == "already_applied"
    assert world.store.project(f"hubspot:{deal_id}").status == "in_progress"
    assert len(world.tool.projects) == 2


def test_a_deal_moved_back_to_closed_won_does_not_undo_in_progress(world):
    deal_id, _ = seed(world, IN_PROGRESS)
    world.send(deal_changed(deal_id))
    world.crm.move(deal_id, "closedwon")

    result = world.send(deal_changed(deal_id))

    assert result.events == []
    assert world.store.project(f"hubspot:{deal_id}").status == "in_progress"


def test_a_stage_that_maps_to_nothing_is_acked_noted_and_counted(world):
    deal_id, _ = seed(world, "qualifiedtobuy")
    other, _ = seed(world, "closedlost")

    first = world.send(deal_changed(deal_id))
    second = world.send(deal_changed(other))

    assert first.events == [] and first.copy is None  # acked: no retry, no dead letter
    assert first.decision.fields["note"] == "stage_unmapped"
    assert first.decision.fields["stage"] == "qualifiedtobuy"
    assert (second.decision.fields["count"], second.decision.fields["lost"]) == (2, "true")
    assert world.store.project(f"hubspot:{deal_id}") is None


def test_a_deleted_deal_is_dead_lettered_as_crm_record_not_found(world):
    result = world.send(deal_changed("404404404"))

    assert result.dead_lettered
    headers = result.copy.properties.headers
    assert headers["x-error-code"] == "crm_record_not_found"
    assert "hubspot deal 404404404 does not exist" in headers["x-error-message"]
    [failed] = result.of("timesheet.failed")
    assert (failed["code"], failed["project_id"]) == ("crm_record_not_found", "hubspot:404404404")


def test_a_crm_that_is_down_is_retried_later(world):
    deal_id, _ = seed(world, "closedwon")
    world.crm.failures.append(VendorUnavailable("hubspot GET /crm/v3/objects/deals: 503"))
    sent = deal_changed(deal_id)

    first = world.send(sent)
    second = world.retry(sent, first)

    assert first.retried and first.events == []
    assert second.of("project.activated")


def test_a_retry_finishes_an_in_progress_whose_status_was_already_stored(world):
    deal_id, _ = seed(world, IN_PROGRESS)
    world.tool.fail_creates = 1  # the first create is made but its answer is lost
    sent = deal_changed(deal_id)

    first = world.send(sent)
    assert first.retried
    assert world.store.project(f"hubspot:{deal_id}").status == "in_progress"
    second = world.retry(sent, first)

    assert second.copy is None
    provisioned = second.of("timesheet.provisioned")
    assert len(provisioned) == 2 and len(world.tool.projects) == 2


def test_a_retry_does_not_continue_a_transition_the_deal_has_left(world):
    deal_id, _ = seed(world, "closedwon")
    world.send(deal_changed(deal_id))
    world.crm.move(deal_id, IN_PROGRESS)
    world.tool.fail_creates = 2
    sent = deal_changed(deal_id)
    first = world.send(sent)
    world.crm.move(deal_id, "onhold")

    second = world.retry(sent, first)

    assert second.copy is None
    assert world.store.project(f"hubspot:{deal_id}").status == "on_hold"
    assert second.of("timesheet.provisioned") == []


def test_on_hold_archives_and_back_in_progress_restores(world):
    deal_id, _ = seed(world, IN_PROGRESS)
    world.send(deal_changed(deal_id))
    world.crm.move(deal_id, "onhold")
    held = world.send(deal_changed(deal_id))
    world.crm.move(deal_id, IN_PROGRESS)

    resumed = world.send(deal_changed(deal_id))

    assert kinds(held) == ["timesheet.archived"] * 2
    assert kinds(resumed) == ["timesheet.restored"] * 2


def test_events_of_one_deal_that_arrived_together_cost_one_read(world):
    deal_id, _ = seed(world, IN_PROGRESS)
    burst = [deal_changed(deal_id) for _ in range(5)]
    deliveries = [Delivery(json.dumps(e).encode(), pika.BasicProperties(headers={}), "x", "y")
                  for e in burst]  # fmt: skip

    results = [world.processor.process(d, parse_inbound(d.body)) for d in deliveries]
    late = world.send(deal_changed(deal_id))  # arrived after that read: reads again

    assert world.crm.reads == 2
    assert [r.log for r in results] == ["processed"] * 5
    assert late.copy is None and len(world.tool.projects) == 2


def test_a_duplicate_webhook_republishes_and_changes_nothing(world):
    deal_id, _ = seed(world, IN_PROGRESS)
    sent = deal_changed(deal_id)
    first = world.send(sent)

    again = world.send(sent)

    assert again.decision.log == "duplicate_republished"
    assert kinds(again) == kinds(first) and len(world.tool.projects) == 2


def test_defaults_and_rules_entries_for_each_crm():
    rules = CrmRules.model_validate(
        {
            "pipedrive": {"stages": {"7": "in_progress"}},
            "salesforce": {"stages": {"Delivery": "in_progress"}},
        }
    )

    assert rules.transition("hubspot", StageFacts("closedwon", won=True)) == "closed_won"
    assert rules.transition("pipedrive", StageFacts("3", won=True)) == "closed_won"
    assert rules.transition("pipedrive", StageFacts("7", won=True)) == "in_progress"
    assert rules.transition("pipedrive", StageFacts("7", won=False, lost=True)) is None
    assert rules.transition("salesforce", StageFacts("Delivery", won=True)) == "in_progress"
    assert rules.transition("salesforce", StageFacts("Prospecting", won=False)) is None


@pytest.mark.parametrize(
    "text, says",
    [
        ('[crm.pipedrive.stages]\nwon = "in_progress"\n', "stage_id numbers"),
        ('[crm.hubspot.stages]\nclosedwon = "won"\n', "crm.hubspot.stages.closedwon"),
        ('[crm.zoho.stages]\na = "in_progress"\n', "crm.zoho"),
        ('[crm.hubspot.fields]\nhours = "x"\n', "crm.hubspot.fields.hours"),
        ('[crm.salesforce.fields]\nkind = "Kind__c FROM User --"\n', "not a Salesforce field"),
    ],
)
def test_a_bad_crm_table_is_refused_naming_where(tmp_path, text, says):
    path = tmp_path / "rules.toml"
    path.write_text(text)

    with pytest.raises(RulesError) as raised:
        load_rules(path)
    assert says in str(raised.value)


def test_rules_name_the_properties_the_adapters_read():
    rules = CrmRules.model_validate({"hubspot": {"fields": {"budget_hours": "hours_sold"}}})

    fields = rules.fields("hubspot")

    assert (fields.offering_name, fields.budget_hours) == ("name", "hours_sold")


def test_an_event_from_a_crm_without_credentials_is_vendor_auth_naming_it(world):
    sent = deal_changed("12345")
    sent["data"]["crm"] = "pipedrive"

    result = world.send(sent)

    assert result.dead_lettered
    assert result.copy.properties.headers["x-error-code"] == "vendor_auth"
    assert "pipedrive is not enabled" in result.copy.properties.headers["x-error-message"]
