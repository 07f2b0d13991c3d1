import importlib
import uuid

import pytest
import sqlalchemy as sa

from adapters.store import make_engine

TOOLS = ["harvest", "toggl", "clockify"]


@pytest.fixture(params=TOOLS)
def harness(request):
    module = importlib.import_module(f"tests.integration.harnesses.{request.param}")
    h = module.open_harness()
    try:
        yield h
    finally:
        h.fake.stop()


@pytest.fixture
def pg_schema_url(postgres_url):
    """A PostgreSQL URL whose connections work in a schema of their own, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    admin = make_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield f"{postgres_url}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()
