"""Which budget each vendor account paces on, and the setting that shares them: no Redis is
touched here (building a shared pacer does not connect)."""

from __future__ import annotations

import pytest

from adapters.pacing import Pacer
from adapters.shared_pacing import SharedPacer, SharedQuota, local_share
from worker.bootstrap import build_tools
from worker.commands import main as cli
from worker.pacing import account_budget, pacing_store
from worker.settings import load_settings

TOKEN = "pat-na1-0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("PROVISIONER_PACING_URL", "PROVISIONER_PACING_WORKERS", "HUBSPOT_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HARVEST_ACCOUNT_ID", "123456")
    monkeypatch.setenv("HARVEST_ACCESS_TOKEN", "harvest-token")
    monkeypatch.setenv("TOGGL_WORKSPACE_ID", "777")
    monkeypatch.setenv("TOGGL_API_TOKEN", "toggl-token")


def test_installations_in_other_namespaces_share_one_accounts_budget(monkeypatch):
    monkeypatch.setenv("PROVISIONER_NAMESPACE", "staging")
    staging = account_budget(load_settings(), "harvest")
    monkeypatch.setenv("PROVISIONER_NAMESPACE", "production")
    production = account_budget(load_settings(), "harvest")
    monkeypatch.setenv("HARVEST_ACCOUNT_ID", "654321")
    other_account = account_budget(load_settings(), "harvest")

    assert staging == production == "harvest:api.harvestapp.com:123456"
    assert other_account != production


def test_a_hubspot_budget_names_the_app_without_its_token(monkeypatch):
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", TOKEN)
    ours = account_budget(load_settings(), "hubspot")
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", TOKEN + "x")
    another_app = account_budget(load_settings(), "hubspot")

    assert ours.startswith("hubspot:api.hubapi.com:app-") and ours != another_app
    assert TOKEN not in ours and TOKEN[-8:] not in ours


@pytest.mark.parametrize(
    ("limit", "workers", "share"),
    [((100, 15.0), 4, (25, 15.0)), ((50, 1.0), 3, (16, 1.0)), ((1, 1.0), 4, (1, 4.0))],
)
def test_a_local_share_never_adds_up_to_more_than_the_limit(limit, workers, share):
    calls, period = local_share(*limit, workers)

    assert (calls, period) == share
    assert workers * calls / period <= limit[0] / limit[1]


def test_unset_each_process_paces_alone_and_set_the_pacers_share_redis(monkeypatch):
    assert isinstance(build_tools(load_settings())["harvest"].http.pacer, Pacer)

    monkeypatch.setenv("PROVISIONER_PACING_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("PROVISIONER_PACING_WORKERS", "6")
    settings = load_settings()
    store = pacing_store(settings)
    tools = build_tools(settings, store)

    harvest, toggl = tools["harvest"].http, tools["toggl"].http
    assert isinstance(harvest.pacer, SharedPacer) and store.workers == 6
    assert (harvest.pacer.budget, harvest.pacer.calls) == ("harvest:api.harvestapp.com:123456", 100)
    assert toggl.pacer.budget == "toggl:api.track.toggl.com:777"
    assert isinstance(toggl.quota, SharedQuota)  # Toggl's hourly quota, shared too


@pytest.mark.parametrize(
    "url", ["http://cache:6379", "redis://cache:port/0", "redis://cache:6379/zero", "redis:///0"]
)
def test_a_pacing_url_that_is_not_redis_exits_2_naming_the_variable(monkeypatch, capsys, url):
    monkeypatch.setenv("PROVISIONER_PACING_URL", url)

    status = cli.main(["run"])

    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("provisioner: PROVISIONER_PACING_URL: ")


def test_the_pacing_stores_password_is_a_secret_to_redact(monkeypatch):
    monkeypatch.setenv("PROVISIONER_PACING_URL", "redis://:s3cret-pass@cache:6379/0")

    assert "s3cret-pass" in load_settings().secrets()


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://:pw@cache:6380", "unix:///run/redis.sock"]
)
def test_redis_urls_of_every_form_make_a_store(monkeypatch, url):
    monkeypatch.setenv("PROVISIONER_PACING_URL", url)

    assert pacing_store(load_settings()) is not None  # no connection made yet
