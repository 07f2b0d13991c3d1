"""``provisioner rules check`` and ``provisioner clients``, driven through the console script
as a person runs them."""

from __future__ import annotations

import json

import pytest

from handlers.rules import RulesError
from worker.commands.main import main

CREDENTIALS = {
    "harvest": {"HARVEST_ACCOUNT_ID": "123", "HARVEST_ACCESS_TOKEN": "token"},
    "toggl": {"TOGGL_API_TOKEN": "token", "TOGGL_WORKSPACE_ID": "456"},
    "clockify": {"CLOCKIFY_API_KEY": "key", "CLOCKIFY_WORKSPACE_ID": "a" * 24},
}

RULES = """
[defaults]
tool = "harvest"
name = "{client}: {offering}"

[[rules]]
match = { offering = "Support*" }
provision_on = "manual"

[[rules]]
match = { client = "Globex*", kind = "fixed_bid" }
assign_team = false
"""


@pytest.fixture(autouse=True)
def environment(monkeypatch, tmp_path):
    """No tool credentials, no rules file, and a fresh SQLite store for every test."""
    for names in CREDENTIALS.values():
        for name in names:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("PROVISIONER_RULES", raising=False)
    monkeypatch.setenv("PROVISIONER_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")


@pytest.fixture
def credentials(monkeypatch):
    def enable(*tools: str) -> None:
        for tool in tools:
            for name, value in CREDENTIALS[tool].items():
                monkeypatch.setenv(name, value)

    return enable


@pytest.fixture
def run(capsys):
    def run(*argv: str) -> tuple[int, str, str]:
        status = main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    return run


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def map_client(run, tool: str, crm: str, tool_client: str, name: str | None = None):
    argv = ["clients", "map", "--tool", tool, "--crm", crm, "--tool-client", tool_client]
    return run(*argv, *(["--name", name] if name else []))


def rows_of(out: str) -> dict[str, list[str]]:
    """Table rows of ``rules check`` by offering name (cells split on runs of spaces)."""
    rows = {}
    for line in out.splitlines():
        cells = [c for c in line.strip().split("  ") if c]
        if len(cells) == 13 and cells[0] != "offering":
            rows[cells[0].strip()] = [c.strip() for c in cells]
    return rows


# -- rules check --------------------------------------------------------------------------
def test_rules_check_prints_what_each_sample_offering_gets(tmp_path, run, credentials):
    credentials("harvest")

    status, out, err = run("rules", "check", write(tmp_path, "rules.toml", RULES))

    assert (status, err) == (0, "")
    rows = rows_of(out)
    assert rows["Support Retainer"] == [
        "Support Retainer",
        "retainer",
        "harvest",
        "manual",
        "Acme Corp: Support Retainer",
        "rules[1]",
        "yes",
        "warn",
        "no",
        "-",
        "-",
        "-",
        "-",
    ]
    assert rows["Migration"][5:7] == ["rules[2]", "no"]
    # The sample's fixed bid is priced, and its time-and-materials offering has a rate.
    assert (rows["Build"][8], rows["Discovery"][10]) == ("12000.00 EUR", "150.00 EUR")
    assert rows["Discovery"][5] == "defaults"


def test_rules_check_reads_provisioner_rules_when_no_file_is_given(
    tmp_path, run, credentials, monkeypatch
):
    credentials("harvest")
    monkeypatch.setenv("PROVISIONER_RULES", write(tmp_path, "env.toml", RULES))

    status, out, _ = run("rules", "check")

    assert status == 0
    assert out.startswith(f"{tmp_path / 'env.toml'}: valid, 2 rules")


def test_rules_check_without_any_file_shows_the_built_in_defaults(run, credentials):
    credentials("harvest")

    status, out, _ = run("rules", "check")

    assert status == 0
    assert out.startswith("(built-in defaults): valid, 0 rules")
    assert {row[5] for row in rows_of(out).values()} == {"defaults"}


def test_an_invalid_rules_file_exits_2_with_one_line_a_problem(tmp_path, run, credentials):
    credentials("harvest")
    path = write(
        tmp_path,
        "bad.toml",
        '[defaults]\nprovision_on = "won"\n\n[[rules]]\nmatch = {}\nname = "{deal}"\n',
    )

    status, out, err = run("rules", "check", path)

    assert (status, out) == (2, "")
    lines = err.splitlines()
    assert [line.split(": ")[:3] for line in lines] == [
        ["provisioner", path, "defaults.provision_on"],
        ["provisioner", path, "rules[1].name"],
    ]


