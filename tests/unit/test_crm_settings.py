"""The CRM API settings, named as the contract names them: tokens stripped and refused like
the tools' (naming the variable, never the value), URLs checked, every token handed to the
log redactor, and a CRM enabled only when all it needs is set."""

from __future__ import annotations

import pytest
import structlog

from worker.settings import SettingsError, load_settings

VARIABLES = (
    "HUBSPOT_ACCESS_TOKEN", "HUBSPOT_BASE_URL", "PIPEDRIVE_API_TOKEN", "PIPEDRIVE_BASE_URL",
    "SALESFORCE_INSTANCE_URL", "SALESFORCE_ACCESS_TOKEN", "SALESFORCE_CLIENT_ID",
    "SALESFORCE_CLIENT_SECRET", "SALESFORCE_REFRESH_TOKEN", "SALESFORCE_USERNAME",
    "SALESFORCE_PRIVATE_KEY_FILE", "SALESFORCE_LOGIN_URL",
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


PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7fakekeybody01\n"
    "-----END PRIVATE KEY-----\n"
)


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "salesforce.key"
    path.write_text(PEM)
    return str(path)


@pytest.mark.parametrize(
    "given, flow",
    [
        ({"SALESFORCE_CLIENT_ID": "3MVG9x", "SALESFORCE_CLIENT_SECRET": f"{SECRET}-cs",
          "SALESFORCE_REFRESH_TOKEN": f"{SECRET}-rt"}, "refresh_token"),
        ({"SALESFORCE_CLIENT_ID": "3MVG9x", "SALESFORCE_CLIENT_SECRET": f"{SECRET}-cs"},
         "client_credentials"),
        ({"SALESFORCE_CLIENT_ID": "3MVG9x", "SALESFORCE_USERNAME": "api@acme.example",
          "SALESFORCE_PRIVATE_KEY_FILE": "KEY"}, "jwt_bearer"),
        ({"SALESFORCE_ACCESS_TOKEN": f"{SECRET}-sf",
          "SALESFORCE_INSTANCE_URL": "https://acme.my.salesforce.com"}, "access_token"),
    ],
)  # fmt: skip
def test_which_salesforce_flow_applies_is_decided_by_which_settings_are_set(
    monkeypatch, key_file, given, flow
):
    for name, value in given.items():
        monkeypatch.setenv(name, key_file if value == "KEY" else value)

    settings = load_settings()

    assert settings.salesforce_flow() == flow
    assert settings.enabled_crms() == ["salesforce"]
    assert settings.salesforce_login_url == "https://login.salesforce.com"


