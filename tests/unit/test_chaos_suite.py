"""The chaos suite's own pure parts (``tests.chaos``): the invariant checks flag what they
must and pass a clean trial, the scenario is reproducible, the fakes' chaos lever works."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import requests

from fakes.base import LOST_ANSWER
from fakes.harvest import FakeHarvest
from schemas.inbound import Project
from tests.chaos import expectation, lost_webhooks, scenario
from tests.chaos.broker import Letter
from tests.chaos.evidence import escaped_exceptions
from tests.chaos.faults import FaultProfile, Rates
from tests.chaos.invariants import (
    Facts,
    StoredLink,
    VendorClient,
    VendorProject,
    check,
    liveness,
)
from tests.chaos.scenario import Publication


def _event(pid: str, type_: str, event_id: str) -> Publication:
    body = json.dumps({"id": event_id, "source": "crm", "type": type_}).encode()
    return Publication(body, type_, ("crm", event_id), f"{pid} {type_}", pid)


def _provisioned(cause: str, event_id: str, offering: str, project: str) -> dict:
    data = {"project_id": "P1", "offering_id": offering, "tool": "harvest"}
    data["timesheet_project_id"] = project
    return {"id": event_id, "causationid": cause, "type": "timesheet.provisioned", "data": data}


def clean_facts() -> Facts:
    """A trial where everything went right: two events processed, one project, one client."""
    won, started = _event("P1", "deal.closed_won", "e1"), _event("P1", "in_progress", "e2")
    return Facts(
        publications=[won, started, started],
        processed={("crm", "e1"), ("crm", "e2")},
        dead_letters=[],
        outcomes=[
            _provisioned("e2", "out-1", "O1", "101"),
            _provisioned("e2", "out-1", "O1", "101"),
        ],
        projects=[VendorProject("harvest", "101", "P1/O1", archived=False)],
        clients=[VendorClient("harvest", "7", "Client 1")],
        links=[StoredLink("P1", "O1", "harvest", "101", archived=False)],
    )


def kinds(facts: Facts) -> list[str]:
    return [f.kind for f in check(facts)]


def test_a_clean_trial_passes_every_invariant():
    assert check(clean_facts()) == []


def test_an_event_neither_processed_nor_dead_lettered_is_lost():
    facts = clean_facts()
    facts.processed.discard(("crm", "e2"))

    [failure] = check(facts)

    assert failure.kind == "lost" and "P1 in_progress" in failure.detail


def test_a_second_vendor_project_or_client_for_one_offering_is_a_duplicate():
    facts = clean_facts()
    facts.projects.append(VendorProject("harvest", "102", "P1/O1", archived=False))
    facts.clients.append(VendorClient("harvest", "8", "client  1"))  # folded, the same name

    assert sorted(kinds(facts)) == ["duplicate_client", "duplicate_project"]


def test_a_dead_letter_without_a_reason_and_a_changed_outcome_id_are_flagged():
    facts = clean_facts()
    facts.processed.discard(("crm", "e2"))
    facts.dead_letters.append(Letter(1, ("crm", "e2"), "unknown", False, None))
    facts.outcomes.append(_provisioned("e2", "out-2", "O1", "101"))

    assert sorted(kinds(facts)) == ["id_changed", "lost", "reasonless"]


def test_a_bad_body_must_be_refused_by_the_worker_not_by_the_delivery_limit():
    facts = clean_facts()
    facts.publications.append(Publication(b"[[[", "deal.closed_won", None, "bad body #1"))
    facts.dead_letters.append(Letter(3, None, "delivery_limit_exceeded", True, None))

    assert sorted(kinds(facts)) == ["bad_body", "broker_dead_letter"]


def test_an_offering_linked_to_two_projects_is_flagged():
    facts = clean_facts()
    facts.outcomes.append(_provisioned("e9", "out-9", "O1", "555"))

    assert kinds(facts) == ["relinked"]


def test_the_same_seed_gives_the_same_scenario():
    first = scenario.build(random.Random(5), 80, bad_share=0)
    again = scenario.build(random.Random(5), 80, bad_share=0)

    assert [p.body for p in first.publications] == [p.body for p in again.publications]
    assert first.copies > 0 and len({p.project for p in first.publications}) > 5


def test_a_lost_answer_takes_effect_and_answers_504():
    profile = FaultProfile(random.Random(1), Rates(server_error=0, lost_answer=1, burst=0))
    profile.enabled = True
    with FakeHarvest(rate_limit=None) as fake:
        fake.chaos = profile.decide
        headers = {
            "Authorization": f"Bearer {fake.token}",
            "Harvest-Account-Id": fake.account_id,
            "User-Agent": "test",
        }
        answer = requests.post(f"{fake.origin}/v2/clients", json={"name": "Acme"}, headers=headers)

        assert answer.status_code == 504
        assert [c["name"] for c in fake.clients.values()] == ["Acme"]
        assert profile.counts == {LOST_ANSWER: 1}


def test_a_raw_traceback_in_the_worker_log_counts_as_an_escaped_exception(tmp_path):
    log = tmp_path / "worker.log"
    log.write_text(
        '{"event": "processing_failed", "exception": "Traceback (most recent call last): ..."}\n'
        "protocol.data_received() failed: error=RecursionError(...)\n"
        "Traceback (most recent call last):\n"
        '  File "worker/consumer.py", line 190, in _on_message\n'
        "    parsed = parse_inbound(body)\n"
        "RecursionError: maximum recursion depth exceeded\n"
        '{"event": "consuming"}\n'
        "Error in _create_connection().\n"  # pika's own log of a refused connect, handled
        "Traceback (most recent call last):\n"
        '  File "pika/adapters/blocking_connection.py", line 478, in _create_connection\n'
        "pika.exceptions.AMQPConnectionError\n"
    )

    assert escaped_exceptions(log) == ["RecursionError: maximum recursion depth exceeded"]


def test_an_exception_logged_by_pika_or_uncaught_counts_as_escaped_ours_does_not(tmp_path):
    log = tmp_path / "worker.log"
    log.write_text(
        '{"event": "processing_failed", "logger": "worker.processing", '
        '"exception": "Traceback ...\\nValueError: handled"}\n'
        '{"event": "protocol.data_received() failed", "logger": "pika.adapters.base_connection",'
        ' "exception": "Traceback ...\\nRecursionError: maximum recursion depth exceeded"}\n'
        '{"event": "uncaught_exception", "logger": "worker.logs", "thread": "worker-0", '
        '"exception": "Traceback ...\\nKeyError: 7"}\n'
    )

    assert escaped_exceptions(log) == [
        "RecursionError: maximum recursion depth exceeded",
        "KeyError: 7",
    ]


# -- invariant (e): everything that should have happened did ---------------------------------

RULES = expectation.rules_of()


def _cloud(n: int, type_: str, data: dict) -> Publication:
    """A good event of the scenario's shape; ``n`` orders its time (and names its id)."""
    event = {
        "specversion": "1.0", "id": f"e{n}", "source": "crm", "type": type_,
        "time": f"2026-01-01T00:00:{n:02d}Z", "data": data,
    }  # fmt: skip
    pid = data.get("project_id") or data["project"]["id"]
    return Publication(json.dumps(event).encode(), type_, ("crm", f"e{n}"), f"{pid} {type_}", pid)


