"""The chaos suite's own pure parts (``tests.chaos``): the invariant checks flag what they
must and pass a clean trial, the scenario is reproducible, the fakes' chaos lever works."""

from __future__ import annotations

import json
import random

import requests

from fakes.base import LOST_ANSWER
from fakes.harvest import FakeHarvest
from tests.chaos import scenario
from tests.chaos.broker import Letter
from tests.chaos.evidence import escaped_exceptions
from tests.chaos.faults import FaultProfile, Rates
from tests.chaos.invariants import Facts, StoredLink, VendorClient, VendorProject, check
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
