"""The webhook ingress as a separate process (``provisioner ingress``), beside a worker
process, for stories that go from a CRM's webhook to a timesheet project. Polls with
deadlines; never sleeps a fixed time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests import crm_webhooks as crm
from tests.e2e.ingress import free_port, request


class ProcessIngress:
    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = env
        self.port = free_port()
        self.log_path = log_path
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.commands", "ingress"],
            env={**os.environ, **env, "PROVISIONER_INGRESS_BIND": f"127.0.0.1:{self.port}"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if request(self.port, "GET", "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert self.process.poll() is None, f"ingress exited:\n{self.logs()[-2000:]}"
            assert time.monotonic() < deadline, "ingress not ready"
            time.sleep(0.05)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def hubspot(self, events: list[dict]) -> int:
        body = crm.dumps(events)
        uri = f"{self.origin}{crm.HUBSPOT_PATH}"
        headers = crm.hubspot_v3_headers(self.env["HUBSPOT_CLIENT_SECRET"], "POST", uri, body)
        return request(self.port, "POST", crm.HUBSPOT_PATH, body, headers)[0]

    def pipedrive(self, payload: dict) -> int:
        headers = crm.basic_auth(
            self.env["PIPEDRIVE_WEBHOOK_USER"], self.env["PIPEDRIVE_WEBHOOK_PASSWORD"]
        )
        headers["Content-Type"] = "application/json"
        return request(self.port, "POST", "/webhooks/pipedrive", crm.dumps(payload), headers)[0]

    def salesforce(self, notifications: list[tuple[str, dict]]) -> int:
        body = crm.salesforce_message(self.env["SALESFORCE_ORGANIZATION_ID"], notifications)
        headers = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": '""'}
        return request(self.port, "POST", "/webhooks/salesforce", body, headers)[0]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