def _project(pid: str = "P1", unsold: str = "O3") -> dict:
    names = {"O1": "Build 1", "O2": "Support 2", "O3": "Advice 3", "O4": "Discovery 4"}
    offerings = [{"id": oid, "name": name, "sold": oid != unsold} for oid, name in names.items()]
    return {"id": pid, "name": "Project", "client": {"id": "C1", "name": "Client 1"},
            "offerings": offerings}  # fmt: skip


def _status(n: int, status: str, selection: dict | None = None) -> Publication:
    data = {"project_id": "P1", "status": status, "selection": selection or {}}
    return _cloud(n, "project.status_changed", data)


def live_facts(publications: list[Publication]) -> Facts:
    """Every offering the publications should make live is, in Harvest, and P1 is active."""
    expected = expectation.from_publications(publications, RULES)
    live = sorted(expected.live)
    return Facts(
        publications=publications,
        processed={p.key for p in publications},
        dead_letters=[],
        outcomes=[],
        projects=[
            VendorProject("harvest", str(100 + i), f"{p}/{o}", False)
            for i, (p, o) in enumerate(live)
        ],  # fmt: skip
        clients=[],
        links=[StoredLink(p, o, "harvest", str(100 + i), False) for i, (p, o) in enumerate(live)],
        expectation=expected,
        active_projects=set(expected.active),
    )


def won_then_started() -> list[Publication]:
    return [_cloud(1, "deal.closed_won", {"project": _project()}), _status(2, "in_progress")]


def test_sold_offerings_of_a_started_project_should_be_live_manual_and_unsold_ones_unlinked():
    found = expectation.from_publications(won_then_started(), RULES)

    assert found.live == {("P1", "O1"), ("P1", "O4")}
    assert found.unlinked == {("P1", "O2"), ("P1", "O3")}
    assert found.active == {"P1"}


def test_the_newest_status_by_event_time_decides_whatever_order_they_arrived_in():
    won, started = won_then_started()
    held = _status(3, "on_hold")

    found = expectation.from_publications([held, won, started], RULES)

    assert found.live == set() and found.active == {"P1"}
    assert found.unlinked == {("P1", "O2"), ("P1", "O3")}


