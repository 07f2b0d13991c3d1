"""The state store on both engines it supports: SQLite (the default) and the real
PostgreSQL (several workers). Each PostgreSQL test gets a schema of its own."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from handlers.ports import ClientMapping, Link, RecordedStep
from schemas.errors import Permanent, Unreadable
from schemas.inbound import Project
from schemas.outbound import TimesheetSkipped
from tests import builders as b

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def a_project(name: str = "Website Rebuild") -> Project:
    return Project.model_validate(b.project(name=name))


def test_a_newer_snapshot_replaces_an_older_one_never_the_reverse(store):
    old = a_project("Old name")
    new = old.model_copy(update={"name": "New name"})

    assert store.save_snapshot(old, T0, activate=True).project.name == "Old name"
    assert store.save_snapshot(new, T0 + timedelta(hours=1)).project.name == "New name"
    assert store.save_snapshot(old, T0 + timedelta(minutes=1)).project.name == "New name"

    state = store.project(old.id)
    assert (state.project.name, state.active) == ("New name", True)


def test_a_status_older_than_the_stored_one_is_refused(store):
    project = a_project()
    store.save_snapshot(project, T0, activate=True)

    assert store.set_status(project.id, "on_hold", T0 + timedelta(hours=2))
    assert not store.set_status(project.id, "in_progress", T0 + timedelta(hours=1))
    assert store.project(project.id).status == "on_hold"


def test_times_in_other_offsets_compare_as_the_instants_they_are(store):
    project = a_project()
    berlin = timezone(timedelta(hours=2))
    store.save_snapshot(project, T0, activate=True)
    # 01:30 at +02:00 is 23:30 UTC the day before: older than the status set at T0.
    assert store.set_status(project.id, "on_hold", T0)
    assert not store.set_status(
        project.id, "completed", datetime(2026, 11, 1, 1, 30, tzinfo=berlin)
    )
    assert store.set_status(project.id, "completed", datetime(2026, 11, 1, 2, 30, tzinfo=berlin))

    state = store.project(project.id)
    assert (state.status, state.status_at) == ("completed", T0 + timedelta(minutes=30))


def test_one_tool_client_per_crm_client_and_back(store):
    store.map_client(ClientMapping("harvest", "C-1", "101", "Acme"))
    store.map_client(ClientMapping("harvest", "C-1", "101", "Acme"))  # the same again: fine

    with pytest.raises(Permanent) as taken:
        store.map_client(ClientMapping("harvest", "C-2", "101", "Acme"))
    assert taken.value.code == "client_ambiguous" and "C-1" in taken.value.message
    store.map_client(ClientMapping("toggl", "C-2", "101", "Acme"))  # another tool: its own map

    store.remap_client(ClientMapping("harvest", "C-2", "101", "Acme"))
    assert (store.tool_client("harvest", "C-1"), store.crm_client("harvest", "101")) == (
        None,
        "C-2",
    )


def test_a_step_is_recorded_once_with_its_link(store):
    key = ("crm", str(uuid.uuid4()))
    link = Link("P-1", "O-1", "harvest", "555", "https://x/555", "101")
    skipped = [TimesheetSkipped(project_id="P-1", offering_id="O-2", reason="not_sold")]

    assert store.journal(key).steps == {}
    store.finish_step(key, "offering:O-1", [], link, seq=0)
    store.finish_step(key, "offering:O-2", skipped, seq=1)
    store.finish_step(key, "offering:O-2", skipped, seq=1)  # a racing copy: ignored

    assert store.link("P-1", "O-1") == link
    assert not store.journal(key).processed
    store.finish_run(key, [], processed=True)
    store.finish_run(key, [RecordedStep("offering:O-2", skipped, 1)], processed=True)
    journal = store.journal(key)
    assert journal.processed and journal.outcomes == skipped
    assert list(journal.steps) == ["offering:O-1", "offering:O-2"]


def test_only_the_first_attempt_to_provision_finds_no_intent(store):
    assert store.note_provision_started("P-1", "O-1", "harvest") is False
    assert store.note_provision_started("P-1", "O-1", "harvest") is True
    assert store.note_provision_started("P-1", "O-1", "toggl") is False


def test_concurrent_writers_keep_every_write(store):
    """32 threads write steps of different events at once; SQLite serialises them with
    BEGIN IMMEDIATE, PostgreSQL with row locks; none is lost and none deadlocks."""
    keys = [("crm", f"e{i}") for i in range(32)]
    errors = []

    def write(key):
        try:
            store.finish_step(key, "activate", [])
            store.finish_run(key, [], processed=True)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert errors == []
    assert all(store.journal(k).processed for k in keys)


@pytest.mark.parametrize(
    "ancient",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),  # 1 BC in UTC
        datetime(9999, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1))),  # year 10000
    ],
)
def test_a_time_without_a_utc_form_is_refused_as_invalid_data(store, ancient):
    project = a_project()
    store.save_snapshot(project, T0, activate=True)

    for write in (
        lambda: store.save_snapshot(project, ancient),
        lambda: store.set_status(project.id, "on_hold", ancient),
    ):
        with pytest.raises(Unreadable) as refused:
            write()
        assert refused.value.code == "invalid_data"
        assert ancient.isoformat() in refused.value.message

    assert store.project(project.id).snapshot_at == T0  # still readable, unchanged


def test_the_time_an_intent_was_first_noted_is_kept(store):
    before = datetime.now(UTC)
    assert store.provision_started_at("P-1", "O-1", "toggl") is None
    store.note_provision_started("P-1", "O-1", "toggl")
    first = store.provision_started_at("P-1", "O-1", "toggl")
    store.note_provision_started("P-1", "O-1", "toggl")

    assert first is not None and before - timedelta(seconds=1) <= first <= datetime.now(UTC)
    assert store.provision_started_at("P-1", "O-1", "toggl") == first
