"""The webhook ingress as the CRMs and the internet really use it (issue 19), with the
ingress (and, where a deal must move, the worker) as processes on the real RabbitMQ:
Salesforce's endpoint token, HubSpot batches that mix association and stage changes, and
input that can never be taken answered 400 with its reason instead of a 503 the CRM would
retry."""

from __future__ import annotations

import json

import pytest

from tests import crm_webhooks as crm
from tests.e2e.bus import wait_until
from tests.e2e.crm_stack import PORTAL, hubspot_event
from tests.e2e.ingress import InboundTap, request
from tests.strategies import HOSTILE_TIMES

pytestmark = pytest.mark.broker

XML = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": '""'}


@pytest.fixture
def tap(amqp_url, bus):
    inbound = InboundTap(amqp_url, bus.topology)
    yield inbound
    inbound.close()


def test_a_missing_or_wrong_salesforce_endpoint_token_is_401_and_the_right_one_200(
    start_ingress, tap
):
    ingress = start_ingress()
    token = ingress.env["SALESFORCE_WEBHOOK_TOKEN"]
    note = (crm.salesforce_id("04l"), crm.opportunity())
    body = crm.salesforce_message(ingress.env["SALESFORCE_ORGANIZATION_ID"], [note])

    for wrong in (None, "", token[:-1] + ("A" if token[-1] != "A" else "B"), token + "x"):
        status, _, reason = ingress.salesforce_raw(body, token=wrong)
        assert status == 401, (wrong, reason)
        assert token.encode() not in reason
    assert tap.settle() == []  # a forged message publishes nothing, whatever it names

    status, headers, answer = ingress.salesforce_raw(body)
    assert status == 200 and b"<Ack>true</Ack>" in answer
    [event] = tap.wait_for(1)
    assert (event["id"], event["subject"]) == (note[0], note[1]["Id"])

    # Neither the token nor the query string that carries it reaches a log line.
    wait_until(lambda: ingress.logs().count('"request"') >= 5, "the access lines are written")
    logs = ingress.logs()
    assert [line for line in logs.splitlines() if token in line] == []
    assert "?token=" + token[:4] not in logs
    _, _, metrics = request(ingress.port, "GET", "/metrics")
    assert token.encode() not in metrics


def test_a_hubspot_batch_of_an_association_change_and_a_stage_change_activates_the_deal_once(
    stack, bus, hubspot, harvest
):
    _, ingress = stack()
    items = [hubspot.add_line_item("Discovery", 40)]
    deal = hubspot.add_deal(
        "Website Rebuild", "closedwon", company=hubspot.add_company("Acme"), line_items=items
    )
    association = crm.hubspot_association_event(PORTAL, int(items[0]), int(deal),
                                                "LINE_ITEM_TO_DEAL")  # fmt: skip
    stage = hubspot_event(deal, "closedwon")

    assert ingress.hubspot([association, stage]) == 200  # no 400 for the association
    project_id = f"hubspot:{deal}"
    [activated] = bus.wait_for(1, project_id=project_id, type="project.activated")
    assert activated["data"]["offering_ids"] == items
    outcomes = bus.settle(quiet=1.5)
    assert [o["type"] for o in outcomes if o["data"].get("project_id") == project_id] == [
        "project.activated"
    ]
    # Both events name the deal: it is read for each, and activated once.
    assert 1 <= hubspot.requests_to("GET", rf"/crm/v3/objects/deals/{deal}(\?.*)?") <= 2


