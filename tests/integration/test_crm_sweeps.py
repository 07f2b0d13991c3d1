"""The changed-since listings of Pipedrive and Salesforce (``CrmSweep``) against their fakes
over HTTP, two deals a page: every deal changed in ``[since, until)`` comes once, oldest
first, with its stage as ``read_deal`` gives it; nothing outside the window does, at either
end, even when the window ends in the middle of a second; the account is the one webhooks
name; a throttle in the middle of a listing is waited out and the listing completes."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters import salesforce_session as oauth
from adapters.http import HOLD_OFF_CEILING, default_retrying
from adapters.salesforce import SalesforceCrm
from fakes.salesforce import FakeSalesforce
from handlers.crm_rules import DEFAULT_FIELDS
from handlers.ports import StageFacts
from schemas.errors import VendorUnavailable
from tests.builders import rid
from tests.integration.crm_harnesses import (
    LOST,
    OPEN,
    WON,
    PipedriveHarness,
    SalesforceHarness,
)
from tests.integration.harness import fast_retrying

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # the start of every window below


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- Pipedrive ------------------------------------------------------------------------------


@pytest.fixture
def pipedrive():
    harness = PipedriveHarness()
    yield harness
    harness.fake.stop()


def pipedrive_deal(harness: PipedriveHarness, changed: datetime, place: str = WON) -> str:
    deal_id = harness.seed(rid("Deal"), client=rid("Acme"), items=[("Build", 10)], place=place)
    harness.set_modified(deal_id, changed)
    return deal_id


def test_pipedrive_lists_each_deal_of_the_window_once_oldest_first_across_pages(pipedrive):
    # Seeded out of order, so that the order can only come from the listing's sort.
    inside = {seconds: pipedrive_deal(pipedrive, at(seconds)) for seconds in (40, 0, 3599, 7, 900)}
    pipedrive_deal(pipedrive, at(-1))  # just before since
    pipedrive_deal(pipedrive, at(3600))  # at until: outside, the window is half-open

    listed = list(pipedrive.crm().changed_deals(at(0), at(3600)))

    assert [c.deal_id for c in listed] == [inside[s] for s in sorted(inside)]
    assert [c.modified_at for c in listed] == [at(s) for s in sorted(inside)]
    assert pipedrive.fake.requests_to("GET", "/api/v2/deals") == 3  # 2 + 2 + 1
    assert pipedrive.fake.retired_reads() == []


def test_pipedrive_stage_facts_are_those_read_deal_gives(pipedrive):
    deals = {place: pipedrive_deal(pipedrive, at(10), place) for place in (OPEN, WON, LOST)}
    crm = pipedrive.crm()

    listed = {c.deal_id: c.stage for c in crm.changed_deals(at(0), at(60))}

    assert listed == {deal_id: crm.read_deal(deal_id).stage for deal_id in deals.values()}
    assert listed[deals[WON]] == StageFacts("3", won=True, lost=False, label="status won")
    assert listed[deals[LOST]].lost and not listed[deals[OPEN]].won


def test_pipedrive_windows_split_inside_a_second_share_no_deal_and_miss_none(pipedrive):
    # update_time is kept to the second: the query's bounds are whole seconds, the window not.
    deals = [pipedrive_deal(pipedrive, at(s)) for s in (0, 1, 2, 3)]
    crm = pipedrive.crm()

    first = list(crm.changed_deals(at(0.5), at(2.5)))
    second = list(crm.changed_deals(at(2.5), at(4)))

    assert [c.deal_id for c in first] == deals[1:3]
    assert [c.deal_id for c in second] == deals[3:]


def test_pipedrive_a_deal_changed_while_listed_comes_once(pipedrive):
    deals = [pipedrive_deal(pipedrive, at(s)) for s in (1, 2, 3, 4)]
    listing = pipedrive.crm().changed_deals(at(0), at(60))
    seen = [next(listing).deal_id, next(listing).deal_id]  # the first page

    # Changed again now, it sorts after the others: the keyset cursor meets it a second time.
    pipedrive.fake.set_update_time(int(deals[0]), at(30))
    seen += [c.deal_id for c in listing]

    assert seen == deals


def test_pipedrive_a_status_change_moves_the_deal_into_a_later_window(pipedrive):
    deal_id = pipedrive_deal(pipedrive, at(-3600), place=OPEN)
    before = datetime.now(UTC).replace(microsecond=0)
    pipedrive.fake.set_status(int(deal_id), "won")

    listed = list(pipedrive.crm().changed_deals(before, at(10**8)))

    assert [(c.deal_id, c.stage.won) for c in listed] == [(deal_id, True)]
    assert listed[0].modified_at >= before


def test_pipedrive_a_daily_budget_spent_mid_listing_ends_it_with_the_wait_to_the_reset(
    pipedrive,
):
    for s in range(4):
        pipedrive_deal(pipedrive, at(s))
    crm = pipedrive.crm()
    crm.clock = lambda: datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
    listing = crm.changed_deals(at(0), at(60))
    next(listing), next(listing)
    pipedrive.fake.spend_daily_budget()

    with pytest.raises(VendorUnavailable) as failed:
        list(listing)

    assert failed.value.retry_after == 10 * 3600 > HOLD_OFF_CEILING  # to midnight UTC
    assert pipedrive.fake.throttled == 1  # and not re-sent


def test_pipedrive_leaves_out_deleted_deals(pipedrive):
    kept = pipedrive_deal(pipedrive, at(5))
    gone = pipedrive_deal(pipedrive, at(6))
    pipedrive.fake.set_status(int(gone), "deleted")
    pipedrive.fake.set_update_time(int(gone), at(7))

    assert [c.deal_id for c in pipedrive.crm().changed_deals(at(0), at(60))] == [kept]


def test_pipedrive_account_is_the_company_of_the_tokens_user_read_once(pipedrive):
    crm = pipedrive.crm()

    assert crm.account_id() == crm.account_id() == str(pipedrive.fake.company_id)
    assert pipedrive.fake.requests_to("GET", "/api/v1/users/me") == 1


def test_pipedrive_throttle_in_the_middle_of_a_listing_is_waited_out(pipedrive):
    deals = [pipedrive_deal(pipedrive, at(s)) for s in range(5)]
    # The adapters' own policy: it waits the reset Pipedrive gives (x-ratelimit-reset).
    listing = pipedrive.crm(retrying=default_retrying()).changed_deals(at(0), at(60))
    seen = [next(listing).deal_id, next(listing).deal_id]
    pipedrive.fake.throttle_next(1, retry_after=1)

    started = time.monotonic()
    seen += [c.deal_id for c in listing]

    assert seen == deals
    assert pipedrive.fake.throttled == 1
    assert time.monotonic() - started >= 1.0


def test_pipedrive_listing_uses_v2_while_v1_deal_lists_stay_gone(pipedrive):
    pipedrive_deal(pipedrive, at(1))

    assert len(list(pipedrive.crm().changed_deals(at(0), at(60)))) == 1
    answer = requests.get(
        f"{pipedrive.fake.origin}/api/v1/deals",
        params={"sort": "update_time ASC"},
        headers={"x-api-token": pipedrive.fake.token},
        timeout=5,
    )
    assert answer.status_code == 410
    assert [path for _, path, _ in pipedrive.fake.retired_reads()] == ["/api/v1/deals"]


def test_pipedrive_fake_refuses_a_window_that_is_not_rfc_3339(pipedrive):
    answer = requests.get(
        f"{pipedrive.fake.origin}/api/v2/deals",
        params={"updated_since": "2026-03-02 09:00:00"},  # v1's format, not v2's
        headers={"x-api-token": pipedrive.fake.token},
        timeout=5,
    )

    assert answer.status_code == 400 and answer.json()["success"] is False


# -- Salesforce -----------------------------------------------------------------------------


@pytest.fixture
def salesforce():
    harness = SalesforceHarness()
    yield harness
    harness.fake.stop()


def opportunity(harness: SalesforceHarness, changed: datetime, place: str = WON) -> str:
    deal_id = harness.seed(rid("Deal"), client=rid("Acme"), items=[("Build", 10)], place=place)
    harness.set_modified(deal_id, changed)
    return deal_id


def test_salesforce_lists_each_opportunity_of_the_window_once_oldest_first_across_pages(
    salesforce,
):
    inside = {seconds: opportunity(salesforce, at(seconds)) for seconds in (40, 0, 3599.9, 7, 900)}
    opportunity(salesforce, at(-0.001))  # just before since
    opportunity(salesforce, at(3600))  # at until: outside, the window is half-open

    listed = list(salesforce.crm().changed_deals(at(0), at(3600)))

    assert [c.deal_id for c in listed] == [inside[s] for s in sorted(inside)]
    assert [c.modified_at for c in listed] == [at(s) for s in sorted(inside)]
    assert salesforce.fake.requests_to("GET", r"/services/data/v60\.0/query") == 1
    assert salesforce.fake.requests_to("GET", r"/services/data/v60\.0/query/[\w-]+") == 2


def test_salesforce_stage_facts_are_those_read_deal_gives(salesforce):
    deals = {place: opportunity(salesforce, at(10), place) for place in (OPEN, WON, LOST)}
    crm = salesforce.crm()

    listed = {c.deal_id: c.stage for c in crm.changed_deals(at(0), at(60))}

    assert listed == {deal_id: crm.read_deal(deal_id).stage for deal_id in deals.values()}
    assert listed[deals[WON]] == StageFacts("Closed Won", won=True, lost=False, label="Closed Won")
    assert listed[deals[LOST]].lost and not listed[deals[OPEN]].won


def test_salesforce_windows_split_inside_a_second_share_no_opportunity_and_miss_none(salesforce):
    # SOQL's literals stop at the second; SystemModstamp goes to the millisecond.
    deals = [opportunity(salesforce, at(s)) for s in (0.2, 0.7, 1.4, 2.6)]
    crm = salesforce.crm()

    first = list(crm.changed_deals(at(0.5), at(1.5)))
    second = list(crm.changed_deals(at(1.5), at(3)))

    assert [c.deal_id for c in first] == deals[1:3]
    assert [c.deal_id for c in second] == deals[3:]


def test_salesforce_a_stage_change_moves_the_modstamp_into_a_later_window(salesforce):
    deal_id = opportunity(salesforce, at(-3600), place=OPEN)
    before = datetime.now(UTC)
    salesforce.fake.set_stage(deal_id, "Closed Won", won=True, closed=True)

    listed = list(salesforce.crm().changed_deals(before - timedelta(seconds=1), at(10**8)))

    assert [(c.deal_id, c.stage.won) for c in listed] == [(deal_id, True)]
    assert listed[0].modified_at >= before.replace(microsecond=0)


def test_salesforce_throttle_in_the_middle_of_a_listing_is_waited_out(salesforce):
    deals = [opportunity(salesforce, at(s)) for s in range(5)]
    listing = salesforce.crm().changed_deals(at(0), at(60))
    seen = [next(listing).deal_id, next(listing).deal_id]
    salesforce.fake.refuse_concurrent(1)  # 403 REQUEST_LIMIT_EXCEEDED, ConcurrentRequests

    seen += [c.deal_id for c in listing]

    assert seen == deals
    assert salesforce.fake.throttled == 1


def test_salesforce_fake_refuses_a_quoted_datetime_literal(salesforce):
    answer = requests.get(
        f"{salesforce.fake.origin}/services/data/v60.0/query",
        params={"q": "SELECT Id, StageName, IsWon, IsClosed, SystemModstamp FROM Opportunity "
                "WHERE SystemModstamp >= '2026-03-02T09:00:00Z' AND SystemModstamp < "
                "'2026-03-02T10:00:00Z' ORDER BY SystemModstamp"},
        headers={"Authorization": f"Bearer {salesforce.fake.token}"},
        timeout=5,
    )  # fmt: skip

    assert answer.status_code == 400 and answer.json()[0]["errorCode"] == "MALFORMED_QUERY"


def test_salesforce_account_with_a_static_token_is_the_organization_record(salesforce):
    crm = salesforce.crm()

    assert crm.account_id() == crm.account_id() == salesforce.fake.organization_id
    assert len(crm.account_id()) == 18
    assert salesforce.fake.requests_to("GET", r"/services/data/v60\.0/query") == 1


CLIENT_ID = "3MVG9" + secrets.token_hex(20)
USERNAME = "sweeps@acme.example"


@pytest.fixture(scope="module")
def key_pair() -> tuple[str, str]:
    """A fresh RSA key: the private key's PEM (ours) and the public key's (the app's)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


@pytest.mark.parametrize("flow", ["refresh_token", "client_credentials", oauth.JWT_BEARER])
def test_salesforce_account_under_each_oauth_flow_comes_from_the_token_answer(flow, key_pair):
    private, public = key_pair
    with FakeSalesforce(rate_limit=None) as fake:
        secret, refresh = secrets.token_urlsafe(24), "5Aep" + secrets.token_urlsafe(40)
        fake.add_connected_app(CLIENT_ID, secret, refresh_tokens={refresh}, run_as_user=True,
                               jwt_users={USERNAME}, public_key=public)  # fmt: skip
        grant = {
            "refresh_token": oauth.refresh_token_grant(CLIENT_ID, secret, refresh),
            "client_credentials": oauth.client_credentials_grant(CLIENT_ID, secret),
            oauth.JWT_BEARER: oauth.jwt_bearer_grant(CLIENT_ID, USERNAME, private, fake.origin),
        }[flow]
        session = oauth.SalesforceSession(fake.origin, grant, retrying=fast_retrying())
        crm = SalesforceCrm(session, fields=DEFAULT_FIELDS["salesforce"], retrying=fast_retrying())

        assert crm.account_id() == fake.organization_id
        assert fake.tokens_issued == [flow]
        assert fake.requests_to("GET", r"/services/data/.*") == 0  # no query needed
