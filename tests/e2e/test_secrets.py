"""A credential that only fails inside ``requests`` (issue 10, finding 2): the worker reports
it as ``vendor_auth`` and the token, in any of its wire forms, appears in no outcome event,
no dead-letter header, no ``dlq show`` output and no log line.

Start-up validation refuses such a token (tests/unit/test_settings.py), so the worker here is
built the way ``provisioner run`` builds it, with the raw token put into the settings after
validation: the path a token takes if validation ever misses a case."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from tests import builders as b
from tests.e2e.conftest import ProcessWorker
from worker.commands.main import main as cli
from worker.messages import COPY_ID

# ``provisioner run`` (worker.commands.main.cmd_run), with HARVEST_ACCESS_TOKEN replaced after the
# settings were validated by the raw value of RAW_HARVEST_TOKEN.
LAUNCHER = """
import os, signal
from pydantic import SecretStr
from worker import bootstrap, logs
from worker.settings import load_settings

raw = SecretStr(os.environ["RAW_HARVEST_TOKEN"])
settings = load_settings().model_copy(update={"harvest_access_token": raw})
logs.configure(secrets=settings.secrets())
deps = bootstrap.build_deps(settings)
consumer = bootstrap.build_consumer(settings, deps)
signal.signal(signal.SIGTERM, lambda *_: consumer.stop())
consumer.run()
"""


class LaunchedWorker(ProcessWorker):
    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER],
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )


def test_a_token_requests_refuses_to_send_never_leaks(
    bus, worker_env, tmp_path, monkeypatch, capsys
):
    secret = "tok-" + b.rid("secret")
    forms = [
        secret,
        f"Bearer {secret}",
        base64.b64encode(f"{secret}:api_token".encode()).decode(),
        base64.b64encode(f"{secret}\n:api_token".encode()).decode(),
    ]
    worker = LaunchedWorker(
        {**worker_env, "RAW_HARVEST_TOKEN": f"{secret}\n"}, tmp_path / "worker.log"
    )
    try:
        project = b.project()
        bus.publish(b.closed_won(project))
        bus.publish(b.status_changed(project, "in_progress"))
        [failed] = bus.wait_for(1, type="timesheet.failed", project_id=project["id"])
        [(headers, _)] = bus.wait_dead_letters(1)
        for name, value in worker_env.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        shown_status = cli(["dlq", "show", headers[COPY_ID]])
        shown = capsys.readouterr().out
    finally:
        assert worker.stop() == 0

    assert (failed["data"]["code"], failed["data"]["retryable"]) == ("vendor_auth", False)
    assert "InvalidHeader" in failed["data"]["message"]
    assert headers["x-error-code"] == "vendor_auth" and shown_status == 0
    seen = {
        "outcomes": json.dumps(bus.outcomes),
        "headers": json.dumps(headers, default=str),
        "dlq show": shown,
        "log": worker.logs(),
    }
    leaks = [(where, form) for where, text in seen.items() for form in forms if form in text]
    assert leaks == []
    assert "dead_lettered" in worker.logs()  # the log was written, and read