def test_every_salesforce_secret_and_the_private_key_go_to_the_redactor(monkeypatch, key_file):
    monkeypatch.setenv("SALESFORCE_CLIENT_ID", "3MVG9x")
    monkeypatch.setenv("SALESFORCE_CLIENT_SECRET", f"{SECRET}-cs")
    monkeypatch.setenv("SALESFORCE_REFRESH_TOKEN", f"{SECRET}-rt")
    found = load_settings().secrets()
    assert {f"{SECRET}-cs", f"{SECRET}-rt"} <= set(found)

    for name in ("SALESFORCE_CLIENT_SECRET", "SALESFORCE_REFRESH_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("SALESFORCE_USERNAME", "api@acme.example")
    monkeypatch.setenv("SALESFORCE_PRIVATE_KEY_FILE", key_file)
    found = load_settings().secrets()
    assert PEM in found and PEM.splitlines()[1] in found


def test_empty_salesforce_oauth_settings_are_unset_and_the_login_url_keeps_its_default(
    monkeypatch,
):
    for name in VARIABLES:
        monkeypatch.setenv(name, "")

    settings = load_settings()

    assert settings.salesforce_flow() is None
    assert settings.salesforce_login_url == "https://login.salesforce.com"


@pytest.mark.parametrize(
    "given, says",
    [
        ({"SALESFORCE_CLIENT_ID": "3MVG9x"},
         ["SALESFORCE_CLIENT_SECRET", "SALESFORCE_USERNAME", "SALESFORCE_PRIVATE_KEY_FILE"]),
        ({"SALESFORCE_REFRESH_TOKEN": SECRET},
         ["SALESFORCE_CLIENT_ID", "SALESFORCE_CLIENT_SECRET"]),
        ({"SALESFORCE_CLIENT_ID": "3MVG9x", "SALESFORCE_USERNAME": "api@acme.example"},
         ["SALESFORCE_PRIVATE_KEY_FILE"]),
        ({"SALESFORCE_CLIENT_ID": "3MVG9x", "SALESFORCE_CLIENT_SECRET": SECRET,
          "SALESFORCE_USERNAME": "api@acme.example"}, ["mixes flows"]),
        ({"SALESFORCE_ACCESS_TOKEN": SECRET, "SALESFORCE_INSTANCE_URL": "https://a.my.sf.com",
          "SALESFORCE_CLIENT_ID": "3MVG9x", "SALESFORCE_CLIENT_SECRET": f"{SECRET}-cs"},
         ["SALESFORCE_ACCESS_TOKEN", "mixes flows"]),
        ({"SALESFORCE_ACCESS_TOKEN": SECRET}, ["SALESFORCE_INSTANCE_URL"]),
        ({"SALESFORCE_CLIENT_ID": "3MVG9x", "SALESFORCE_USERNAME": "api@acme.example",
          "SALESFORCE_PRIVATE_KEY_FILE": "/nonexistent/salesforce.key"},
         ["SALESFORCE_PRIVATE_KEY_FILE", "cannot be read"]),
        ({"SALESFORCE_LOGIN_URL": "login.salesforce.com"}, ["SALESFORCE_LOGIN_URL"]),
    ],
)  # fmt: skip
def test_a_partial_or_ambiguous_salesforce_sign_in_is_refused_naming_settings_not_values(
    monkeypatch, given, says
):
    for name, value in given.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert all(s in str(raised.value) for s in says), str(raised.value)
    assert SECRET not in str(raised.value)


def test_a_static_salesforce_token_warns_once_at_start_that_it_will_expire(monkeypatch):
    from handlers.rules import load_rules
    from worker.bootstrap import build_crms

    monkeypatch.setenv("SALESFORCE_ACCESS_TOKEN", f"{SECRET}-sf")
    monkeypatch.setenv("SALESFORCE_INSTANCE_URL", "https://acme.my.salesforce.com")
    with structlog.testing.capture_logs() as lines:
        crms = build_crms(load_settings(), load_rules(None))

    assert list(crms) == ["salesforce"]
    [warning] = [line for line in lines if line["log_level"] == "warning"]
    assert warning["event"] == "salesforce_static_token" and warning["renewal"] is False
    assert SECRET not in str(lines)


@pytest.mark.parametrize(
    ("flow", "keeps"),
    [({"SALESFORCE_REFRESH_TOKEN": f"{SECRET}-rt"}, True), ({}, False)],
)
def test_only_the_refresh_token_flow_keeps_its_rotated_token_in_the_given_store(
    monkeypatch, flow, keeps
):
    from handlers.rules import load_rules
    from worker.bootstrap import build_crms, keeps_refresh_token

    monkeypatch.setenv("SALESFORCE_CLIENT_ID", "3MVG9-app")
    monkeypatch.setenv("SALESFORCE_CLIENT_SECRET", f"{SECRET}-cs")
    for name, value in flow.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    store = object()  # only handed on: nothing is read before the first sign-in

    session = build_crms(settings, load_rules(None), store=store)["salesforce"].session

    assert keeps_refresh_token(settings) is keeps
    assert session.keeper is (store if keeps else None)
    assert build_crms(settings, load_rules(None))["salesforce"].session.keeper is None
