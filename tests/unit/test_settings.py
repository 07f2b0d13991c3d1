"""Credentials are read as a header takes them: stripped, and refused at start-up (naming the
variable, never the value) when they still cannot be sent."""

from __future__ import annotations

import pytest

from worker.commands import main as cli
from worker.settings import SettingsError, load_settings

PAIRS = {
    "harvest": ("HARVEST_ACCOUNT_ID", "HARVEST_ACCESS_TOKEN"),
    "toggl": ("TOGGL_WORKSPACE_ID", "TOGGL_API_TOKEN"),
    "clockify": ("CLOCKIFY_WORKSPACE_ID", "CLOCKIFY_API_KEY"),
}
FIELDS = {
    "HARVEST_ACCOUNT_ID": "harvest_account_id",
    "HARVEST_ACCESS_TOKEN": "harvest_access_token",
    "TOGGL_WORKSPACE_ID": "toggl_workspace_id",
    "TOGGL_API_TOKEN": "toggl_api_token",
    "CLOCKIFY_WORKSPACE_ID": "clockify_workspace_id",
    "CLOCKIFY_API_KEY": "clockify_api_key",
}
SECRET = "tok-9f8e7d6c5b4a"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in FIELDS:
        monkeypatch.delenv(name, raising=False)


def configure(monkeypatch, variable: str, value: str) -> None:
    """Sets ``variable`` to ``value`` and its partner to something valid."""
    for first, second in PAIRS.values():
        if variable in (first, second):
            partner = second if variable == first else first
            monkeypatch.setenv(partner, "12345")
    monkeypatch.setenv(variable, value)


def plain(value) -> str:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


@pytest.mark.parametrize("variable", list(FIELDS))
def test_a_credential_from_a_mounted_secret_file_loses_its_newline(monkeypatch, variable):
    configure(monkeypatch, variable, f"  {SECRET}\r\n")

    assert plain(getattr(load_settings(), FIELDS[variable])) == SECRET


@pytest.mark.parametrize("variable", list(FIELDS))
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (f"{SECRET}\nX-Injected: 1", "control character"),
        (f"{SECRET}\x1b[2J", "control character"),
        (f"{SECRET}\x7f", "control character"),
        (f"{SECRET}\u2603", "latin-1"),
        (" \n\t ", "only whitespace"),
    ],
    ids=["newline-inside", "escape", "del", "snowman", "blank"],
)
def test_a_credential_that_cannot_be_a_header_is_refused_naming_only_the_variable(
    monkeypatch, variable, value, reason
):
    configure(monkeypatch, variable, value)

    with pytest.raises(SettingsError) as refused:
        load_settings()

    message = str(refused.value)
    assert message.startswith(f"{variable}: ") and reason in message
    assert SECRET not in message and "\n" not in message


def test_an_empty_credential_still_means_the_tool_is_off(monkeypatch):
    monkeypatch.setenv("HARVEST_ACCESS_TOKEN", "")
    monkeypatch.setenv("HARVEST_ACCOUNT_ID", "")

    assert "harvest" not in load_settings().enabled_tools()


def test_run_exits_2_with_one_line_that_names_the_variable(monkeypatch, capsys):
    configure(monkeypatch, "TOGGL_API_TOKEN", f"{SECRET}\n\nmore")

    status = cli.main(["run"])

    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("provisioner: TOGGL_API_TOKEN: ")
    assert SECRET not in err


@pytest.mark.parametrize(
    ("env", "pace"),
    [
        ({}, (50, 1.0)),
        ({"CLOCKIFY_PLAN": "free"}, (30, 3600.0)),
        ({"CLOCKIFY_PLAN": "free", "CLOCKIFY_RATE_LIMIT": "20/3600"}, (20, 3600.0)),
    ],
)
def test_the_clockify_pace_follows_the_workspaces_plan(monkeypatch, env, pace):
    from worker.bootstrap import build_tools

    monkeypatch.delenv("CLOCKIFY_RATE_LIMIT", raising=False)
    monkeypatch.delenv("CLOCKIFY_PLAN", raising=False)
    monkeypatch.setenv("CLOCKIFY_WORKSPACE_ID", "5b641568b07987035750505e")
    monkeypatch.setenv("CLOCKIFY_API_KEY", SECRET)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    tool = build_tools(load_settings())["clockify"]

    assert (tool.http.pacer.calls, tool.http.pacer.period) == pace
