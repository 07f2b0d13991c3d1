"""The webhook ingress as a real HTTP server against the real RabbitMQ: what reaches
``NS.inbound`` for each CRM, what a retry publishes, what a refused request publishes
(nothing), and what a sender hears when the broker is away."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from tests import crm_webhooks as crm
from tests.e2e.bus import Bus, rabbitmqctl, wait_until
from tests.e2e.ingress import InboundTap, ThreadIngress, free_port, request
from tests.e2e.tcp_proxy import TcpProxy
from worker.topology import Topology

pytestmark = pytest.mark.broker

DELAYS = "0.2,0.4"


@pytest.fixture
def ingress_env(amqp_url, namespace) -> dict[str, str]:
    return {
        "AMQP_URL": amqp_url,
        "PROVISIONER_NAMESPACE": namespace,
        "PROVISIONER_RETRY_DELAYS": DELAYS,
        "HUBSPOT_CLIENT_SECRET": secrets.token_hex(16),
        "PIPEDRIVE_WEBHOOK_USER": f"hook-{uuid.uuid4().hex[:6]}",
        "PIPEDRIVE_WEBHOOK_PASSWORD": secrets.token_urlsafe(16),
        "SALESFORCE_ORGANIZATION_ID": crm.salesforce_id("00D"),
        "SALESFORCE_WEBHOOK_TOKEN": crm.salesforce_webhook_token(),
        "PROVISIONER_WEBHOOK_SECRET": crm.whsec(),
    }


@pytest.fixture
def tap(amqp_url, namespace):
    topology = Topology(namespace, tuple(float(d) for d in DELAYS.split(",")))
    inbound = InboundTap(amqp_url, topology)
    yield inbound
    inbound.close()
    Bus(amqp_url, topology).delete_namespace()


@pytest.fixture
def start_ingress(ingress_env):
    started: list[ThreadIngress] = []

    def start(**overrides: str) -> ThreadIngress:
        ingress = ThreadIngress({**ingress_env, **overrides})
        started.append(ingress)
        return ingress

    yield start
    for ingress in started:
        if ingress.thread.is_alive():
            ingress.stop()


@pytest.fixture
def ingress(start_ingress, tap):
    server = start_ingress()
    server.wait_ready()
    return server


def hubspot_post(ingress, env, events, *, uri=None, ts_ms=None):
    body = crm.dumps(events)
    uri = uri or f"{ingress.origin}{crm.HUBSPOT_PATH}"
    headers = crm.hubspot_v3_headers(env["HUBSPOT_CLIENT_SECRET"], "POST", uri, body, ts_ms)
    return ingress.post(crm.HUBSPOT_PATH, body, headers)


def test_a_hubspot_batch_of_two_deals_publishes_two_events_and_its_retry_the_same_ids(
    ingress, ingress_env, tap
):
    batch = [crm.hubspot_deal_event(62515), crm.hubspot_deal_event(62515)]
    status, _, body = hubspot_post(ingress, ingress_env, batch)
    assert (status, json.loads(body)) == (200, {"published": 2, "ignored": 0})
    first = tap.wait_for(2)
    assert [e["type"] for e in first] == ["crm.deal_changed"] * 2
    assert [e["subject"] for e in first] == [str(e["objectId"]) for e in batch]
    properties, _, routing_key = tap.messages[0]
    assert routing_key == "crm.deal_changed"
    assert (properties.content_type, properties.delivery_mode) == (
        "application/cloudevents+json",
        2,
    )
    assert properties.message_id == first[0]["id"]

    retry = [{**event, "attemptNumber": 1} for event in batch]  # HubSpot's retry, new signature
    assert hubspot_post(ingress, ingress_env, retry)[0] == 200
    again = tap.wait_for(4)[2:]
    assert [(e["source"], e["id"]) for e in again] == [(e["source"], e["id"]) for e in first]


def test_hubspot_signs_the_public_url_when_one_is_configured(start_ingress, ingress_env, tap):
    server = start_ingress(PROVISIONER_PUBLIC_URL="https://hooks.example.com/")
    server.wait_ready()
    event = crm.hubspot_deal_event(7)
    public = "https://hooks.example.com/webhooks/hubspot"
    assert hubspot_post(server, ingress_env, [event], uri=public)[0] == 200
    assert hubspot_post(server, ingress_env, [event])[0] == 401  # signed for the local URL
    assert len(tap.settle()) == 1


def test_hubspot_events_that_are_not_about_deals_are_answered_and_counted(
    ingress, ingress_env, tap
):
    contact = {**crm.hubspot_deal_event(1), "subscriptionType": "contact.creation"}
    status, _, body = hubspot_post(ingress, ingress_env, [contact])
    assert (status, json.loads(body)) == (200, {"published": 0, "ignored": 1})
    assert json.loads(ingress.get("/healthz")[2])["ignored"] == 1
    assert tap.settle() == []


def test_a_pipedrive_won_change_publishes_one_event_and_its_retry_the_same_id(
    ingress, ingress_env, tap
):
    payload = crm.pipedrive_deal_won("12882925")
    auth = crm.basic_auth(
        ingress_env["PIPEDRIVE_WEBHOOK_USER"], ingress_env["PIPEDRIVE_WEBHOOK_PASSWORD"]
    )
    assert ingress.post("/webhooks/pipedrive", crm.dumps(payload), auth)[0] == 200
    retry = {**payload, "meta": {**payload["meta"], "attempt": 2}}
    assert ingress.post("/webhooks/pipedrive", crm.dumps(retry), auth)[0] == 200
    one, two = tap.wait_for(2)
    assert one["data"]["change"]["data"]["status"] == "won"
    assert (
        (one["source"], one["id"])
        == (two["source"], two["id"])
        == (
            "crm/pipedrive/12882925",
            payload["meta"]["id"],
        )
    )


def test_a_salesforce_message_with_two_notifications_publishes_two_events_and_one_ack(
    ingress, ingress_env, tap
):
    org = ingress_env["SALESFORCE_ORGANIZATION_ID"]
    notes = [(crm.salesforce_id("04l"), crm.opportunity()) for _ in range(2)]
    headers = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": '""'}
    path = crm.salesforce_path(ingress_env["SALESFORCE_WEBHOOK_TOKEN"])
    status, response_headers, body = ingress.post(path, crm.salesforce_message(org, notes), headers)
    assert status == 200
    assert response_headers["content-type"].startswith("text/xml")
    assert body.count(b"<Ack>true</Ack>") == 1
    events = tap.wait_for(2)
    assert [e["id"] for e in events] == [n[0] for n in notes]
    assert [e["subject"] for e in events] == [n[1]["Id"] for n in notes]


def test_a_standard_webhook_publishes_its_cloudevent_unchanged(ingress, ingress_env, tap):
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "psa/acme",
        "type": "timesheet.provision_requested",
        "time": "2026-11-27T14:25:28Z",
        "data": {"project_id": "P-1", "offering_id": "O-1"},
    }
    body = json.dumps(event, indent=1).encode()  # any spelling: it is passed on byte for byte
    headers = crm.standard_webhook_headers(ingress_env["PROVISIONER_WEBHOOK_SECRET"], body)
    assert ingress.post("/webhooks/events", body, headers)[0] == 200
    tap.wait_for(1)
    properties, published, routing_key = tap.messages[0]
    assert (published, routing_key, properties.message_id) == (body, event["type"], event["id"])


def test_a_standard_webhook_the_worker_would_refuse_is_a_400_with_its_reason(
    ingress, ingress_env, tap
):
    body = crm.dumps({"specversion": "1.0", "id": "1", "source": "s", "type": "nope",
                      "time": "2026-11-27T14:25:28Z", "data": {}})  # fmt: skip
    headers = crm.standard_webhook_headers(ingress_env["PROVISIONER_WEBHOOK_SECRET"], body)
    status, _, reason = ingress.post("/webhooks/events", body, headers)
    assert (status, reason) == (400, b"unknown_type: unknown event type 'nope'\n")
    assert tap.settle() == []


def test_a_route_whose_secret_is_not_configured_answers_404(start_ingress, tap):
    server = start_ingress(
        PIPEDRIVE_WEBHOOK_USER="",
        PIPEDRIVE_WEBHOOK_PASSWORD="",
        SALESFORCE_ORGANIZATION_ID="",
        SALESFORCE_WEBHOOK_TOKEN="",
    )
    assert server.post("/webhooks/pipedrive", b"{}")[0] == 404
    assert server.get("/webhooks/salesforce")[0] == 404
    assert server.post("/webhooks/hubspot", b"[]")[0] == 401  # configured: it exists


@pytest.mark.parametrize(
    "case,status",
    [
        ("forged", 401),
        ("expired", 401),
        ("altered", 401),
        ("no credentials", 401),
        ("wrong organization", 401),
        ("no endpoint token", 401),
        ("not json", 400),
        ("wrong shape", 400),
        ("too large", 413),
    ],
)
def test_a_refused_request_publishes_nothing(ingress, ingress_env, tap, case, status):
    secret = ingress_env["HUBSPOT_CLIENT_SECRET"]
    uri = f"{ingress.origin}{crm.HUBSPOT_PATH}"
    deal = crm.dumps([crm.hubspot_deal_event(1)])
    old = int(time.time() * 1000) - 301_000

    def signed(body, ts=None):
        return ingress.post(
            crm.HUBSPOT_PATH, body, crm.hubspot_v3_headers(secret, "POST", uri, body, ts)
        )

    answer = {
        "forged": lambda: ingress.post(
            crm.HUBSPOT_PATH, deal, crm.hubspot_v3_headers("guess", "POST", uri, deal)
        ),
        "expired": lambda: signed(deal, old),
        "altered": lambda: ingress.post(
            crm.HUBSPOT_PATH,
            deal.replace(b"closedwon", b"closedlost"),
            crm.hubspot_v3_headers(secret, "POST", uri, deal),
        ),  # fmt: skip
        "no credentials": lambda: ingress.post(
            "/webhooks/pipedrive", crm.dumps(crm.pipedrive_deal_won("1"))
        ),
        "wrong organization": lambda: ingress.post(
            crm.salesforce_path(ingress_env["SALESFORCE_WEBHOOK_TOKEN"]),
            crm.salesforce_message(
                crm.salesforce_id("00D"), [("04l000000000001", crm.opportunity())]
            ),
        ),
        "no endpoint token": lambda: ingress.post(
            "/webhooks/salesforce",
            crm.salesforce_message(
                ingress_env["SALESFORCE_ORGANIZATION_ID"],
                [(crm.salesforce_id("04l"), crm.opportunity())],
            ),
        ),
        "not json": lambda: signed(b"[{"),
        "wrong shape": lambda: signed(b'{"eventId": 1}'),
        "too large": lambda: signed(b"[" + b" " * (1024 * 1024) + b"]"),
    }[case]()
    assert answer[0] == status
    assert answer[2].count(b"\n") == 1  # one line saying why
    assert tap.settle() == []


def raw_exchange(port: int, head: bytes, body: bytes = b"", timeout: float = 10.0) -> bytes:
    """Sends ``head`` and ``body`` and then nothing more; returns what the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + body)
        return sock.recv(65536)


