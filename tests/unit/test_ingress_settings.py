"""The ingress's settings: what an empty value means, which forms are accepted, and that an
error names the variable without showing its value."""

from __future__ import annotations

import pytest

from tests import crm_webhooks as crm
from worker.ingress.settings import IngressSettings, load_ingress_settings
from worker.settings import SettingsError


def test_empty_secrets_leave_their_routes_unconfigured(monkeypatch):
    for name in ("HUBSPOT_CLIENT_SECRET", "PIPEDRIVE_WEBHOOK_USER", "PIPEDRIVE_WEBHOOK_PASSWORD",
                 "SALESFORCE_ORGANIZATION_ID", "SALESFORCE_WEBHOOK_TOKEN",
                 "PROVISIONER_WEBHOOK_SECRET"):  # fmt: skip
        monkeypatch.setenv(name, "")
    settings = load_ingress_settings()
    assert settings.hubspot_client_secret is None
    assert settings.pipedrive_user is settings.pipedrive_password is None
    assert settings.salesforce_organization_id is settings.webhook_secret is None
    assert settings.salesforce_webhook_token is None


def test_a_15_character_organization_id_is_kept_in_its_18_character_form():
    org = crm.salesforce_id("00D")
    settings = IngressSettings(
        SALESFORCE_ORGANIZATION_ID=org[:15], SALESFORCE_WEBHOOK_TOKEN=crm.salesforce_webhook_token()
    )
    assert settings.salesforce_organization_id == org


def test_the_public_url_loses_its_trailing_slash_and_the_bind_splits():
    settings = IngressSettings(
        PROVISIONER_PUBLIC_URL="https://hooks.example.com/crm/", PROVISIONER_INGRESS_BIND="[::]:80"
    )
    assert settings.public_url == "https://hooks.example.com/crm"
    assert settings.host_port == ("::", 80)


@pytest.mark.parametrize(
    "variable,value",
    [
        ("PROVISIONER_WEBHOOK_SECRET", "whsec_c2hvcnQtc2VjcmV0"),  # base64 of 12 bytes
        ("PROVISIONER_WEBHOOK_SECRET", "plain-secret-without-prefix"),
        ("SALESFORCE_ORGANIZATION_ID", "0015e00000K9pLmAAJ"),  # an Account id, not 00D
        ("PIPEDRIVE_WEBHOOK_PASSWORD", "alone-without-a-user"),
        ("PROVISIONER_INGRESS_MAX_BODY", "77"),
        ("SALESFORCE_WEBHOOK_TOKEN", "too-short-to-guess-slowly"),
        ("SALESFORCE_WEBHOOK_TOKEN", "a token with spaces and & that is long enough"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable_not_the_value(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        load_ingress_settings()
    assert variable in str(refused.value) and value not in str(refused.value)


def test_the_log_redactor_knows_the_ingress_secrets_and_pipedrives_basic_token():
    settings = IngressSettings(
        HUBSPOT_CLIENT_SECRET="hubspot-app-secret",
        PIPEDRIVE_WEBHOOK_USER="hook",
        PIPEDRIVE_WEBHOOK_PASSWORD="pipedrive-password",
        PROVISIONER_WEBHOOK_SECRET=(whsec := crm.whsec()),
        SALESFORCE_ORGANIZATION_ID=crm.salesforce_id("00D"),
        SALESFORCE_WEBHOOK_TOKEN=(token := crm.salesforce_webhook_token()),
    )
    basic = crm.basic_auth("hook", "pipedrive-password")["Authorization"].removeprefix("Basic ")
    expected = {"hubspot-app-secret", "pipedrive-password", whsec, basic, token}
    assert expected <= set(settings.secrets())


def test_a_salesforce_organization_without_an_endpoint_token_is_refused_naming_it(monkeypatch):
    monkeypatch.setenv("SALESFORCE_ORGANIZATION_ID", crm.salesforce_id("00D"))
    monkeypatch.delenv("SALESFORCE_WEBHOOK_TOKEN", raising=False)
    with pytest.raises(SettingsError, match="SALESFORCE_WEBHOOK_TOKEN"):
        load_ingress_settings()
    monkeypatch.setenv("SALESFORCE_WEBHOOK_TOKEN", token := crm.salesforce_webhook_token())
    assert load_ingress_settings().salesforce_webhook_token.get_secret_value() == token
