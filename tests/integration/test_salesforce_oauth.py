"""Salesforce sessions that end, against the fake org over HTTP: each OAuth flow signs in, an
expired session is renewed once (one token request however many lanes meet the 401), a
refused grant names the settings and never the secret, and the two API limits wait as long
as they take to recover: an hour for the daily total, seconds for the concurrent one.

A rotated refresh token is kept in the state store (SQLite and a real PostgreSQL): a restart
and a second process sign in with the newest one and never send one Salesforce has
invalidated, a newly configured refresh token starts a chain of its own, and a kept token
never shows in a log line or a refusal."""

from __future__ import annotations

import io
import json
import secrets
import threading

import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters import salesforce_session as oauth
from adapters.salesforce import DAILY_WAIT, SalesforceCrm
from adapters.store import SqlStore
from fakes.salesforce import FakeSalesforce
from handlers.crm_rules import DEFAULT_FIELDS
from schemas.errors import VendorAuth, VendorUnavailable
from tests.integration.harness import fast_retrying
from worker import logs, metrics

CLIENT_ID = "3MVG9" + secrets.token_hex(20)
USERNAME = "integration@acme.example"
OPPORTUNITY = r"/services/data/v60\.0/sobjects/Opportunity/\w+"


def key_pair() -> tuple[str, str]:
    """A fresh RSA key: the private key's PEM (ours) and the public key's (the app's)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


PRIVATE_KEY, PUBLIC_KEY = key_pair()


@pytest.fixture
def org():
    with FakeSalesforce(rate_limit=None) as fake:
        fake.secret = secrets.token_urlsafe(24)
        fake.refresh_token = "5Aep" + secrets.token_urlsafe(40)
        fake.add_connected_app(
            CLIENT_ID,
            fake.secret,
            refresh_tokens={fake.refresh_token},
            run_as_user=True,
            jwt_users={USERNAME},
            public_key=PUBLIC_KEY,
        )
        fake.deal = fake.add_opportunity(
            "Rollout", "Closed Won", won=True, account=fake.add_account("Initech"),
            owner=fake.add_user("owner@example.com"), line_items=[("Setup", 12)],
        )  # fmt: skip
        yield fake


def grants(fake: FakeSalesforce) -> dict[str, oauth.Grant]:
    return {
        "refresh_token": oauth.refresh_token_grant(CLIENT_ID, fake.secret, fake.refresh_token),
        "client_credentials": oauth.client_credentials_grant(CLIENT_ID, fake.secret),
        oauth.JWT_BEARER: oauth.jwt_bearer_grant(CLIENT_ID, USERNAME, PRIVATE_KEY, fake.origin),
    }


def reader(fake: FakeSalesforce, grant: oauth.Grant | None, **session) -> SalesforceCrm:
    return SalesforceCrm(
        oauth.SalesforceSession(fake.origin, grant, retrying=fast_retrying(), **session),
        fields=DEFAULT_FIELDS["salesforce"],
        retrying=fast_retrying(),
        limits=metrics.SALESFORCE_LIMITS,
    )


@pytest.mark.parametrize("flow", ["refresh_token", "client_credentials", oauth.JWT_BEARER])
def test_each_flow_gets_a_token_and_the_instance_url_from_the_answer(org, flow):
    crm = reader(org, grants(org)[flow])

    deal = crm.read_deal(org.deal)

    assert deal.deal_id == org.deal and deal.stage.won and deal.project is not None
    assert org.tokens_issued == [flow]
    assert crm.session.instance_url() == org.origin


def test_an_expired_session_is_renewed_once_and_the_read_succeeds(org):
    crm = reader(org, grants(org)["refresh_token"])
    crm.read_deal(org.deal)
    org.expire_sessions()

    deal = crm.read_deal(org.deal)

    assert deal.stage.won
    assert org.tokens_issued == ["refresh_token", "refresh_token"]
    assert [s for m, p, s in org.log if m == "GET" and s == 401] == [401]


def test_many_lanes_meeting_the_401_at_once_cause_exactly_one_token_request(org):
    crm = reader(org, grants(org)["client_credentials"])
    crm.read_deal(org.deal)
    org.expire_sessions()
    start = threading.Barrier(8)
    read, failed = [], []

    def lane() -> None:
        start.wait()
        try:
            read.append(crm.read_deal(org.deal).deal_id)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            failed.append(exc)

    lanes = [threading.Thread(target=lane) for _ in range(8)]
    for thread in lanes:
        thread.start()
    for thread in lanes:
        thread.join(30)

    assert failed == [] and read == [org.deal] * 8
    assert org.tokens_issued == ["client_credentials"] * 2
    assert org.requests_to("POST", "/services/oauth2/token") == 2


@pytest.mark.parametrize(
    "make, setting",
    [
        (lambda f: oauth.client_credentials_grant(CLIENT_ID, "wrong-" + f.secret),
         "SALESFORCE_CLIENT_SECRET"),
        (lambda f: oauth.refresh_token_grant(CLIENT_ID, f.secret, "5Aep-revoked-token-xyz"),
         "SALESFORCE_REFRESH_TOKEN"),
        (lambda f: oauth.jwt_bearer_grant(CLIENT_ID, USERNAME, key_pair()[0], f.origin),
         "SALESFORCE_PRIVATE_KEY_FILE"),
        (lambda f: oauth.jwt_bearer_grant(CLIENT_ID, "stranger@acme.example", PRIVATE_KEY,
                                          f.origin), "SALESFORCE_USERNAME"),
    ],
)  # fmt: skip
def test_a_refused_grant_is_vendor_auth_naming_the_setting_and_never_the_secret(org, make, setting):
    grant = make(org)
    crm = reader(org, grant)

    with pytest.raises(VendorAuth) as refused:
        crm.read_deal(org.deal)

    message = refused.value.message
    assert setting in message and "invalid_" in message
    for secret in grant.secrets:
        assert secret not in message
    assert org.tokens_issued == [] and org.requests_to("GET", OPPORTUNITY) == 0


def test_a_static_tokens_session_over_is_vendor_auth_naming_the_access_token_setting(org):
    crm = reader(org, None, access_token=org.token, instance_url=org.origin)
    org.expire_sessions()

    with pytest.raises(VendorAuth) as refused:
        crm.read_deal(org.deal)

    assert "SALESFORCE_ACCESS_TOKEN" in refused.value.message
    assert org.token not in refused.value.message
    assert org.requests_to("POST", "/services/oauth2/token") == 0


def test_a_spent_daily_total_waits_an_hour_and_is_not_sent_again(org):
    crm = reader(org, grants(org)["refresh_token"])
    org.spend_daily_total()

    with pytest.raises(VendorUnavailable) as spent:
        crm.read_deal(org.deal)

    assert spent.value.retry_after == DAILY_WAIT and not spent.value.safe_to_retry
    assert org.requests_to("GET", OPPORTUNITY) == 1  # no burst on a limit that needs hours


def test_the_concurrent_request_limit_waits_short_and_the_read_is_retried(org):
    crm = reader(org, grants(org)["refresh_token"])
    org.refuse_concurrent(2)

    deal = crm.read_deal(org.deal)

    assert deal.deal_id == org.deal and org.throttled == 2
    assert org.requests_to("GET", OPPORTUNITY) == 3


def test_the_daily_api_usage_of_every_answer_is_a_gauge(org):
    org.api_usage, org.allocation = 4_100, 15_000
    crm = reader(org, grants(org)["refresh_token"])

    crm.read_deal(org.deal)

    def sample(count: str) -> float | None:
        labels = {"crm": "salesforce", "count": count}
        return metrics.WORKER.get_sample_value("provisioner_crm_daily_api_requests", labels)

    assert sample("used") == org.api_usage > 4_100
    assert sample("allocation") == 15_000


def test_a_token_obtained_at_run_time_is_redacted_from_every_log_line(org, restore_logging):
    stream = io.StringIO()
    logs.configure(secrets=[], stream=stream, form="json")
    issued: list[str] = []

    def learn(token: str) -> None:
        issued.append(token)
        logs.learn_secret(token)

    crm = reader(org, grants(org)["refresh_token"], on_token=learn)
    crm.read_deal(org.deal)
    structlog.get_logger("test").warning("oops", header=f"Bearer {issued[0]}")

    [line] = [json.loads(x) for x in stream.getvalue().splitlines() if '"oops"' in x]
    assert line["header"] == "Bearer [redacted]" and issued[0] not in stream.getvalue()


def test_a_rotated_refresh_token_is_kept_so_the_next_renewal_still_signs_in(org):
    org.apps[CLIENT_ID].rotate_refresh_tokens = True
    crm = reader(org, grants(org)["refresh_token"])
    crm.read_deal(org.deal)
    used = set(org.apps[CLIENT_ID].refresh_tokens)

    for _ in range(3):  # each renewal spends the refresh token the one before it got
        org.expire_sessions()
        assert crm.read_deal(org.deal).stage.won

    assert org.tokens_issued == ["refresh_token"] * 4
    assert org.refresh_token not in org.apps[CLIENT_ID].refresh_tokens
    assert org.apps[CLIENT_ID].refresh_tokens.isdisjoint(used)


@pytest.mark.parametrize(
    ("login_url", "audience"),
    [
        ("https://login.salesforce.com", "https://login.salesforce.com"),
        ("https://test.salesforce.com/", "https://test.salesforce.com"),
        ("https://acme.my.salesforce.com", "https://login.salesforce.com"),
        ("https://acme--uat.sandbox.my.salesforce.com", "https://test.salesforce.com"),
        ("http://127.0.0.1:8443", "http://127.0.0.1:8443"),
    ],
)
def test_the_jwt_audience_is_salesforces_authorization_server_not_the_my_domain(
    login_url, audience
):
    assert oauth.jwt_audience(login_url) == audience


# -- a rotated refresh token kept in the state store ------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture
def open_store(store_url):
    """Opens another ``SqlStore`` on one database each call, as another process would."""
    opened: list[SqlStore] = []

    def open_one() -> SqlStore:
        opened.append(SqlStore.from_url(store_url))
        return opened[-1]

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def rotating(org):
    """The org with refresh token rotation on, and each refresh token its token endpoint is
    sent, with the status it answered."""
    org.apps[CLIENT_ID].rotate_refresh_tokens = True
    sent: list[tuple[str, int]] = []
    answer = org._token

    def recording(request):
        response = answer(request)
        if "refresh_token" in request.form:
            sent.append((request.form["refresh_token"][0], response.status))
        return response

    org._token = recording  # the fake calls it under its lock
    return org, sent


def kept(fake: FakeSalesforce, store: SqlStore, refresh_token: str | None = None, **session):
    """A reader whose session keeps rotated refresh tokens in ``store``."""
    token = refresh_token or fake.refresh_token
    grant = oauth.refresh_token_grant(CLIENT_ID, fake.secret, token)
    return reader(fake, grant, keeper=store, **session)


def stored(store: SqlStore, refresh_token: str) -> str | None:
    return store.refresh_token("salesforce", oauth.refresh_token_chain(CLIENT_ID, refresh_token))


def test_a_restart_signs_in_with_the_refresh_token_the_state_store_kept(rotating, open_store):
    org, sent = rotating
    before = kept(org, open_store())
    before.read_deal(org.deal)
    for _ in range(2):  # two renewals, each spending the refresh token the one before got
        org.expire_sessions()
        before.read_deal(org.deal)

    after = kept(org, open_store())  # the same settings and database, a new process

    assert after.read_deal(org.deal).stage.won
    assert [token for token, _ in sent].count(org.refresh_token) == 1  # only the first sign-in
    assert [status for _, status in sent] == [200] * 4
    assert org.tokens_issued == ["refresh_token"] * 4


def test_two_processes_renewing_in_turn_and_at_once_never_send_an_invalidated_token(
    rotating, open_store
):
    org, sent = rotating
    one, other = kept(org, open_store()), kept(org, open_store())
    for crm in (one, other, one, other):  # in turn: each spends what the other was given
        org.expire_sessions()
        assert crm.read_deal(org.deal).stage.won
    org.expire_sessions()
    start = threading.Barrier(8)
    read, failed = [], []

    def lane(crm) -> None:
        start.wait()
        try:
            read.append(crm.read_deal(org.deal).deal_id)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            failed.append(exc)

    lanes = [threading.Thread(target=lane, args=(crm,)) for crm in [one, other] * 4]
    for thread in lanes:
        thread.start()
    for thread in lanes:
        thread.join(30)

    assert failed == [] and read == [org.deal] * 8
    # One renewal a process at once, and no refresh token sent twice: none was invalid.
    assert [status for _, status in sent] == [200] * 6
    assert len({token for token, _ in sent}) == 6
    assert org.tokens_issued == ["refresh_token"] * 6


def test_a_newly_configured_refresh_token_is_used_as_configured(rotating, open_store):
    org, sent = rotating
    store = open_store()
    old = kept(org, store)
    old.read_deal(org.deal)
    org.expire_sessions()
    old.read_deal(org.deal)
    # The app authorised again: a refresh token of another chain, set in the settings.
    renewed = "5Aep" + secrets.token_urlsafe(40)
    org.apps[CLIENT_ID].refresh_tokens.add(renewed)

    assert kept(org, open_store(), renewed).read_deal(org.deal).stage.won

    assert sent[-1] == (renewed, 200)
    assert stored(store, renewed) not in (None, stored(store, org.refresh_token))


def test_a_kept_refresh_token_never_shows_in_a_log_line_or_a_refusal(rotating, open_store):
    org, _ = rotating
    store = open_store()
    with structlog.testing.capture_logs() as captured:
        crm = kept(org, store)
        crm.read_deal(org.deal)
        org.expire_sessions()
        crm.read_deal(org.deal)
    token = stored(store, org.refresh_token)
    assert token in org.apps[CLIENT_ID].refresh_tokens
    assert token not in repr(captured) and org.refresh_token not in repr(captured)
    [line] = [e for e in captured if e["event"] == "salesforce_refresh_token_kept"]
    assert line["log_level"] == "info"
    assert not [e for e in captured if e["event"] == "salesforce_refresh_token_rotated"]
    org.apps[CLIENT_ID].refresh_tokens.clear()  # an admin revokes the app's tokens
    learned: list[str] = []

    with pytest.raises(VendorAuth) as refused:
        kept(org, open_store(), on_token=learned.append).read_deal(org.deal)

    assert token in learned  # the redactor knew it before it was sent
    message = refused.value.message
    assert "SALESFORCE_REFRESH_TOKEN" in message and "invalid_grant" in message
    assert token not in message and org.refresh_token not in message


def test_provisioner_check_keeps_the_refresh_token_its_sign_in_rotated(
    rotating, store_url, open_store, monkeypatch
):
    from handlers.rules import load_rules
    from worker.check.crms import check_crms
    from worker.settings import load_settings

    org, sent = rotating
    store = open_store()  # the workers' database, at this release's schema
    for name, value in {
        "PROVISIONER_DATABASE_URL": store_url,
        "SALESFORCE_CLIENT_ID": CLIENT_ID,
        "SALESFORCE_CLIENT_SECRET": org.secret,
        "SALESFORCE_REFRESH_TOKEN": org.refresh_token,
        "SALESFORCE_LOGIN_URL": org.origin,
    }.items():
        monkeypatch.setenv(name, value)

    lines = check_crms(load_settings(), load_rules(None))

    assert any(line.status == "ok" and "signed in" in line.what for line in lines), lines
    assert stored(store, org.refresh_token) in org.apps[CLIENT_ID].refresh_tokens
    assert kept(org, store).read_deal(org.deal).stage.won  # a worker after the check
    assert [status for _, status in sent] == [200, 200]


def test_a_rotated_token_the_store_failed_to_save_is_stored_at_the_next_renewal(
    rotating, open_store
):
    org, sent = rotating
    store = open_store()

    class Failing:  # the state store, whose second save of a refresh token fails
        saves = 0

        def __getattr__(self, name):
            return getattr(store, name)

        def save_refresh_token(self, crm: str, chain: str, token: str) -> None:
            Failing.saves += 1
            if Failing.saves == 2:
                raise ConnectionError("the state store went away")
            store.save_refresh_token(crm, chain, token)

    crm = kept(org, Failing())
    crm.read_deal(org.deal)
    first = stored(store, org.refresh_token)
    org.expire_sessions()
    with pytest.raises(ConnectionError):
        crm.read_deal(org.deal)
    assert stored(store, org.refresh_token) == first  # spent: only this session has the new one

    assert crm.read_deal(org.deal).stage.won  # the access token it was given works
    org.expire_sessions()
    assert crm.read_deal(org.deal).stage.won  # renewed with its own token, not the stored one

    assert [status for _, status in sent] == [200] * 3
    assert stored(store, org.refresh_token) in org.apps[CLIENT_ID].refresh_tokens
    assert kept(org, open_store()).read_deal(org.deal).stage.won