def test_a_body_over_the_limit_is_refused_before_it_is_read(start_ingress, tap):
    server = start_ingress(PROVISIONER_INGRESS_MAX_BODY="4096")
    declared = b"POST /webhooks/hubspot HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n"
    started = time.monotonic()
    assert raw_exchange(server.port, declared).startswith(b"HTTP/1.1 413")
    chunked = b"POST /webhooks/hubspot HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"1000\r\n" + b"x" * 4096 + b"\r\n"
    # Two chunks, more than the limit, and the stream left open: the answer cannot wait for it.
    assert raw_exchange(server.port, chunked, chunk * 2).startswith(b"HTTP/1.1 413")
    assert time.monotonic() - started < 5
    absurd = b"POST /webhooks/hubspot HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 5000
    assert raw_exchange(server.port, absurd + b"\r\n\r\n")[:12] in (
        b"HTTP/1.1 400",  # the HTTP parser's own refusal of a length past 2**64
        b"HTTP/1.1 413",
    )


def test_after_a_413_the_server_closes_the_connection(start_ingress, tap):
    server = start_ingress(PROVISIONER_INGRESS_MAX_BODY="4096")
    head = b"POST /webhooks/hubspot HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head + b"x" * 8192)
        answer, deadline = b"", time.monotonic() + 5
        while chunk := sock.recv(65536):  # b"" only when the server has closed its side
            answer += chunk
            assert time.monotonic() < deadline, "the connection stayed open after the 413"
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413")
    assert b"connection: close" in rest.lower()
    assert answer.count(b"HTTP/1.1") == 1  # the body's bytes were not read as a request


