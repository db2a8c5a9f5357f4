"""Fixtures for the SDK's unit tests: a fake fabric on loopback, configured through the environment."""
from __future__ import annotations

import pytest

from core_executor import _client
from tests.core_executor.sdk_fake_fabric import FakeServer


@pytest.fixture
def fake_server(monkeypatch):
    server = FakeServer()
    monkeypatch.setenv("GPUFABRIC_URL", server.url)
    monkeypatch.setenv("GPUFABRIC_TOKEN", server.token)
    monkeypatch.delenv("GPUFABRIC_IS_CONTAINER", raising=False)
    yield server
    # Close this process's cached channels before the server goes, so nothing reconnects to it.
    for client in list(_client._clients.values()):
        _client.forget_client(client)
    server.stop()


@pytest.fixture
def fabric(fake_server):
    """The fake fabric's state (knobs and recorded requests)."""
    return fake_server.fabric