def test_an_opted_out_offering_stays_unlinked_unless_its_rule_provisions_on_closed_won():
    won = _cloud(1, "deal.closed_won", {"project": _project()})
    started = _status(2, "in_progress", {"O1": False, "O4": False})

    found = expectation.from_publications([won, started], RULES)

    assert found.live == {("P1", "O4")}  # Discovery: made at Closed Won, selection or not
    assert ("P1", "O1") in found.unlinked


def test_a_provision_request_makes_a_manual_offering_expected_live():
    request = _cloud(3, "timesheet.provision_requested", {"project_id": "P1", "offering_id": "O2"})

    found = expectation.from_publications([*won_then_started(), request], RULES)

    assert ("P1", "O2") in found.live and ("P1", "O2") not in found.unlinked


def test_a_trial_where_everything_that_should_happen_did_passes_liveness():
    facts = live_facts(won_then_started())

    assert check(facts) == []
    assert (liveness(facts).expected, liveness(facts).live) == (2, 2)


def test_an_offering_that_should_be_live_without_a_link_is_not_provisioned():
    facts = live_facts(won_then_started())
    facts.links = [lk for lk in facts.links if lk.offering_id != "O4"]

    [failure] = check(facts)

    assert failure.kind == "not_provisioned" and "P1/O4" in failure.detail


def test_an_archived_link_or_a_project_archived_in_the_tool_is_not_live():
    facts = live_facts(won_then_started())
    facts.links[0] = replace(facts.links[0], archived=True)
    facts.projects[1] = replace(facts.projects[1], archived=True)

    assert kinds(facts).count("not_live") == 2


def test_a_link_for_an_offering_nothing_asked_for_is_unwanted():
    facts = live_facts(won_then_started())
    facts.links.append(StoredLink("P1", "O2", "harvest", "555", archived=False))
    facts.projects.append(VendorProject("harvest", "555", "P1/O2", archived=False))

    [failure] = check(facts)

    assert failure.kind == "unwanted_link" and "P1/O2" in failure.detail


def test_a_project_never_activated_is_flagged():
    facts = live_facts(won_then_started())
    facts.active_projects.clear()

    assert kinds(facts) == ["not_activated"]


def test_a_legitimate_dead_letter_of_the_event_that_would_have_linked_it_excuses_a_missing_one():
    facts = live_facts(won_then_started())
    facts.links, facts.projects = [], []
    facts.processed.discard(("crm", "e2"))
    facts.dead_letters.append(Letter(1, ("crm", "e2"), "vendor_unavailable", False, None))

    found = liveness(facts)

    assert check(facts) == []
    assert (found.expected, found.live, found.excused) == (2, 0, 2)


def test_a_dead_letter_excuses_only_what_its_event_could_do_and_only_with_an_expected_code():
    facts = live_facts(won_then_started())
    facts.links, facts.projects = [], []
    # Closed Won links only the Discovery offering (closed_won rule); Build waits for In Progress.
    facts.dead_letters.append(Letter(0, ("crm", "e1"), "vendor_unavailable", False, None))
    facts.processed.discard(("crm", "e1"))

    assert [f.detail for f in check(facts)] == ["offering P1/O1: no link"]

    facts.dead_letters[0] = Letter(0, ("crm", "e1"), "vendor_rejected", False, None)
    assert sorted(kinds(facts)) == ["not_provisioned", "not_provisioned", "unexpected_code"]


def test_every_offering_of_a_built_scenario_is_expected_live_unlinked_or_neither_never_both():
    built = scenario.build(random.Random(3), 200, bad_share=0.05)

    found = expectation.from_publications(built.publications, RULES)

    assert found.live and found.unlinked and not found.live & found.unlinked
    assert found.active == {p.project for p in built.publications if p.project}
    assert all(p.key in found.concerns for p in built.publications if p.key)


def test_deals_in_a_delivery_stage_should_have_every_offering_live_but_a_manual_one():
    deal = Project.model_validate(_project("hubspot:9", unsold=""))

    found = expectation.for_deals([deal], RULES)

    assert found.live == {("hubspot:9", o) for o in ("O1", "O3", "O4")}
    assert found.unlinked == {("hubspot:9", "O2")}
    assert found.active == {"hubspot:9"}


def test_a_lost_webhook_is_tried_once_and_retried_ten_times_backing_off_within_the_window():
    offsets = lost_webhooks.retry_offsets(window=6.0)

    assert len(offsets) == 11 and offsets[0] == 0 and offsets[-1] == 6.0
    gaps = [b - a for a, b in zip(offsets, offsets[1:], strict=False)]
    assert gaps == sorted(gaps) and gaps[0] > 0


def test_the_lost_webhooks_trial_plans_deals_of_every_group_half_of_them_lost():
    deals = lost_webhooks.plan_deals(random.Random(2), 10)

    groups = [d.group for d in deals]
    assert set(groups) == {"before", "lost", "after"} and groups.count("lost") == 5
    assert all(1 <= len(d.items) <= 4 for d in deals)
    assert any(name.startswith("Support") for d in deals for name, _ in d.items)