def test_a_slow_client_is_answered_408_at_the_read_timeout(start_ingress, tap):
    server = start_ingress(PROVISIONER_INGRESS_READ_TIMEOUT="0.5")
    head = b"POST /webhooks/hubspot HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    started = time.monotonic()
    assert raw_exchange(server.port, head, b"[").startswith(b"HTTP/1.1 408")
    assert 0.4 < time.monotonic() - started < 5


def test_access_lines_say_what_happened_and_hold_no_body_or_secret(ingress, ingress_env, tap):
    deal = crm.hubspot_deal_event(62515, propertyValue="secret-stage-name")
    password = ingress_env["PIPEDRIVE_WEBHOOK_PASSWORD"]
    with capture_logs() as lines:
        assert hubspot_post(ingress, ingress_env, [deal])[0] == 200
        wrong = crm.basic_auth(ingress_env["PIPEDRIVE_WEBHOOK_USER"], password + "x")
        assert ingress.post("/webhooks/pipedrive?token=abc", b"{}", wrong)[0] == 401

        def webhook_lines() -> list[dict]:
            # A line is written just after its answer is sent: wait for it.
            return [x for x in lines if x["event"] == "request" and x["path"].startswith("/web")]

        wait_until(lambda: len(webhook_lines()) == 2, "both access lines are written", timeout=30)
    access = webhook_lines()
    assert [(a["path"], a["status"]) for a in access] == [
        ("/webhooks/hubspot", 200),
        ("/webhooks/pipedrive", 401),
    ]
    assert access[0]["published"] == 1 and access[0]["signature"] == "v3"
    assert access[1]["reason"] == "wrong credentials"
    text = repr(lines)
    for leak in ("secret-stage-name", password, ingress_env["HUBSPOT_CLIENT_SECRET"], "token=abc"):
        assert leak not in text


