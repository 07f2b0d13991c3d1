"""What the ingress makes of each CRM's body: one crm.deal_changed per notification, with
ids from the CRM's identity of it, and a one-line 400 for every way a body can be wrong."""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs

from schemas.envelope import CloudEvent
from tests import crm_webhooks as crm
from worker.ingress import hubspot, pipedrive, salesforce, standard_webhooks
from worker.ingress.refusals import Malformed, Unauthorized


def events(outgoing) -> list[dict]:
    return [json.loads(o.body) for o in outgoing]


def test_a_hubspot_batch_gives_one_deal_changed_per_deal_event_and_counts_the_others():
    first, second = crm.hubspot_deal_event(62515), crm.hubspot_deal_event(62515)
    contact = {**crm.hubspot_deal_event(62515), "subscriptionType": "contact.creation"}
    outgoing, ignored = hubspot.translate(crm.dumps([first, contact, second]))
    assert ignored == 1
    one, two = events(outgoing)
    assert one == {
        "specversion": "1.0",
        "id": f"62515-{first['subscriptionId']}-{first['eventId']}-{first['occurredAt']}",
        "source": "crm/hubspot/62515",
        "type": "crm.deal_changed",
        "time": one["time"],
        "subject": str(first["objectId"]),
        "datacontenttype": "application/json",
        "data": {
            "crm": "hubspot",
            "account": "62515",
            "deal_id": str(first["objectId"]),
            "occurred_at": one["time"],
            "change": {
                "subscriptionType": "deal.propertyChange",
                "propertyName": "dealstage",
                "propertyValue": "closedwon",
            },
        },
    }
    assert CloudEvent.model_validate(one).time.timestamp() * 1000 == first["occurredAt"]
    assert two["subject"] == str(second["objectId"])
    assert [o.routing_key for o in outgoing] == ["crm.deal_changed"] * 2
    assert [o.properties.message_id for o in outgoing] == [one["id"], two["id"]]


def test_hubspots_retry_of_a_batch_gives_the_same_events():
    batch = [crm.hubspot_deal_event(62515), crm.hubspot_deal_event(62515)]
    retry = [{**event, "attemptNumber": 3} for event in batch]
    assert events(hubspot.translate(crm.dumps(batch))[0]) == events(
        hubspot.translate(crm.dumps(retry))[0]
    )


def test_hubspot_generic_object_events_about_deals_count_as_deals():
    deal = {**crm.hubspot_deal_event(1), "subscriptionType": "object.propertyChange"}
    outgoing, ignored = hubspot.translate(crm.dumps([{**deal, "objectTypeId": "0-3"}]))
    assert (len(outgoing), ignored) == (1, 0)
    outgoing, ignored = hubspot.translate(crm.dumps([{**deal, "objectTypeId": "0-1"}]))
    assert (len(outgoing), ignored) == (0, 1)


@pytest.mark.parametrize(
    "body,reason",
    [
        (b'{"not": "an array"}', "not an array"),
        (b"[1]", "not an object"),
        (crm.dumps([crm.hubspot_deal_event(1), "deal"]), "not an object"),
        (b"[" * 100 + b"]" * 100, "deeper"),
        (b"[" * 100_000, "deeper"),
        (b"[" + b"9" * 5000 + b"]", "5000 digits"),
        (b"[1e999]", "out of range"),
        (b"[NaN]", "NaN"),
        (b"[\xff]", "not UTF-8"),
        (b"", "not JSON"),
    ],
)
def test_a_body_that_is_not_hubspots_shape_is_malformed_with_one_line(body, reason):
    with pytest.raises(Malformed, match=reason) as refused:
        hubspot.translate(body)
    assert "\n" not in refused.value.reason


@pytest.mark.parametrize(
    "broken",
    [
        {"subscriptionType": "deal.propertyChange", "eventId": 1},
        {**crm.hubspot_deal_event(1), "objectId": "12"},
        {**crm.hubspot_deal_event(1), "portalId": 2**70},
        {**crm.hubspot_deal_event(1), "eventId": True},
        {**crm.hubspot_deal_event(1), "objectId": None},
        {**crm.hubspot_deal_event(1), "propertyValue": "\ud800"},  # a lone surrogate
        {**crm.hubspot_deal_event(1), "propertyValue": "Kick-off\x00"},  # PostgreSQL: no NUL
        {**crm.hubspot_deal_event(1), "occurredAt": 10**14 - 1},  # year 5138
        crm.hubspot_association_event(1, 5, 6, "LINE_ITEM_TO_CONTACT"),  # no deal side
        {**crm.hubspot_merge_event(1, 77, [5]), "primaryObjectId": None},
    ],
)
def test_one_hubspot_event_that_cannot_be_read_is_skipped_and_the_rest_published(broken):
    good = crm.hubspot_deal_event(62515)
    outgoing, ignored = hubspot.translate(crm.dumps([broken, good]))
    assert [e["subject"] for e in events(outgoing)] == [str(good["objectId"])]
    assert ignored == 1


