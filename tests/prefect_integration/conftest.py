"""Prefect tier: real Prefect (an in-process test server) and a real fabric (`gpufabric serve`)."""
from __future__ import annotations

import os
import tempfile

# Before Prefect is imported: no telemetry calls out of a sandbox (they stall the test server's
# start), and Prefect's home (default result storage) kept out of the user's own.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))

import pytest  # noqa: E402

from tests.integration.conftest import Fabric  # noqa: E402

pytest.importorskip("prefect")


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.orchestrators)


@pytest.fixture(scope="session")
def fabric_server(tmp_path_factory):
    """One fabric for the session, with a simulated A100 so `gpu="A100"` tasks can be placed."""
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


@pytest.fixture(scope="session")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def fabric_env(fabric_server, prefect_server):
    """A running fabric (GPUFABRIC_URL set) and a Prefect test server."""
    return fabric_server