def test_broker_away_is_503_with_retry_after_and_the_same_request_later_publishes_once(
    start_ingress, ingress_env, tap
):
    proxy = TcpProxy(("127.0.0.1", 5672)).reserve()  # nothing listens there yet
    url = ingress_env["AMQP_URL"].replace(":5672", f":{proxy.port}")
    assert f":{proxy.port}" in url
    server = start_ingress(AMQP_URL=url)
    batch = [crm.hubspot_deal_event(62515), crm.hubspot_deal_event(62515)]
    body = crm.dumps(batch)
    uri = f"{server.origin}{crm.HUBSPOT_PATH}"
    headers = crm.hubspot_v3_headers(ingress_env["HUBSPOT_CLIENT_SECRET"], "POST", uri, body)

    status, answer_headers, _ = server.post(crm.HUBSPOT_PATH, body, headers)
    assert (status, answer_headers.get("retry-after")) == (503, "10")
    assert server.get("/readyz")[0] == 503

    proxy.start()
    try:
        server.wait_ready()
        assert server.post(crm.HUBSPOT_PATH, body, headers)[0] == 200  # the same request
        assert len(tap.settle()) == 2

        proxy.stop()  # the broker goes away while the ingress is connected
        status, answer_headers, _ = server.post(crm.HUBSPOT_PATH, body, headers)
        assert (status, answer_headers.get("retry-after")) == (503, "10")
        proxy.start()
        server.wait_ready()
        assert server.post(crm.HUBSPOT_PATH, body, headers)[0] == 200
    finally:
        proxy.stop()
    events = tap.settle()
    assert len(events) == 4
    assert [e["id"] for e in events[2:]] == [e["id"] for e in events[:2]]


def test_provisioner_ingress_runs_as_a_process_and_stops_on_sigterm(ingress_env, tap):
    port = free_port()
    env = {**os.environ, **ingress_env, "PROVISIONER_INGRESS_BIND": f"127.0.0.1:{port}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.commands", "ingress"], env=env, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if request(port, "GET", "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, "not ready"
            time.sleep(0.05)
        event = crm.hubspot_deal_event(62515)
        body = crm.dumps([event])
        headers = crm.hubspot_v3_headers(
            ingress_env["HUBSPOT_CLIENT_SECRET"],
            "POST",
            f"http://127.0.0.1:{port}/webhooks/hubspot",
            body,
        )
        assert request(port, "POST", "/webhooks/hubspot", body, headers)[0] == 200
        assert request(port, "GET", "/wp-login.php")[0] == 404
        status, _, text = request(port, "GET", "/metrics")
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert status == 200
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }
    requests_by = "provisioner_ingress_requests_total"
    assert samples[(requests_by, (("route", "/webhooks/hubspot"), ("status", "200")))] == 1
    assert samples[(requests_by, (("route", "other"), ("status", "404")))] == 1  # not its path
    assert samples[("provisioner_ingress_published_total", (("route", "/webhooks/hubspot"),))] == 1
    stderr = process.stderr.read()
    logs = [json.loads(line) for line in stderr.splitlines()]  # every line, uvicorn's too
    assert {"ingress_starting", "broker_connected", "request"} <= {line["event"] for line in logs}
    assert "uvicorn.error" in {line.get("logger") for line in logs}
    assert ingress_env["HUBSPOT_CLIENT_SECRET"].encode() not in stderr
    assert len(tap.wait_for(1)) == 1


