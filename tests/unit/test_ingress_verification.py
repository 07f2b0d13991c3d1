"""Who the ingress trusts: HubSpot signatures (the published v1/v2 examples, v3 built as
documented), Pipedrive Basic credentials, Salesforce organization ids, Standard Webhooks."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from tests import crm_webhooks as crm
from worker.ingress import hubspot, pipedrive, salesforce, standard_webhooks
from worker.ingress.refusals import Unauthorized
from worker.ingress.salesforce_ids import to_18
from worker.ingress.settings import webhook_key

# HubSpot's published examples (reference §1.2; HubSpot "v1/v2 request validation").
EXAMPLE_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
V1_BODY = (
    b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
    b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
    b'"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
)
V1_SIGNATURE = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
V2_URI = "https://www.example.com/webhook_uri"
V2_GET_SIGNATURE = "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
V2_POST_BODY = b'{"example_field":"example_value"}'
V2_POST_SIGNATURE = "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"

URI = "https://hooks.example.com/webhooks/hubspot"
SECRET = "app-client-secret"


def now_ms() -> int:
    return int(time.time() * 1000)


def verify_v3(headers: dict, *, body: bytes, uri: str = URI, secret: str = SECRET) -> str:
    return hubspot.verify(
        {k.lower(): v for k, v in headers.items()},
        secret=secret,
        method="POST",
        uri=uri,
        body=body,
        legacy=False,
        now_ms=now_ms(),
    )


def legacy(version: str, signature: str, **kwargs) -> str:
    headers = {"x-hubspot-signature": signature, "x-hubspot-signature-version": version}
    return hubspot.verify(headers, now_ms=now_ms(), **kwargs)


def test_hubspots_published_v1_example_verifies_with_its_secret():
    assert (
        legacy(
            "v1",
            V1_SIGNATURE,
            secret=EXAMPLE_SECRET,
            method="POST",
            uri=URI,
            body=V1_BODY,
            legacy=True,
        )
        == "v1"
    )


@pytest.mark.parametrize(
    "method,body,signature",
    [("GET", b"", V2_GET_SIGNATURE), ("POST", V2_POST_BODY, V2_POST_SIGNATURE)],
)
def test_hubspots_published_v2_examples_verify_with_their_secret(method, body, signature):
    kwargs = dict(secret=EXAMPLE_SECRET, method=method, uri=V2_URI, body=body, legacy=True)
    assert legacy("v2", signature, **kwargs) == "v2"


def test_legacy_signatures_are_refused_unless_enabled():
    with pytest.raises(Unauthorized, match="HUBSPOT_LEGACY_SIGNATURES"):
        legacy("v1", V1_SIGNATURE, secret=EXAMPLE_SECRET, method="POST", uri=URI, body=V1_BODY,
               legacy=False)  # fmt: skip


def test_a_legacy_signature_over_another_body_is_refused():
    with pytest.raises(Unauthorized):
        legacy("v1", V1_SIGNATURE, secret=EXAMPLE_SECRET, method="POST", uri=URI,
               body=V1_BODY + b" ", legacy=True)  # fmt: skip


def test_a_v3_request_built_the_documented_way_verifies():
    body = crm.dumps([crm.hubspot_deal_event(62515)])
    assert verify_v3(crm.hubspot_v3_headers(SECRET, "POST", URI, body), body=body) == "v3"


def test_v3_decodes_the_escapes_hubspot_lists_before_hashing():
    # HubSpot signs the URI with %3A, %2F, %40 … decoded (its table); the request line
    # still carries them encoded.
    body = b"[]"
    signed_as = "https://hooks.example.com/webhooks/hubspot?account=a:b/c@d"
    headers = crm.hubspot_v3_headers(SECRET, "POST", signed_as, body)
    arrived_as = "https://hooks.example.com/webhooks/hubspot?account=a%3Ab%2fc%40d"
    assert verify_v3(headers, body=body, uri=arrived_as) == "v3"


@pytest.mark.parametrize(
    "case",
    ["forged", "expired", "future", "altered body", "other url", "no timestamp", "no signature"],
)
def test_v3_refuses_forged_expired_future_and_altered_requests(case):
    body = crm.dumps([crm.hubspot_deal_event(62515)])
    six_minutes = 6 * 60 * 1000
    headers = {
        "forged": lambda: crm.hubspot_v3_headers("not-the-secret", "POST", URI, body),
        "expired": lambda: crm.hubspot_v3_headers(
            SECRET, "POST", URI, body, now_ms() - six_minutes
        ),
        "future": lambda: crm.hubspot_v3_headers(SECRET, "POST", URI, body, now_ms() + six_minutes),
        "altered body": lambda: crm.hubspot_v3_headers(SECRET, "POST", URI, body[:-1] + b" ]"),
        "other url": lambda: crm.hubspot_v3_headers(SECRET, "POST", URI + "x", body),
        "no timestamp": lambda: {
            "X-HubSpot-Signature-v3": crm.hubspot_v3_headers(SECRET, "POST", URI, body)[
                "X-HubSpot-Signature-v3"
            ]
        },
        "no signature": lambda: {"X-HubSpot-Request-Timestamp": str(now_ms())},
    }[case]()
    with pytest.raises(Unauthorized):
        verify_v3(headers, body=body)


def test_v3_within_the_window_either_way_verifies():
    body = b"[]"
    for skew in (-4 * 60 * 1000, 4 * 60 * 1000):
        headers = crm.hubspot_v3_headers(SECRET, "POST", URI, body, now_ms() + skew)
        assert verify_v3(headers, body=body) == "v3"


def test_pipedrive_credentials_must_match_exactly():
    pipedrive.verify(crm.basic_auth("hook", "pw")["Authorization"], user="hook", password="pw")
    for wrong in (
        crm.basic_auth("hook", "pw2")["Authorization"],
        crm.basic_auth("hook2", "pw")["Authorization"],
        "Basic !!!",
        "Bearer x",
        None,
    ):
        with pytest.raises(Unauthorized) as refused:
            pipedrive.verify(wrong, user="hook", password="pw")
        assert refused.value.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    "query,reason",
    [
        (b"", "missing"),
        (b"tokn=x", "missing"),
        (b"token=", "wrong"),
        (b"token=guess", "wrong"),
        (b"token=%ff%fe", "wrong"),
        (b"token=RIGHT&token=RIGHT", "more than one"),  # one token, not a choice of several
    ],
)
def test_the_salesforce_endpoint_token_must_be_there_once_and_equal(query, reason):
    token = crm.salesforce_webhook_token()
    with pytest.raises(Unauthorized, match=reason) as refused:
        salesforce.verify_token(query.replace(b"RIGHT", token.encode()), token=token)
    assert token not in refused.value.reason


def test_the_right_salesforce_endpoint_token_passes_among_other_parameters():
    token = crm.salesforce_webhook_token()
    salesforce.verify_token(f"token={token}".encode(), token=token)
    salesforce.verify_token(f"source=sf&token={token}".encode(), token=token)


def test_salesforce_ids_match_in_both_forms_and_a_bad_suffix_does_not():
    id18 = crm.salesforce_id("00D")
    assert to_18(id18[:15]) == id18
    assert to_18(id18) == id18
    assert to_18(id18[:15] + id18[15:].lower()) == id18  # the suffix is case-insensitive
    wrong_suffix = id18[:15] + ("AAA" if id18[15:] != "AAA" else "BBB")
    assert to_18(wrong_suffix) is None
    assert to_18(id18[:15].swapcase()) != id18  # the 15-character form is case-sensitive


def test_standard_webhooks_accepts_any_matching_v1_signature_of_a_rotation():
    old, new = crm.whsec(), crm.whsec()
    body = b'{"x": 1}'
    headers = crm.standard_webhook_headers(new, body)
    signed_old = crm.standard_webhook_headers(
        old, body, ts=headers["webhook-timestamp"], msg_id=headers["webhook-id"]
    )
    headers["webhook-signature"] = (
        f"v1a,ignored {signed_old['webhook-signature']} {headers['webhook-signature']}"
    )
    lower = {k.lower(): v for k, v in headers.items()}
    for secret in (old, new):
        standard_webhooks.verify(lower, body, key=webhook_key(_secret(secret)), now=time.time())


@pytest.mark.parametrize("case", ["wrong key", "expired", "future", "altered", "no id"])
def test_standard_webhooks_refuses_wrong_expired_future_and_altered(case):
    secret, body = crm.whsec(), b'{"x": 1}'
    ts = {"expired": int(time.time()) - 301, "future": int(time.time()) + 301}.get(case)
    headers = crm.standard_webhook_headers(crm.whsec() if case == "wrong key" else secret, body, ts)
    if case == "no id":
        del headers["webhook-id"]
    sent = body + b" " if case == "altered" else body
    lower = {k.lower(): v for k, v in headers.items()}
    with pytest.raises(Unauthorized):
        standard_webhooks.verify(lower, sent, key=webhook_key(_secret(secret)), now=time.time())


def _secret(text: str) -> SecretStr:
    return SecretStr(text)
