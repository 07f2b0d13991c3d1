"""Pipedrive webhooks v1 at the ingress, beside v2: one crm.deal_changed per deal
notification, an id that Pipedrive's retries keep and no two notifications share, and other
objects answered but not published."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from schemas.envelope import CloudEvent
from tests import crm_webhooks as crm
from worker.ingress import pipedrive
from worker.ingress.refusals import Malformed


def translated(payload: dict) -> list[dict]:
    outgoing, ignored = pipedrive.translate(crm.dumps(payload))
    assert ignored == 0
    return [json.loads(o.body) for o in outgoing]


def test_a_v1_deal_update_gives_one_deal_changed_for_its_deal_and_company():
    payload = crm.pipedrive_v1_deal(12882925)
    meta = payload["meta"]

    (event,) = translated(payload)

    CloudEvent.model_validate(event)
    assert event["source"] == "crm/pipedrive/12882925"
    assert event["subject"] == str(meta["id"])
    assert event["data"]["deal_id"] == str(meta["id"])
    assert event["data"]["account"] == "12882925"
    assert event["data"]["change"] == {
        "version": "1.0",
        "action": "updated",
        "data": payload["current"],
        "previous": {"status": "open"},
    }
    occurred = datetime.fromtimestamp(meta["timestamp_micro"] // 1000 / 1000, UTC)
    assert CloudEvent.model_validate(event).time == occurred  # RFC 3339 in milliseconds


def test_pipedrives_retries_of_one_v1_notification_give_one_event_id():
    payload = crm.pipedrive_v1_deal(12882925)
    retries = [{**payload, "retry": attempt} for attempt in (1, 2, 3)]

    ids = {translated(body)[0]["id"] for body in [payload, *retries]}

    assert len(ids) == 1


@pytest.mark.parametrize(
    "other",
    [
        {"timestamp_micro": 1},  # the same deal changed again, a microsecond apart
        {"action": "merged"},
        {"webhook_id": "another-webhook"},
        {"user_id": 42},
        {"company_id": 7},
    ],
)
def test_two_v1_notifications_never_share_an_event_id(other):
    first = crm.pipedrive_v1_deal(12882925)
    second = {**first, "meta": {**first["meta"], **other}}
    if "timestamp_micro" in other:
        second["meta"]["timestamp_micro"] = first["meta"]["timestamp_micro"] + 1

    assert translated(first)[0]["id"] != translated(second)[0]["id"]


def test_a_v1_id_never_collides_with_a_v2_event_id():
    v1 = translated(crm.pipedrive_v1_deal(1))[0]["id"]
    v2 = json.loads(pipedrive.translate(crm.dumps(crm.pipedrive_deal_won("1")))[0][0].body)
    assert v1.startswith("v1-") and not v2["id"].startswith("v1-")


def test_a_v1_deleted_deal_is_published_with_no_current():
    (event,) = translated(crm.pipedrive_v1_deal(5, action="deleted"))
    assert event["data"]["change"]["action"] == "deleted"
    assert event["data"]["change"]["data"] is None


@pytest.mark.parametrize("thing", ["person", "organization", "activity"])
def test_a_v1_notification_about_another_object_is_counted_not_published(thing):
    payload = crm.pipedrive_v1_deal(5, object=thing)
    assert pipedrive.translate(crm.dumps(payload)) == ([], 1)


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"v": 3}, "only 1 and 2.0"),
        ({"meta": {"v": 1, "object": "deal", "id": 1, "action": "updated"}}, "meta.company_id"),
        ({"current": [1, 2]}, "objects or null"),
    ],
)
def test_a_v1_body_of_another_shape_is_malformed(change, reason):
    payload = {**crm.pipedrive_v1_deal(5), **change}
    with pytest.raises(Malformed, match=reason):
        pipedrive.translate(crm.dumps(payload))