def test_unreadable_toml_exits_2_naming_the_file(tmp_path, run):
    path = write(tmp_path, "broken.toml", "[defaults\n")

    status, _, err = run("rules", "check", path)

    assert status == 2
    assert err.startswith(f"provisioner: {path}: not valid TOML")


def test_a_valid_file_naming_a_tool_without_credentials_is_exit_0_with_a_note(
    tmp_path, run, credentials
):
    credentials("harvest")
    path = write(tmp_path, "rules.toml", RULES + '\n[[rules]]\nmatch = {}\ntool = "toggl"\n')

    status, out, err = run("rules", "check", path)

    assert (status, err) == (0, "")
    assert rows_of(out)["Onboarding Training"][2] == "toggl"
    assert out.splitlines()[-1] == (
        "note: toggl is not enabled here (TOGGL_API_TOKEN and TOGGL_WORKSPACE_ID unset); "
        "a worker started with these settings would refuse this file"
    )


def test_rules_check_without_any_credentials_notes_each_tool_and_keeps_json_clean(tmp_path, run):
    path = write(tmp_path, "rules.toml", RULES)

    status, out, err = run("rules", "check", path, "--json")

    assert status == 0
    assert all(json.loads(line)["tool"] == "harvest" for line in out.splitlines())
    assert err == (
        "note: harvest is not enabled here (HARVEST_ACCOUNT_ID and HARVEST_ACCESS_TOKEN unset); "
        "a worker started with these settings would refuse this file\n"
    )


def test_rules_check_uses_the_project_given_as_a_json_file(tmp_path, run, credentials):
    credentials("harvest")
    project = {
        "id": "P-9",
        "name": "Audit",
        "client": {"id": "C-1", "name": "Globex Ltd"},
        "offerings": [
            {"id": "O-1", "name": "Fieldwork", "kind": "FIXED_BID"},
            {"id": "O-2", "name": "Support Desk"},
        ],
    }
    project_file = write(tmp_path, "project.json", json.dumps(project))

    status, out, _ = run(
        "rules", "check", write(tmp_path, "r.toml", RULES), "--project", project_file
    )

    assert status == 0
    assert "project P-9 'Audit', client 'Globex Ltd'" in out
    rows = rows_of(out)
    assert sorted(rows) == ["Fieldwork", "Support Desk"]
    assert rows["Fieldwork"][4:7] == ["Globex Ltd: Fieldwork", "rules[2]", "no"]
    assert rows["Support Desk"][3] == "manual"


def test_an_invalid_project_file_exits_2_naming_the_file_and_the_field(tmp_path, run, credentials):
    credentials("harvest")
    project_file = write(tmp_path, "p.json", json.dumps({"id": "P-1", "name": "X"}))

    status, out, err = run("rules", "check", "--project", project_file)

    assert (status, out) == (2, "")
    assert err == f"provisioner: {project_file}: client: Field required\n"


def test_rules_check_json_prints_one_object_a_line(tmp_path, run, credentials):
    credentials("harvest")

    status, out, _ = run("rules", "check", write(tmp_path, "r.toml", RULES), "--json")

    assert status == 0
    plans = [json.loads(line) for line in out.splitlines()]
    support = next(p for p in plans if p["offering"] == "Support Retainer")
    assert support == {
        "project_id": "P-1001",
        "client": "Acme Corp",
        "offering_id": "O-3",
        "offering": "Support Retainer",
        "kind": "retainer",
        "tool": "harvest",
        "provision_on": "manual",
        "name": "Acme Corp: Support Retainer",
        "rule": "rules[1]",
        "assign_team": True,
        "missing_member": "warn",
        "fixed_fee": False,
        "money_budget": None,
        "hourly_rate": None,
        "code": None,
        "notes": None,
        "template": None,
        "warnings": [],
        "no_field": [],
        "options": {
            "bill_by": "Project",
            "budget_by": "project",
            "tasks": [],
            "project_managers": False,
        },
    }


# -- clients ------------------------------------------------------------------------------
def test_clients_list_on_an_empty_store_says_so(run):
    assert run("clients", "list") == (0, "no client mappings\n", "")


