"""A deployed function with a Period schedule runs on its own, once per tick, with history."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.integration

HERE = os.path.dirname(os.path.abspath(__file__))
GPUFABRIC = os.path.join(os.path.dirname(sys.executable), "gpufabric")


def test_period_schedule_runs_and_shows_in_history(new_fabric, tmp_path, monkeypatch):
    marker = tmp_path / "beats"
    monkeypatch.setenv("HEARTBEAT_FILE", str(marker))  # containers inherit the worker's environment
    fab = new_fabric()
    from . import schedule_apps

    schedule_apps.app.deploy()
    deadline = time.time() + 60
    while not (marker.exists() and len(marker.read_text().split()) >= 2):
        assert time.time() < deadline, fab.tail()
        time.sleep(0.2)
    history = subprocess.run([GPUFABRIC, "app", "history", "scheduled"], capture_output=True, text=True, timeout=60)
    assert history.returncode == 0, history.stderr
    assert "heartbeat" in history.stdout and "success" in history.stdout
    subprocess.run([GPUFABRIC, "app", "stop", "scheduled"], check=True, timeout=60)
    time.sleep(2)
    count = len(marker.read_text().split())
    time.sleep(2.5)
    assert len(marker.read_text().split()) == count  # a stopped app's schedule no longer runs
