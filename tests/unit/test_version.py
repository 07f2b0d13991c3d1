"""``provisioner --version``: the installed distribution's version, as on-call quotes it."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from worker.commands import main as cli


def test_version_prints_the_installed_version_and_exits_0(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])

    out, err = capsys.readouterr()
    assert (done.value.code, err) == (0, "")
    assert out == f"provisioner {version('timesheet-provisioner')}\n"