def test_a_person_resolves_a_duplicate_crm_client_by_mapping_and_unmapping(run):
    assert map_client(run, "harvest", "C-1", "555", "Acme Corp")[0] == 0

    # C-2 is the duplicate that claimed 555: the person decides it is the real one.
    status, out, _ = map_client(run, "harvest", "C-2", "555", "Acme Corporation")

    assert status == 0
    assert out.splitlines() == [
        "mapped: harvest CRM client C-2 (Acme Corporation) -> harvest client 555",
        "replaced: harvest CRM client C-1 (Acme Corp) -> harvest client 555",
    ]
    status, out, _ = run("clients", "list")
    assert out.splitlines()[1].split() == ["harvest", "C-2", "Acme", "Corporation", "555"]
    assert len(out.splitlines()) == 2

    status, out, _ = run("clients", "unmap", "--tool", "harvest", "--crm", "C-2")
    assert (status, out) == (
        0,
        "unmapped: harvest CRM client C-2 (Acme Corporation) -> harvest client 555\n",
    )
    assert run("clients", "list")[1] == "no client mappings\n"


def test_unmapping_what_is_not_mapped_exits_1(run):
    status, out, err = run("clients", "unmap", "--tool", "toggl", "--crm", "C-404")

    assert (status, out) == (1, "")
    assert err == "provisioner: no toggl mapping for CRM client C-404\n"


def test_mapping_again_keeps_the_name_on_record_and_replaces_the_tool_client(run):
    map_client(run, "toggl", "C-1", "1", "Acme")

    status, out, _ = map_client(run, "toggl", "C-1", "2")

    assert status == 0
    assert out.splitlines() == [
        "mapped: toggl CRM client C-1 (Acme) -> toggl client 2",
        "replaced: toggl CRM client C-1 (Acme) -> toggl client 1",
    ]


def test_the_same_mapping_twice_is_unchanged(run):
    map_client(run, "toggl", "C-1", "1")

    assert map_client(run, "toggl", "C-1", "1") == (
        0,
        "unchanged: toggl CRM client C-1 -> toggl client 1\n",
        "",
    )


def test_clients_list_filters_by_tool_and_prints_json_lines(run):
    map_client(run, "harvest", "C-1", "10")
    map_client(run, "clockify", "C-1", "b" * 24, "Acme")

    status, out, _ = run("clients", "list", "--tool", "clockify", "--json")

    assert status == 0
    assert [json.loads(line) for line in out.splitlines()] == [
        {
            "tool": "clockify",
            "crm_client_id": "C-1",
            "tool_client_id": "b" * 24,
            "crm_client_name": "Acme",
        }
    ]


def test_a_store_that_cannot_be_reached_fails_without_showing_the_password(run, monkeypatch):
    monkeypatch.setenv("PROVISIONER_DATABASE_URL", "postgresql://ops:s3cret@127.0.0.1:1/state")

    status, out, err = run("clients", "list")

    assert (status, out) == (1, "")
    assert err.startswith("provisioner: state store: OperationalError at postgresql")
    assert "s3cret" not in err
    assert err.count("\n") == 1


def test_rules_check_refuses_a_harvest_budget_the_offering_cannot_fill(tmp_path, run, credentials):
    credentials("harvest")
    path = write(tmp_path, "money.toml", MONEY)

    status, out, err = run("rules", "check", path)

    assert (status, out) == (2, "")
    assert err.startswith(f"provisioner: {path}: harvest: ") and "fees per task" in err


def test_the_worker_does_not_start_on_a_harvest_budget_the_offering_cannot_fill(
    tmp_path, credentials, monkeypatch
):
    from worker.bootstrap import build_deps
    from worker.settings import load_settings

    credentials("harvest")
    monkeypatch.setenv("PROVISIONER_RULES", write(tmp_path, "money.toml", MONEY))

    # What `provisioner run` builds first (it exits 2 on a RulesError), without a broker.
    with pytest.raises(RulesError, match="fees per task"):
        build_deps(load_settings())


MONEY = '[harvest]\nbudget_by = "task_fees"\n'


def test_rules_check_shows_the_commercial_shape_and_what_a_tool_has_no_field_for(
    tmp_path, run, credentials
):
    credentials("harvest")
    rules = write(
        tmp_path,
        "shape.toml",
        '[defaults]\ncode = "{project_id}-{offering_id}"\nnotes = "Deal: {deal_url}"\n'
        '[[rules]]\nmatch = { kind = "training" }\ntool = "toggl"\n',
    )

    status, out, _ = run("rules", "check", rules)

    assert status == 0
    assert rows_of(out)["Discovery"][11] == "P-1001-O-1"
    assert "  O-1 notes: Deal: https://app.hubspot.com/contacts/123/record/0-3/4711" in out
    assert "  O-3 note: toggl has no field for code, notes; left out there" in out