def bad_inputs(ingress) -> dict[str, tuple[str, bytes, dict]]:
    """Each bad input as (path, body, headers), credentials right, so each reaches the
    parser: the CRM would retry a 503 for hours, and none of these can ever be taken."""
    env = ingress.env
    org, token = env["SALESFORCE_ORGANIZATION_ID"], env["SALESFORCE_WEBHOOK_TOKEN"]
    salesforce_path = crm.salesforce_path(token)
    auth = crm.basic_auth(env["PIPEDRIVE_WEBHOOK_USER"], env["PIPEDRIVE_WEBHOOK_PASSWORD"])
    pipedrive_headers = {**auth, "Content-Type": "application/json"}

    def opportunity_at(stamp: str) -> bytes:
        note = (crm.salesforce_id("04l"), crm.opportunity(LastModifiedDate=stamp))
        return crm.salesforce_message(org, [note])

    def pipedrive(mutate) -> bytes:
        payload = crm.pipedrive_deal_won("12882925")
        mutate(payload)
        return crm.dumps(payload)

    message = crm.salesforce_message(org, [(crm.salesforce_id("04l"), crm.opportunity())])
    cases = {
        "xml declaring an unknown encoding": (
            salesforce_path,
            b'<?xml version="1.0" encoding="x-unknown"?>' + message.partition(b"?>")[2],
            XML,
        ),
        "xml declaring utf-7": (
            salesforce_path,
            b'<?xml version="1.0" encoding="utf-7"?>' + message.partition(b"?>")[2],
            XML,
        ),
        "a salesforce opportunity id that climbs a path": (
            salesforce_path,
            crm.salesforce_message(
                org, [(crm.salesforce_id("04l"), crm.opportunity(Id="006/../001000000000001"))]
            ),
            XML,
        ),
        "a pipedrive lone surrogate": (
            "/webhooks/pipedrive",
            pipedrive(lambda p: p["data"].update(title="Acme \ud800")),
            pipedrive_headers,
        ),
        "a pipedrive NUL": (
            "/webhooks/pipedrive",
            pipedrive(lambda p: p["data"].update(title="Acme\x00")),
            pipedrive_headers,
        ),
        "a pipedrive entity_id of 5/../7": (
            "/webhooks/pipedrive",
            pipedrive(lambda p: p["meta"].update(entity_id="5/../7")),
            pipedrive_headers,
        ),
    }
    for stamp in HOSTILE_TIMES[:4]:  # year 1 or 9999 with an offset: no UTC equivalent
        cases[f"salesforce time {stamp}"] = (salesforce_path, opportunity_at(stamp), XML)
        cases[f"pipedrive time {stamp}"] = (
            "/webhooks/pipedrive",
            pipedrive(lambda p, s=stamp: p["meta"].update(timestamp=s)),
            pipedrive_headers,
        )
    return cases


def test_each_bad_input_is_a_400_with_its_reason_publishes_nothing_and_the_ingress_lives_on(
    start_ingress, tap
):
    ingress = start_ingress()
    answers = {}
    for case, (path, body, headers) in bad_inputs(ingress).items():
        status, _, reason = request(ingress.port, "POST", path, body, headers)
        answers[case] = (status, reason.count(b"\n"), reason)
    assert {case: answer[:2] for case, answer in answers.items()} == {
        case: (400, 1) for case in answers
    }, answers  # one line saying why, not a 503 with Retry-After
    assert tap.settle() == []
    assert "Traceback" not in ingress.logs()

    # HubSpot: the one unreadable event of a batch is skipped, the batch is answered.
    good, bad = crm.hubspot_deal_event(PORTAL), crm.hubspot_deal_event(PORTAL)
    bad["propertyValue"] = "Kick-off \ud800"
    body = crm.dumps([bad, good])
    uri = f"{ingress.origin}{crm.HUBSPOT_PATH}"
    headers = crm.hubspot_v3_headers(ingress.env["HUBSPOT_CLIENT_SECRET"], "POST", uri, body)
    status, _, answer = request(ingress.port, "POST", crm.HUBSPOT_PATH, body, headers)
    assert (status, json.loads(answer)) == (200, {"published": 1, "ignored": 1})
    assert [e["subject"] for e in tap.wait_for(1)] == [str(good["objectId"])]

    assert request(ingress.port, "GET", "/readyz")[0] == 200
    assert ingress.process.poll() is None


def test_xml_with_an_unknown_encoding_and_no_endpoint_token_is_401_unread(start_ingress, tap):
    ingress = start_ingress()
    body = b'<?xml version="1.0" encoding="x-unknown"?><a/>'
    status, _, reason = ingress.salesforce_raw(body, token=None)
    assert (status, reason) == (401, b"the endpoint URL's token is missing (?token=)\n")
    assert tap.settle() == []
