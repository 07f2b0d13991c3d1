"""The CRM API settings, named as the contract names them: tokens stripped and refused like
the tools' (naming the variable, never the value), URLs checked, every token handed to the
log redactor, and a CRM enabled only when all it needs is set."""

from __future__ import annotations

import pytest

from worker.settings import SettingsError, load_settings

VARIABLES = (
    "HUBSPOT_ACCESS_TOKEN", "HUBSPOT_BASE_URL", "PIPEDRIVE_API_TOKEN", "PIPEDRIVE_BASE_URL",
    "SALESFORCE_INSTANCE_URL", "SALESFORCE_ACCESS_TOKEN",
)  # fmt: skip
SECRET = "crm-tok-5e4d3c2b1a"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_every_crm_is_enabled_by_its_settings_and_its_token_goes_to_the_redactor(monkeypatch):
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", f"{SECRET}-hs\n")  # a mounted secret file
    monkeypatch.setenv("PIPEDRIVE_API_TOKEN", f"  {SECRET}-pd ")
    monkeypatch.setenv("PIPEDRIVE_BASE_URL", "https://acme.pipedrive.com/")
    monkeypatch.setenv("SALESFORCE_INSTANCE_URL", "https://acme.my.salesforce.com")
    monkeypatch.setenv("SALESFORCE_ACCESS_TOKEN", f"{SECRET}-sf")

    settings = load_settings()

    assert settings.enabled_crms() == ["hubspot", "pipedrive", "salesforce"]
    assert settings.hubspot_base_url == "https://api.hubapi.com"
    assert settings.pipedrive_base_url == "https://acme.pipedrive.com"
    assert {f"{SECRET}-hs", f"{SECRET}-pd", f"{SECRET}-sf"} <= set(settings.secrets())


def test_empty_crm_settings_enable_no_crm_and_keep_hubspots_default(monkeypatch):
    for name in VARIABLES:  # compose passes "" for an unset one
        monkeypatch.setenv(name, "")

    settings = load_settings()

    assert settings.enabled_crms() == []
    assert settings.hubspot_base_url == "https://api.hubapi.com"


@pytest.mark.parametrize(
    "settings, says",
    [
        ({"PIPEDRIVE_API_TOKEN": SECRET}, "PIPEDRIVE_API_TOKEN and PIPEDRIVE_BASE_URL go together"),
        ({"SALESFORCE_INSTANCE_URL": "https://acme.my.salesforce.com"}, "SALESFORCE_ACCESS_TOKEN"),
        ({"HUBSPOT_ACCESS_TOKEN": f"{SECRET}\x01x"}, "HUBSPOT_ACCESS_TOKEN"),
        ({"SALESFORCE_ACCESS_TOKEN": f"{SECRET}é€"}, "SALESFORCE_ACCESS_TOKEN"),
        ({"PIPEDRIVE_BASE_URL": "acme.pipedrive.com"}, "PIPEDRIVE_BASE_URL"),
    ],
)
def test_a_bad_crm_setting_is_refused_naming_it_and_never_its_value(monkeypatch, settings, says):
    for name, value in settings.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert says in str(raised.value) and SECRET not in str(raised.value)
