"""``provisioner crm reconcile`` without a broker or a CRM: its parsing and exit codes, the
event id rule, the window, and one sweep against an in-memory ``CrmSweep``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from handlers.ports import DealChange, StageFacts
from handlers.rules import load_rules
from schemas.errors import VendorUnavailable
from worker import bootstrap
from worker.commands.main import main
from worker.commands.reconcile import parse_since
from worker.reconcile import OVERLAP, sweep_crm, sweep_event_id, window_for

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CRM_VARIABLES = (
    "HUBSPOT_ACCESS_TOKEN", "HUBSPOT_BASE_URL", "PIPEDRIVE_API_TOKEN", "PIPEDRIVE_BASE_URL",
    "SALESFORCE_INSTANCE_URL", "SALESFORCE_ACCESS_TOKEN", "SALESFORCE_CLIENT_ID",
    "SALESFORCE_CLIENT_SECRET", "SALESFORCE_REFRESH_TOKEN", "SALESFORCE_USERNAME",
    "SALESFORCE_PRIVATE_KEY_FILE", "PROVISIONER_RULES", "PROVISIONER_PACING_URL",
    "PROVISIONER_RECONCILE_LOOKBACK",
)  # fmt: skip


class MemorySweep:
    """A CRM account's changed-since listing, in memory."""

    def __init__(self, name: str, account: str, changes: list[DealChange], fail: bool = False):
        self.name, self.account, self.changes, self.fail = name, account, changes, fail
        self.asked: list[tuple[datetime, datetime]] = []

    def account_id(self) -> str:
        if self.fail:
            raise VendorUnavailable(f"{self.name}: connect timed out after 5s")
        return self.account

    def changed_deals(self, since, until):
        self.asked.append((since, until))
        return iter([c for c in self.changes if since <= c.modified_at < until])


class MemoryCursors:
    def __init__(self):
        self.cursors: dict[tuple[str, str], datetime] = {}

    def sweep_cursor(self, crm, account):
        return self.cursors.get((crm, account))

    def save_sweep_cursor(self, crm, account, until):
        self.cursors[(crm, account)] = until


def change(deal_id: str, minutes_ago: float, stage: str, won: bool = False, lost=False):
    facts = StageFacts(stage, won=won, lost=lost)
    return DealChange(deal_id, NOW - timedelta(minutes=minutes_ago), facts)


@pytest.fixture(autouse=True)
def environment(monkeypatch, tmp_path):
    for name in CRM_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROVISIONER_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")


