"""Property: whatever arrives at any route, in any header, the ingress answers without a
5xx while the broker is up, and every message on NS.inbound belongs to a request it
accepted.

Bodies range from random bytes through arbitrary JSON to each sender's real shape with
arbitrary values, including what a broken CRM or a forger sends (``tests.strategies``:
NUL, lone surrogates, times without a UTC equivalent, path-climbing ids, XML declaring
encodings no reader can use); requests are sent unsigned, wrongly signed and correctly
signed (so bodies get past verification and reach the parsers), Salesforce's with no,
a wrong and the right endpoint token. The real server, the real broker."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import crm_webhooks as crm
from tests.e2e.test_ingress import hubspot_post, ingress, ingress_env, start_ingress, tap  # noqa: F401
from tests.strategies import hostile_crm_text, hostile_xml_declarations

pytestmark = pytest.mark.broker

ROUTES = ["/webhooks/hubspot", "/webhooks/pipedrive", "/webhooks/salesforce", "/webhooks/events"]
HEADER_NAMES = [
    "X-HubSpot-Signature-v3",
    "X-HubSpot-Request-Timestamp",
    "X-HubSpot-Signature",
    "X-HubSpot-Signature-Version",
    "Authorization",
    "Content-Type",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "Host",
]
header_text = st.text(alphabet=string.printable.strip("\r\n\x0b\x0c"), max_size=80)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    hostile_crm_text(),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


def shaped(template: dict) -> st.SearchStrategy[dict]:
    """The sender's shape: as it is, with one field changed or dropped, or with any field
    kept, replaced by an arbitrary value or dropped."""

    def one_changed(key_and_value) -> dict:
        key, value = key_and_value
        changed = dict(template)
        if value is _DROP:
            changed.pop(key)
        else:
            changed[key] = value
        return changed

    return st.one_of(
        st.just(template),
        st.tuples(st.sampled_from(sorted(template)), st.one_of(st.just(_DROP), json_values)).map(
            one_changed
        ),
        st.fixed_dictionaries(
            {},
            optional={key: st.one_of(st.just(v), json_values) for key, v in template.items()},
        ),
    )


_DROP = object()


# The senders' shapes, made once: strategies must draw their randomness from hypothesis.
HUBSPOT_EVENT = crm.hubspot_deal_event(62515)
HUBSPOT_ASSOCIATION = crm.hubspot_association_event(62515, 901, 42, "LINE_ITEM_TO_DEAL")
HUBSPOT_MERGE = crm.hubspot_merge_event(62515, 77, [5, 6])
PIPEDRIVE_WON = crm.pipedrive_deal_won("12882925")
NOTIFICATION_ID = crm.salesforce_id("04l")


def hubspot_bodies():
    events = st.one_of(shaped(HUBSPOT_EVENT), shaped(HUBSPOT_ASSOCIATION), shaped(HUBSPOT_MERGE))
    return st.lists(events, max_size=3).map(crm.dumps)


def pipedrive_bodies():
    won = PIPEDRIVE_WON
    whole = st.builds(
        lambda meta, rest: {"meta": meta, **rest},
        shaped(won["meta"]),
        shaped({"data": won["data"], "previous": won["previous"]}),
    )
    one_data_field = st.builds(
        lambda key, value: {**won, "data": {**won["data"], key: value}},
        st.sampled_from(sorted(won["data"])),
        hostile_crm_text(),
    )
    return st.one_of(whole, one_data_field).map(crm.dumps)


def salesforce_bodies(org: str):
    # XML 1.0 cannot carry NUL or a surrogate at all; the hostile times and ids can.
    xml_text = hostile_crm_text().filter(lambda t: t.isascii() and t.isprintable())
    fields = st.dictionaries(
        st.sampled_from(["Id", "StageName", "IsWon", "LastModifiedDate", "Name"]),
        st.text(alphabet=string.ascii_letters + string.digits + ":-.TZ<&", max_size=30) | xml_text,
    )
    orgs = st.one_of(st.just(org), st.just(org[:15]), st.text(max_size=20))
    ids = st.one_of(st.just(NOTIFICATION_ID), st.text(max_size=10))
    notes = st.lists(st.tuples(ids, fields), max_size=3)
    message = st.builds(crm.salesforce_message, orgs, notes)
    redeclared = st.builds(
        lambda body, declaration: declaration + body.partition(b"?>")[2],
        message,
        hostile_xml_declarations(),
    )
    return message | redeclared


def event_bodies():
    event = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "psa",
        "type": "timesheet.provision_requested",
        "time": "2026-11-27T14:25:28Z",
        "data": {"project_id": "P-1", "offering_id": "O-1"},
    }
    return shaped(event).map(crm.dumps)


@st.composite
def requests(draw, env: dict, origin: str):
    route = draw(st.sampled_from(ROUTES))
    kind = {
        "/webhooks/hubspot": hubspot_bodies(),
        "/webhooks/pipedrive": pipedrive_bodies(),
        "/webhooks/salesforce": salesforce_bodies(env["SALESFORCE_ORGANIZATION_ID"]),
        "/webhooks/events": event_bodies(),
    }[route]
    body = draw(st.one_of(kind, st.binary(max_size=300), json_values.map(crm.dumps)))
    headers = draw(st.dictionaries(st.sampled_from(HEADER_NAMES), header_text, max_size=4))
    path = route
    if route == "/webhooks/salesforce":
        token = env["SALESFORCE_WEBHOOK_TOKEN"]
        path = crm.salesforce_path(draw(st.sampled_from([None, token, token[:-1], ""])))
    if draw(st.booleans()):  # signed as the sender would: the body reaches the parser
        if route == "/webhooks/salesforce":
            path = crm.salesforce_path(env["SALESFORCE_WEBHOOK_TOKEN"])
        elif route == "/webhooks/hubspot":
            headers = crm.hubspot_v3_headers(
                env["HUBSPOT_CLIENT_SECRET"], "POST", f"{origin}{route}", body
            )
        elif route == "/webhooks/pipedrive":
            user, password = env["PIPEDRIVE_WEBHOOK_USER"], env["PIPEDRIVE_WEBHOOK_PASSWORD"]
            headers = crm.basic_auth(user, password)
        elif route == "/webhooks/events":
            headers = crm.standard_webhook_headers(env["PROVISIONER_WEBHOOK_SECRET"], body)
    return route, path, body, headers


def test_no_input_gets_a_5xx_while_the_broker_is_up_and_refused_requests_publish_nothing(
    ingress,  # noqa: F811
    ingress_env,  # noqa: F811
    tap,  # noqa: F811
):
    accepted: list[int] = []
    statuses: set[int] = set()

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(requests(ingress_env, ingress.origin))
    def check(request):
        route, path, body, headers = request
        status, _, answer = ingress.post(path, body, headers)
        statuses.add(status)
        assert status < 500, (status, answer)
        if 200 <= status < 300:
            if route == "/webhooks/salesforce":
                accepted.append(body.count(b"<Notification>"))  # every one is an Opportunity
            else:
                accepted.append(json.loads(answer)["published"])
        else:
            assert answer.count(b"\n") == 1, answer  # one line saying why

    check()
    assert len(tap.settle(quiet=1.0)) == sum(accepted)
    assert {200, 400, 401} <= statuses  # the properties were exercised on every branch