@pytest.mark.parametrize(
    "variable,value",
    [
        ("PROVISIONER_INGRESS_MAX_BODY", "lots"),
        ("PROVISIONER_WEBHOOK_SECRET", "whsec_c2hvcnQ="),
        ("SALESFORCE_ORGANIZATION_ID", "00Dnot-an-id-at-all"),
        ("PROVISIONER_PUBLIC_URL", "ftp://hooks.internal.test"),
        ("PROVISIONER_INGRESS_BIND", "9999"),
    ],
)
def test_a_bad_setting_stops_the_ingress_with_exit_2_naming_it_not_its_value(variable, value):
    result = subprocess.run(
        [sys.executable, "-m", "worker.commands", "ingress"],
        env={**os.environ, variable: value},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0] and value not in lines[0]


@pytest.mark.parametrize("token", [None, "short-but-secret"])
def test_a_salesforce_organization_without_a_good_endpoint_token_stops_the_ingress_with_exit_2(
    token,
):
    env = {**os.environ, "SALESFORCE_ORGANIZATION_ID": crm.salesforce_id("00D")}
    env.pop("SALESFORCE_WEBHOOK_TOKEN", None)
    if token is not None:
        env["SALESFORCE_WEBHOOK_TOKEN"] = token
    result = subprocess.run(
        [sys.executable, "-m", "worker.commands", "ingress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "SALESFORCE_WEBHOOK_TOKEN" in line and "short-but-secret" not in line


def test_a_message_no_queue_takes_is_a_503_not_a_silent_loss(ingress, ingress_env, tap):
    # Someone unbound the work queue: the broker would confirm and drop the message.
    topology = Topology(ingress_env["PROVISIONER_NAMESPACE"], (0.2, 0.4))
    tap.channel.queue_unbind(topology.work_queue, topology.inbound, routing_key="#")
    tap.channel.queue_unbind(tap.queue, topology.inbound, routing_key="#")
    try:
        status, headers, _ = hubspot_post(ingress, ingress_env, [crm.hubspot_deal_event(1)])
        assert (status, headers.get("retry-after")) == (503, "10")
    finally:
        tap.channel.queue_bind(topology.work_queue, topology.inbound, routing_key="#")
        tap.channel.queue_bind(tap.queue, topology.inbound, routing_key="#")
    assert hubspot_post(ingress, ingress_env, [crm.hubspot_deal_event(1)])[0] == 200


def test_a_client_that_never_finishes_its_request_head_is_answered_408_and_let_go(
    start_ingress, tap
):
    server = start_ingress(PROVISIONER_INGRESS_READ_TIMEOUT="0.5")
    started = time.monotonic()
    partial_head = b"POST /webhooks/hubspot HTTP/1.1\r\nHost: x\r\nContent-Le"
    assert raw_exchange(server.port, partial_head).startswith(b"HTTP/1.1 408")
    assert raw_exchange(server.port, b"").startswith(b"HTTP/1.1 408")  # connects, says nothing
    assert 0.8 < time.monotonic() - started < 5
    # A keep-alive connection gets the same deadline for its next request head.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"}"):  # the whole first answer, head and JSON body
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        assert sock.recv(65536).startswith(b"HTTP/1.1 408")


def test_a_publish_the_broker_refuses_is_a_503_and_the_retry_after_it_a_200(
    ingress, ingress_env, tap
):
    # A full work queue (max-length 0, reject-publish): the broker nacks every publish.
    topology = Topology(ingress_env["PROVISIONER_NAMESPACE"], (0.2, 0.4))
    policy, pattern = f"full-{topology.namespace}", f"^{re.escape(topology.work_queue)}$"

    def limit(definition: str) -> None:
        rabbitmqctl("set_policy", policy, pattern, definition, "--apply-to", "queues")

    batch = [crm.hubspot_deal_event(1)]
    limit('{"max-length": 0, "overflow": "reject-publish"}')
    try:
        wait_until(
            lambda: hubspot_post(ingress, ingress_env, batch)[0] == 503,
            "the broker applies the policy and nacks",
        )
        status, headers, reason = hubspot_post(ingress, ingress_env, batch)
        assert (status, headers.get("retry-after")) == (503, "10")
        assert b"nacked" in reason
        # Room again. (A quorum queue keeps a cleared max-length of 0 on RabbitMQ 3.13, so
        # the limit is raised, not cleared.)
        limit('{"max-length": 1000000}')
        wait_until(lambda: hubspot_post(ingress, ingress_env, batch)[0] == 200, "a 200 again")
    finally:
        rabbitmqctl("clear_policy", policy)