def test_a_hubspot_association_change_names_the_deal_on_whichever_side_it_is():
    to_deal = crm.hubspot_association_event(62515, 901, 42, "LINE_ITEM_TO_DEAL")
    from_deal = crm.hubspot_association_event(62515, 43, 902, "DEAL_TO_LINE_ITEM", removed=True)
    one, two = events(hubspot.translate(crm.dumps([to_deal, from_deal]))[0])
    assert (one["subject"], two["subject"]) == ("42", "43")
    assert one["data"]["change"] == {
        "subscriptionType": "deal.associationChange",
        "associationType": "LINE_ITEM_TO_DEAL",
        "associationRemoved": False,
        "isPrimaryAssociation": False,
        "fromObjectId": 901,
        "toObjectId": 42,
    }
    assert two["data"]["change"]["associationRemoved"] is True
    generic = {
        **crm.hubspot_association_event(62515, 7, 44, "NO_LABEL"),
        "subscriptionType": "object.associationChange",
        "fromObjectTypeId": "0-8",
        "toObjectTypeId": "0-3",
    }
    assert [e["subject"] for e in events(hubspot.translate(crm.dumps([generic]))[0])] == ["44"]


def test_hubspot_merge_restore_creation_and_deletion_each_name_their_deal():
    merge = crm.hubspot_merge_event(62515, 77, [5, 6])
    kinds = ["deal.creation", "deal.deletion", "deal.restore", "object.restore"]
    others = [
        {**crm.hubspot_deal_event(62515, objectId=80 + i, subscriptionType=kind),
         "objectTypeId": "0-3"}
        for i, kind in enumerate(kinds)
    ]  # fmt: skip
    published = events(hubspot.translate(crm.dumps([merge, *others]))[0])
    assert [e["subject"] for e in published] == ["77", "80", "81", "82", "83"]
    assert published[0]["data"]["change"] == {
        "subscriptionType": "deal.merge",
        "mergedObjectIds": [5, 6],
    }
    assert [e["data"]["change"]["subscriptionType"] for e in published[1:]] == kinds


def test_skipped_hubspot_events_are_counted_by_why_without_their_content():
    from worker import metrics

    def skipped(reason: str) -> float:
        return (
            metrics.INGRESS.get_sample_value(
                "provisioner_ingress_skipped_total", {"crm": "hubspot", "reason": reason}
            )
            or 0.0
        )

    before = skipped("not_a_deal"), skipped("malformed")
    contact = {**crm.hubspot_deal_event(1), "subscriptionType": "contact.creation"}
    broken = {**crm.hubspot_deal_event(1), "objectId": "secret-looking-value"}
    with capture_logs() as lines:
        hubspot.translate(crm.dumps([contact, broken, broken]))
    assert (skipped("not_a_deal"), skipped("malformed")) == (before[0] + 1, before[1] + 2)
    assert [line["event"] for line in lines] == ["hubspot_events_skipped"]
    assert "secret-looking-value" not in repr(lines)


@pytest.mark.parametrize(
    "deal_id,reason",
    [
        ("5/../7", "not digits"),
        ("../../v1/users/me", "not digits"),
        ("٣", "not digits"),  # a digit, but not an ASCII one
    ],
)
def test_a_pipedrive_deal_id_that_is_not_digits_is_malformed(deal_id, reason):
    payload = crm.pipedrive_deal_won("12882925")
    payload["meta"]["entity_id"] = deal_id
    with pytest.raises(Malformed, match=reason):
        pipedrive.translate(crm.dumps(payload))


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"title": "Acme\ud800"}, "lone surrogate"),
        ({"title": "Acme\x00"}, "NUL"),
    ],
)
def test_pipedrive_text_the_worker_could_not_store_is_malformed(change, reason):
    payload = crm.pipedrive_deal_won("12882925")
    payload["data"].update(change)
    with pytest.raises(Malformed, match=reason):
        pipedrive.translate(crm.dumps(payload))


@pytest.mark.parametrize(
    "stamp",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00Z",
     "9999-12-31T00:00:00Z"],
)  # fmt: skip
def test_times_without_a_utc_equivalent_or_outside_the_workers_range_are_malformed(stamp):
    payload = crm.pipedrive_deal_won("12882925", timestamp=stamp)
    with pytest.raises(Malformed, match="time"):
        pipedrive.translate(crm.dumps(payload))
    org = crm.salesforce_id("00D")
    note = crm.salesforce_message(org, [(crm.salesforce_id("04l"),
                                         crm.opportunity(LastModifiedDate=stamp))])  # fmt: skip
    with pytest.raises(Malformed, match="time"):
        salesforce.translate(note, organization_id=org)


@pytest.mark.parametrize("deal_id", ["006/../001", "006000000000001AAAX", "0060000000000"])
def test_a_salesforce_opportunity_id_of_another_form_is_malformed(deal_id):
    org = crm.salesforce_id("00D")
    note = crm.salesforce_message(org, [(crm.salesforce_id("04l"), crm.opportunity(Id=deal_id))])
    with pytest.raises(Malformed, match="15 or 18"):
        salesforce.translate(note, organization_id=org)