@pytest.fixture
def run(capsys):
    def run(*argv: str) -> tuple[int, str, str]:
        status = main(["crm", "reconcile", *argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run


# -- the id rule and the window ---------------------------------------------------------


def test_an_event_id_is_the_same_for_the_same_deal_and_modification_time():
    at = datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=UTC)

    assert sweep_event_id("1234", at) == "sweep-1234-1772443815123"
    assert sweep_event_id("1234", at.astimezone(tz=None)) == sweep_event_id("1234", at)
    assert sweep_event_id("1234", at + timedelta(milliseconds=1)) != sweep_event_id("1234", at)
    assert sweep_event_id("1235", at) != sweep_event_id("1234", at)


def test_the_window_starts_at_since_else_the_cursor_less_the_overlap_else_the_lookback():
    lookback, cursor, since = timedelta(days=7), NOW - timedelta(hours=1), NOW - timedelta(days=90)

    assert window_for(now=NOW, cursor=cursor, lookback=lookback, since=since).since == since
    assert window_for(now=NOW, cursor=cursor, lookback=lookback, since=None).since == (
        cursor - OVERLAP
    )
    assert window_for(now=NOW, cursor=None, lookback=lookback, since=None).since == NOW - lookback
    assert window_for(now=NOW, cursor=None, lookback=lookback, since=None).until == NOW


# -- one sweep --------------------------------------------------------------------------

RULES = """
[crm.hubspot.stages]
"delivery" = "in_progress"
"""


def rules(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    return load_rules(str(path))


def test_a_sweep_publishes_only_deals_whose_stage_matters_and_stores_its_end(tmp_path):
    reader = MemorySweep(
        "hubspot",
        "62515",
        [
            change("1", 30, "closedwon", won=True),
            change("2", 20, "delivery"),
            change("3", 10, "qualifiedtobuy"),
            change("4", 5, "closedlost", lost=True),
        ],
    )
    published, cursors = [], MemoryCursors()

    swept = sweep_crm(
        "hubspot", reader, rules=rules(tmp_path), store=cursors, publish=published.append,
        now=NOW, lookback=timedelta(days=7),
    )  # fmt: skip

    assert (swept.examined, swept.published, swept.skipped) == (4, 2, 2)
    bodies = [json.loads(e.body) for e in published]
    assert [b["subject"] for b in bodies] == ["1", "2"]
    assert {b["source"] for b in bodies} == {"crm/hubspot/62515"}
    assert bodies[1]["id"] == sweep_event_id("2", NOW - timedelta(minutes=20))
    assert bodies[1]["data"]["change"] == {
        "sweep": True, "modified_at": "2026-03-02T11:40:00.000Z"
    }  # fmt: skip
    assert cursors.cursors == {("hubspot", "62515"): NOW}


def test_the_next_sweep_starts_where_the_last_ended_less_the_overlap(tmp_path):
    reader, cursors = MemorySweep("hubspot", "62515", []), MemoryCursors()
    cursors.save_sweep_cursor("hubspot", "62515", NOW - timedelta(hours=1))

    sweep_crm(
        "hubspot", reader, rules=rules(tmp_path), store=cursors, publish=lambda e: None,
        now=NOW, lookback=timedelta(days=7),
    )  # fmt: skip

    assert reader.asked == [(NOW - timedelta(hours=1) - OVERLAP, NOW)]


def test_a_dry_run_publishes_nothing_and_stores_no_cursor(tmp_path):
    reader = MemorySweep("hubspot", "62515", [change("1", 30, "closedwon", won=True)])
    cursors = MemoryCursors()

    swept = sweep_crm(
        "hubspot", reader, rules=rules(tmp_path), store=cursors, publish=None,
        now=NOW, lookback=timedelta(days=7),
    )  # fmt: skip

    assert [p.deal_id for p in swept.planned] == ["1"] and swept.published == 0
    assert cursors.cursors == {}


def test_a_publish_that_fails_leaves_the_cursor_where_it_was(tmp_path):
    from pika.exceptions import NackError

    reader = MemorySweep("hubspot", "62515", [change("1", 30, "closedwon", won=True)])
    cursors = MemoryCursors()

    def refuse(event):
        raise NackError([])

    with pytest.raises(NackError):
        sweep_crm(
            "hubspot", reader, rules=rules(tmp_path), store=cursors, publish=refuse,
            now=NOW, lookback=timedelta(days=7),
        )  # fmt: skip
    assert cursors.cursors == {}


# -- the command ------------------------------------------------------------------------


def test_since_takes_a_duration_a_date_or_an_rfc3339_time():
    assert parse_since("30m", NOW) == NOW - timedelta(minutes=30)
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("2026-01-01", NOW) == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_since("2026-01-01T10:00:00+02:00", NOW) == datetime(2026, 1, 1, 8, tzinfo=UTC)
    assert parse_since("2026-01-01T08:00:00Z", NOW) == datetime(2026, 1, 1, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("since", "problem"),
    [
        ("yesterday", "not an RFC 3339 time"),
        ("2026-01-01T08:00:00", "needs Z or an offset"),
        ("2999-01-01", "in the future"),
    ],
)
def test_a_since_that_is_no_usable_time_is_exit_2_naming_the_forms(
    run, monkeypatch, since, problem
):
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "pat-na1-unused")

    status, out, err = run("--since", since)

    assert status == 2 and out == ""
    [line] = err.splitlines()
    assert line.startswith("provisioner: --since") and problem in line


def test_no_crm_configured_is_exit_2(run):
    status, _, err = run("--dry-run")

    assert status == 2 and "no CRM is configured" in err


def test_a_crm_named_but_not_configured_is_exit_2(run, monkeypatch):
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "pat-na1-unused")

    status, _, err = run("--crm", "pipedrive", "--dry-run")

    assert status == 2 and err.strip() == "provisioner: --crm pipedrive: not configured here"


def test_a_crm_the_command_does_not_know_is_exit_2(run):
    with pytest.raises(SystemExit) as stopped:
        run("--crm", "zoho")
    assert stopped.value.code == 2


def test_a_crm_that_cannot_be_swept_is_exit_1_and_the_others_are_still_swept(run, monkeypatch):
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "pat-na1-unused")
    monkeypatch.setenv("PIPEDRIVE_API_TOKEN", "unused")
    monkeypatch.setenv("PIPEDRIVE_BASE_URL", "https://acme.pipedrive.com")
    readers = {
        "pipedrive": MemorySweep("pipedrive", "4411", [], fail=True),
        "hubspot": MemorySweep("hubspot", "62515", [change("7", 1, "closedwon", won=True)]),
    }
    monkeypatch.setattr(bootstrap, "build_crms", lambda *args: readers)

    status, out, err = run(
        "--crm", "pipedrive", "hubspot", "--since", "2026-01-01", "--dry-run", "--json"
    )

    assert status == 1
    problems = [line for line in err.splitlines() if line.startswith("provisioner:")]
    assert problems == ["provisioner: pipedrive: not swept: pipedrive: connect timed out after 5s"]
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows[0] == {
        "crm": "pipedrive", "swept": False, "error": "pipedrive: connect timed out after 5s"
    }  # fmt: skip
    assert rows[1]["event_id"] == sweep_event_id("7", NOW - timedelta(minutes=1))
    assert rows[2]["crm"] == "hubspot" and rows[2]["would_publish"] == 1
    assert (rows[2]["examined"], rows[2]["published"], rows[2]["skipped"]) == (1, 0, 0)
