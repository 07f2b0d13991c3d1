import importlib

import pytest

from adapters.store import SqlStore

TOOLS = ["harvest", "toggl", "clockify"]


@pytest.fixture(params=TOOLS)
def harness(request):
    module = importlib.import_module(f"tests.integration.harnesses.{request.param}")
    h = module.open_harness()
    try:
        yield h
    finally:
        h.fake.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """The state store on a new SQLite file, then on a fresh schema of the real PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("pg_schema_url")
    opened = SqlStore.from_url(url)
    yield opened
    opened.close()
