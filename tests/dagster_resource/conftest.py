"""Dagster tier: real Dagster (ephemeral and temporary instances) and a real fabric (`gpufabric serve`)."""
from __future__ import annotations

import os

import pytest

from tests.integration.conftest import Fabric

pytest.importorskip("dagster")


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.orchestrators)


@pytest.fixture(scope="session")
def fabric_server(tmp_path_factory):
    """One fabric for the session, with a simulated A100 so `gpu="A100"` calls can be placed."""
    fabric = Fabric(str(tmp_path_factory.mktemp("fabric")), "--simulate-gpus", "A100-80GB:1", "--heartbeat-timeout", "5").start()
    saved = {k: os.environ.get(k) for k in ("GPUFABRIC_URL", "GPUFABRIC_TOKEN")}
    os.environ["GPUFABRIC_URL"], os.environ["GPUFABRIC_TOKEN"] = fabric.url, fabric.token
    yield fabric
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    fabric.stop()
