"""``provisioner run`` with a bad setting: exit 2 and one line naming it, as a person sees it.

Each case runs the real command as a process, with the broker pointed at a closed port: a
worker that got as far as the broker would retry it for ever instead of exiting, so an exit
here proves the check came first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

SECRET = "s3cret-pw"
OWN = ("PROVISIONER_", "HARVEST_", "TOGGL_", "CLOCKIFY_", "HUBSPOT_", "PIPEDRIVE_", "SALESFORCE_")

GOOD_RULES = '[defaults]\ntool = "harvest"\n'
INVALID_RULES = '[defaults]\ntool = "nope"\nprovision_on = "someday"\n'
TOGGL_RULES = '[defaults]\ntool = "toggl"\n'

# (case, environment changes, the setting the line names, lines expected, text in the line)
CASES = [
    ("unknown database scheme", {"PROVISIONER_DATABASE_URL": f"mysql://ops:{SECRET}@db/x"},
     "PROVISIONER_DATABASE_URL", 1, "unknown scheme 'mysql'"),
    ("sqlite directory missing", {"PROVISIONER_DATABASE_URL": "sqlite:///{tmp}/no/such/x.db"},
     "PROVISIONER_DATABASE_URL", 1, "/no/such does not exist"),
    ("sqlite directory is a file", {"PROVISIONER_DATABASE_URL": "sqlite:///{tmp}/rules.toml/x.db"},
     "PROVISIONER_DATABASE_URL", 1, "is not a directory"),
    ("sqlite with two slashes", {"PROVISIONER_DATABASE_URL": "sqlite://state.db"},
     "PROVISIONER_DATABASE_URL", 1, "sqlite:///relative.db"),
    ("postgresql unreachable",
     {"PROVISIONER_DATABASE_URL": f"postgresql://ops:{SECRET}@127.0.0.1:1/state"},
     "PROVISIONER_DATABASE_URL", 1, "postgresql://ops:***@127.0.0.1:1/state"),
    ("no calls allowed", {"HARVEST_RATE_LIMIT": "0/10"}, "HARVEST_RATE_LIMIT", 1, "above zero"),
    ("no time to pace over", {"TOGGL_RATE_LIMIT": "5/0"}, "TOGGL_RATE_LIMIT", 1, "calls/seconds"),
    ("rate not a rate", {"CLOCKIFY_RATE_LIMIT": "fast"}, "CLOCKIFY_RATE_LIMIT", 1, "e.g. 100/15"),
    ("rules empty", {"PROVISIONER_RULES": ""}, "PROVISIONER_RULES", 1,
     "PROVISIONER_RULES is empty: unset it for the built-in defaults or name a file"),
    ("rules file missing", {"PROVISIONER_RULES": "{tmp}/missing.toml"}, "PROVISIONER_RULES", 1,
     "cannot read rules file (No such file or directory)"),
    ("rules not TOML", {"PROVISIONER_RULES": "{tmp}/broken.toml"}, "PROVISIONER_RULES", 1,
     "not valid TOML"),
    ("rules invalid twice", {"PROVISIONER_RULES": "{tmp}/invalid.toml"}, "PROVISIONER_RULES", 2,
     "defaults."),
    ("rules name a tool without credentials", {"PROVISIONER_RULES": "{tmp}/toggl.toml"},
     "PROVISIONER_RULES", 1, "toggl, which is not enabled (TOGGL_API_TOKEN and TOGGL_WORKSPACE_ID"),
    ("built-in rules without credentials", {"HARVEST_ACCOUNT_ID": "", "HARVEST_ACCESS_TOKEN": ""},
     "HARVEST_ACCESS_TOKEN", 1, "built-in rules (PROVISIONER_RULES unset) send work to harvest"),
    ("concurrency empty", {"PROVISIONER_CONCURRENCY": ""}, "PROVISIONER_CONCURRENCY", 1,
     "unset it for the default (16)"),
    ("broker URL empty", {"AMQP_URL": ""}, "AMQP_URL", 1, "AMQP_URL is empty"),
    ("token with a control character", {"HARVEST_ACCESS_TOKEN": f"{SECRET}\x01"},
     "HARVEST_ACCESS_TOKEN", 1, "control character"),
    ("half a tool", {"TOGGL_API_TOKEN": SECRET}, "TOGGL_WORKSPACE_ID", 1, "go together"),
    ("namespace with a space", {"PROVISIONER_NAMESPACE": "my ns"}, "PROVISIONER_NAMESPACE", 1,
     "pattern"),
]  # fmt: skip


@pytest.fixture
def base_env(tmp_path) -> dict[str, str]:
    (tmp_path / "rules.toml").write_text(GOOD_RULES)
    (tmp_path / "broken.toml").write_text("[defaults\n")
    (tmp_path / "invalid.toml").write_text(INVALID_RULES)
    (tmp_path / "toggl.toml").write_text(TOGGL_RULES)
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN)}
    return env | {
        "AMQP_URL": f"amqp://guest:{SECRET}@127.0.0.1:1/",  # closed: never reached
        "PROVISIONER_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "PROVISIONER_CPU": "all",
        "HARVEST_ACCOUNT_ID": "123456",
        "HARVEST_ACCESS_TOKEN": SECRET,
    }


@pytest.mark.parametrize(
    ("changes", "setting", "lines", "text"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_a_bad_setting_is_exit_2_with_one_line_naming_it(
    base_env, tmp_path, changes, setting, lines, text
):
    env = base_env | {k: v.replace("{tmp}", str(tmp_path)) for k, v in changes.items()}
    began = time.monotonic()

    done = subprocess.run(
        [sys.executable, "-m", "worker.commands", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert time.monotonic() - began < 20  # no broker dialled, no retry loop entered
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    problems = done.stderr.splitlines()
    assert len(problems) == lines, done.stderr
    assert all(line.startswith("provisioner: ") for line in problems)
    assert all(setting in line for line in problems)
    assert setting in done.stderr and text in done.stderr
    assert SECRET not in done.stderr and "Traceback" not in done.stderr


def test_an_empty_credential_is_unset_but_an_empty_rules_file_is_an_error(monkeypatch):
    from worker.settings import SettingsError, load_settings

    for name in ("HARVEST_ACCOUNT_ID", "HARVEST_ACCESS_TOKEN", "PIPEDRIVE_BASE_URL"):
        monkeypatch.setenv(name, "")  # what compose's ${X:-} passes for an unset one
    monkeypatch.delenv("PROVISIONER_RULES", raising=False)

    assert load_settings().enabled_tools() == []

    monkeypatch.setenv("PROVISIONER_RULES", " ")
    with pytest.raises(SettingsError, match="^PROVISIONER_RULES is empty: unset it"):
        load_settings()


def test_a_state_directory_this_user_cannot_write_is_named(tmp_path, monkeypatch):
    from worker.commands import startup
    from worker.commands.output import Fail
    from worker.settings import Settings

    monkeypatch.setattr(startup.os, "access", lambda path, mode: False)  # as root, all is
    settings = Settings(PROVISIONER_DATABASE_URL=f"sqlite:///{tmp_path / 'state.db'}")

    with pytest.raises(Fail, match=f"directory {tmp_path} is not writable by this user") as exc:
        startup.store_or_fail(settings)
    assert exc.value.status == 2