@pytest.mark.parametrize("encoding", ["x-unknown", "UTF-32", "utf-7", "idna", "rot13", "hex"])
def test_xml_declaring_an_encoding_the_reader_cannot_use_is_malformed(encoding):
    body = f'<?xml version="1.0" encoding="{encoding}"?><a/>'.encode()
    with pytest.raises(Malformed, match="encoding"):
        salesforce.translate(body, organization_id=crm.salesforce_id("00D"))


def test_a_pipedrive_won_change_gives_one_deal_changed_with_meta_data_and_previous():
    payload = crm.pipedrive_deal_won("12882925")
    (event,) = events(pipedrive.translate(crm.dumps(payload))[0])
    assert event["id"] == payload["meta"]["id"]
    assert event["source"] == "crm/pipedrive/12882925"
    assert event["subject"] == payload["meta"]["entity_id"]
    assert event["data"] == {
        "crm": "pipedrive",
        "account": "12882925",
        "deal_id": payload["meta"]["entity_id"],
        "occurred_at": "2026-11-27T14:25:28.000Z",
        "change": {"action": "change", "data": payload["data"], "previous": {"status": "open"}},
    }
    retry = {**payload, "meta": {**payload["meta"], "attempt": 3}}
    assert events(pipedrive.translate(crm.dumps(retry))[0]) == [event]


def test_pipedrive_events_about_other_entities_are_counted_not_published():
    payload = crm.pipedrive_deal_won("1", entity="person")
    assert pipedrive.translate(crm.dumps(payload)) == ([], 1)


@pytest.mark.parametrize(
    "meta,reason",
    [
        ({"version": "1.0"}, "only 2.0"),
        ({"id": ""}, "meta.id"),
        ({"timestamp": "yesterday"}, "time"),
    ],
)
def test_a_pipedrive_body_of_another_shape_is_malformed(meta, reason):
    with pytest.raises(Malformed, match=reason):
        pipedrive.translate(crm.dumps(crm.pipedrive_deal_won("1", **meta)))


def test_a_salesforce_message_with_two_notifications_gives_two_events():
    org = crm.salesforce_id("00D")
    first, second = crm.opportunity(), crm.opportunity(StageName="Delivery")
    notes = [(crm.salesforce_id("04l"), first), (crm.salesforce_id("04l"), second)]
    body = crm.salesforce_message(org, notes)
    one, two = events(salesforce.translate(body, organization_id=org)[0])
    assert [one["id"], two["id"]] == [notes[0][0], notes[1][0]]
    assert one["source"] == f"crm/salesforce/{org}"
    assert one["subject"] == first["Id"]
    assert one["data"]["change"] == first
    assert two["data"]["change"]["StageName"] == "Delivery"
    assert one["time"] == "2026-11-27T14:25:28.000Z"


def test_salesforce_organization_id_matches_in_its_15_character_form_too():
    org = crm.salesforce_id("00D")
    body = crm.salesforce_message(org[:15], [(crm.salesforce_id("04l"), crm.opportunity())])
    (event,) = events(salesforce.translate(body, organization_id=org)[0])
    assert event["source"] == f"crm/salesforce/{org}"


def test_a_salesforce_message_from_another_organization_is_unauthorized():
    body = crm.salesforce_message(crm.salesforce_id("00D"), [(crm.salesforce_id("04l"), {})])
    with pytest.raises(Unauthorized):
        salesforce.translate(body, organization_id=crm.salesforce_id("00D"))


BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><lolz>&lol2;</lolz>'
)
EXTERNAL = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'


@pytest.mark.parametrize(
    "body,reason",
    [
        (BOMB, "refused"),
        (EXTERNAL, "refused"),
        (b"<a>" * 40 + b"</a>" * 40, "deeper"),
        (b"not xml", "not XML"),
        (b"<soap/>", "not a Salesforce Outbound Message"),
        (b"\xff\xfe<", "not XML"),
    ],
)
def test_salesforce_xml_is_read_without_entities_dtds_or_deep_nesting(body, reason):
    with pytest.raises(Malformed, match=reason):
        salesforce.translate(body, organization_id=crm.salesforce_id("00D"))


def test_more_than_100_salesforce_notifications_are_malformed():
    org = crm.salesforce_id("00D")
    notes = [(crm.salesforce_id("04l"), crm.opportunity()) for _ in range(101)]
    with pytest.raises(Malformed, match="over 100"):
        salesforce.translate(crm.salesforce_message(org, notes), organization_id=org)


def test_the_generic_route_refuses_a_crm_event_only_the_crm_routes_make():
    """Sent there first, its (source, id) would make the CRM's genuine notification look
    like a duplicate to the worker."""
    forged = {
        "specversion": "1.0",
        "id": "123-1-2-1700000000000",
        "source": "crm/hubspot/123",
        "type": "crm.deal_changed",
        "time": "2026-11-30T10:00:00Z",
        "subject": "42",
        "data": {
            "crm": "hubspot",
            "account": "123",
            "deal_id": "42",
            "occurred_at": "2026-11-30T10:00:00Z",
            "change": {},
        },
    }

    with pytest.raises(Malformed, match="only from the CRM routes"):
        standard_webhooks.translate(json.dumps(forged).encode())
