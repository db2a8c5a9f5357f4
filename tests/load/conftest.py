"""Load and fault tier: real fabrics (`python -m gpu_fabric serve`) on loopback, CI-sized unless LOAD_SCALE=full."""
from __future__ import annotations

import pytest

from tests.integration.conftest import Fabric, _use
from tests.pg_server import pg_url  # noqa: F401 - fixture


@pytest.fixture
def start_fabric(tmp_path, monkeypatch):
    """A fresh fabric per call, pointed at by GPUFABRIC_URL/TOKEN; stopped after the test."""
    started: list[Fabric] = []

    def make(*args: str, port: int = 0, data_dir: str = "") -> Fabric:
        fabric = Fabric(data_dir or str(tmp_path / f"fabric{len(started)}"), *args, port=port).start()
        started.append(fabric)
        _use(monkeypatch, fabric)
        return fabric

    yield make
    for fabric in started:
        fabric.stop()
