import importlib

import pytest

TOOLS = ["harvest", "toggl", "clockify"]


@pytest.fixture(params=TOOLS)
def harness(request):
    module = importlib.import_module(f"tests.integration.harnesses.{request.param}")
    h = module.open_harness()
    try:
        yield h
    finally:
        h.fake.stop()
