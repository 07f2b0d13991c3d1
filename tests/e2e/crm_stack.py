"""The webhook ingress as a separate process (``provisioner ingress``), beside a worker
process, for stories that go from a CRM's webhook to a timesheet project: the process, the
fake CRMs and the fixtures that start them (imported by ``tests/e2e/conftest.py``). Polls
with deadlines; never sleeps a fixed time."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from fakes.hubspot import FakeHubSpot
from fakes.pipedrive import FakePipedrive
from fakes.salesforce import FakeSalesforce
from tests import crm_webhooks as crm
from tests.e2e.ingress import free_port, request

RIGHT_TOKEN = object()  # ProcessIngress.salesforce_raw: the configured endpoint token


class ProcessIngress:
    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = env
        self.log_path = log_path
        self.log = log_path.open("ab")
        # The port is found free here and bound by the process a second or more later: in
        # between, another process may take it. Then the ingress exits naming it, and a new
        # port is tried (a rare event, not a reason to fail the story).
        for _ in range(3):
            self.port = free_port()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "worker.commands", "ingress"],
                env={**os.environ, **env, "PROVISIONER_INGRESS_BIND": f"127.0.0.1:{self.port}"},
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
            if self._ready():
                return
            assert "address already in use" in self.logs().lower(), (
                f"ingress exited:\n{self.logs()[-2000:]}"
            )
        raise AssertionError(f"no free port for the ingress:\n{self.logs()[-2000:]}")

    def _ready(self) -> bool:
        """True once /readyz answers 200; False if the process exited first."""
        deadline = time.monotonic() + 60
        while True:
            try:
                if request(self.port, "GET", "/readyz")[0] == 200:
                    return True
            except OSError:
                pass
            if self.process.poll() is not None:
                return False
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
        return self.salesforce_raw(
            crm.salesforce_message(self.env["SALESFORCE_ORGANIZATION_ID"], notifications)
        )[0]

    def salesforce_raw(self, body: bytes, *, token: str | None | object = RIGHT_TOKEN) -> tuple:
        """An Outbound Message to the endpoint URL with ``token`` (default: the right one;
        None: no token at all): (status, headers, body)."""
        token = self.env["SALESFORCE_WEBHOOK_TOKEN"] if token is RIGHT_TOKEN else token
        headers = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": '""'}
        return request(self.port, "POST", crm.salesforce_path(token), body, headers)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


PORTAL = 62515
IN_PROGRESS = "1385066797"  # a custom pipeline's stage: a numeric id, as HubSpot makes them
RULES = f"""
[crm.hubspot.stages]
"{IN_PROGRESS}" = "in_progress"
[crm.pipedrive.stages]
"7" = "in_progress"
[crm.salesforce.stages]
"Delivery" = "in_progress"
"""


@pytest.fixture
def hubspot():
    with FakeHubSpot(f"pat-na1-{uuid.uuid4()}", rate_limit=(1000, 10.0)) as fake:
        fake.add_pipeline("Delivery", [(IN_PROGRESS, "Kick-off", "false", "1.0")])
        yield fake


@pytest.fixture
def pipedrive():
    with FakePipedrive(secrets.token_hex(20), rate_limit=(1000, 2.0)) as fake:
        yield fake


@pytest.fixture
def salesforce():
    with FakeSalesforce(f"00D!{secrets.token_urlsafe(24)}", rate_limit=(1000, 1.0)) as fake:
        yield fake


@pytest.fixture
def crm_env(worker_env, tmp_path, hubspot, pipedrive, salesforce) -> dict[str, str]:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    return {
        **worker_env,
        "PROVISIONER_RULES": str(rules),
        "PROVISIONER_METRICS_BIND": "off",
        "HUBSPOT_ACCESS_TOKEN": hubspot.token,
        "HUBSPOT_BASE_URL": hubspot.origin,
        "PIPEDRIVE_API_TOKEN": pipedrive.token,
        "PIPEDRIVE_BASE_URL": pipedrive.origin,
        "SALESFORCE_INSTANCE_URL": salesforce.origin,
        "SALESFORCE_ACCESS_TOKEN": salesforce.token,
    }


@pytest.fixture
def start_ingress(worker_env, tmp_path, bus):
    started: list[ProcessIngress] = []
    env = {
        "AMQP_URL": worker_env["AMQP_URL"],
        "PROVISIONER_NAMESPACE": worker_env["PROVISIONER_NAMESPACE"],
        "PROVISIONER_RETRY_DELAYS": worker_env["PROVISIONER_RETRY_DELAYS"],
        "HUBSPOT_CLIENT_SECRET": secrets.token_hex(16),
        "PIPEDRIVE_WEBHOOK_USER": f"hook-{uuid.uuid4().hex[:6]}",
        "PIPEDRIVE_WEBHOOK_PASSWORD": secrets.token_urlsafe(16),
        "SALESFORCE_ORGANIZATION_ID": crm.salesforce_id("00D"),
        "SALESFORCE_WEBHOOK_TOKEN": crm.salesforce_webhook_token(),
    }

    def start() -> ProcessIngress:
        ingress = ProcessIngress(env, tmp_path / f"ingress{len(started)}.log")
        started.append(ingress)
        return ingress

    yield start
    for ingress in started:
        ingress.stop()


@pytest.fixture
def stack(crm_env, spawn_worker, start_ingress):
    """A worker and an ingress, both processes, on one namespace."""

    def start(**overrides: str):
        worker = spawn_worker(**{**crm_env, **overrides})
        worker.wait_log("consuming")
        return worker, start_ingress()

    return start


def hubspot_event(deal_id: str, stage: str, **fields) -> dict:
    return crm.hubspot_deal_event(PORTAL, objectId=int(deal_id), propertyValue=stage, **fields)


def harvest_projects_of(harvest, client_name: str) -> list[dict]:
    with harvest.lock:
        return [p for p in harvest.projects.values() if p["client"]["name"] == client_name]
