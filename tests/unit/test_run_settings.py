"""``provisioner run`` refuses a bad log or metrics setting with exit 2 and one stderr line
naming it, before it connects to anything."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest


def run(tmp_path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "worker.commands", "run"],
        env={
            **os.environ,
            "PROVISIONER_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
            "AMQP_URL": "amqp://guest:guest@127.0.0.1:9/",  # never reached
            "HARVEST_ACCOUNT_ID": "1",
            "HARVEST_ACCESS_TOKEN": "harvest-token-never-sent",
            "HARVEST_BASE_URL": "http://127.0.0.1:9/v2",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "variable,value",
    [
        ("LOG_LEVEL", "loud"),
        ("LOG_FORMAT", "xml"),
        ("PROVISIONER_METRICS_BIND", "9464"),
        ("PROVISIONER_METRICS_BIND", "127.0.0.1:99999"),
    ],
)
def test_a_bad_setting_is_exit_2_naming_it(tmp_path, variable, value):
    result = run(tmp_path, **{variable: value})

    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert variable in line


def test_a_metrics_address_in_use_is_exit_2_naming_the_setting(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run(tmp_path, PROVISIONER_METRICS_BIND=f"127.0.0.1:{port}")

    assert result.returncode == 2
    assert "PROVISIONER_METRICS_BIND" in result.stderr.splitlines()[-1]
    assert "in use" in result.stderr.splitlines()[-1]
