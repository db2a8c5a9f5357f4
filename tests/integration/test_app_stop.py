"""Stopping an app, and detached apps, through a real fabric (`gpufabric serve` and its worker)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from core_executor import exception

from . import stop_apps
from .conftest import alive, wait_for

pytestmark = pytest.mark.integration


def _state(app_id: str) -> str:
    from core_executor.cli import _STATES
    from core_executor._client import get_client  # the SDK's own connection

    client = get_client()
    listing = client.call("AppList", client.pb.AppListRequest(include_stopped=True))
    return next(_STATES[a.state] for a in listing.apps if a.app_id == app_id)


def test_stopping_an_app_ends_its_queued_running_and_retrying_inputs(new_fabric, tmp_path):
    """As in Modal: a stopped app's inputs all end at once (queued, running, waiting for a retry),
    and the container running one stops, rather than running (and billing) up to its timeout."""
    pids = tmp_path / "pids"
    new_fabric("--workers", "1")
    with stop_apps.app.run():
        running = stop_apps.hold.spawn(str(pids), 600)
        assert wait_for(lambda: pids.exists() and pids.read_text())
        queued = stop_apps.hold.spawn(str(pids), 600)  # max_containers=1: it waits
        retrying = stop_apps.flaky.spawn()
        assert wait_for(lambda: retrying.get_usage().attempts == 1)  # failed once, retried in 60 s
        stopped = time.monotonic()
    for call in (running, queued, retrying):
        with pytest.raises(exception.InputCancellation, match="the app was stopped"):
            call.get(timeout=10)
    assert len(pids.read_text().split()) == 1  # the queued input never ran
    assert wait_for(lambda: not alive(int(pids.read_text())), timeout=20)
    assert time.monotonic() - stopped < 20
    usage = running.get_usage()
    assert (usage.num_inputs, usage.num_finished, usage.num_running, usage.attempts) == (1, 1, 0, 1)


def test_a_detached_app_outlives_its_client_until_its_inputs_are_done(new_fabric, tmp_path):
    """`app.run(detach=True)`, as `modal run --detach`: the end of the block (or of the client's
    heartbeats) stops nothing; the spawned inputs, the queued one too, run to their end, then the
    app stops by itself."""
    pids = tmp_path / "pids"
    new_fabric("--workers", "1", "--app-heartbeat-timeout", "1")
    with stop_apps.app.run(detach=True):
        app_id = stop_apps.app.app_id
        first = stop_apps.hold.spawn(str(pids), 3)
        second = stop_apps.hold.spawn(str(pids), 1)  # max_containers=1: queued behind the first
        assert _state(app_id) == "detached"
    time.sleep(2)  # past the heartbeat timeout: the client is gone
    assert _state(app_id) == "detached"
    assert first.get(timeout=60) is None and second.get(timeout=60) is None
    assert len(pids.read_text().split()) == 2
    assert wait_for(lambda: _state(app_id) == "stopped", timeout=20)


def test_stop_ends_a_detached_app_at_once(new_fabric, tmp_path):
    pids = tmp_path / "pids"
    new_fabric("--workers", "1", "--app-heartbeat-timeout", "1")
    with stop_apps.app.run(detach=True):
        app_id = stop_apps.app.app_id
        call = stop_apps.hold.spawn(str(pids), 600)
        assert wait_for(lambda: pids.exists() and pids.read_text())
    out = subprocess.run([sys.executable, "-m", "core_executor.cli", "app", "stop", app_id],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    with pytest.raises(exception.InputCancellation, match="the app was stopped"):
        call.get(timeout=10)
    assert _state(app_id) == "stopped"
    assert wait_for(lambda: not alive(int(pids.read_text())), timeout=20)


def test_gpufabric_run_detach(new_fabric, tmp_path):
    """`gpufabric run --detach`: the entrypoint returns, its spawned input runs on to its end."""
    from core_executor import FunctionCall

    pids = tmp_path / "pids"
    new_fabric("--workers", "1", "--app-heartbeat-timeout", "1")
    gpufabric = os.path.join(os.path.dirname(sys.executable), "gpufabric")
    out = subprocess.run([gpufabric, "run", "--detach", stop_apps.__file__, "--path", str(pids), "--seconds", "3"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is detached: it runs until its inputs are done" in out.stderr
    call_id = next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("call "))
    assert FunctionCall.from_id(call_id).get(timeout=60) is None
    assert pids.read_text()


def test_detach_needs_a_long_lived_fabric(monkeypatch):
    monkeypatch.delenv("GPUFABRIC_URL", raising=False)
    with pytest.raises(exception.InvalidError, match="GPUFABRIC_URL"):
        with stop_apps.app.run(detach=True):
            pass
    assert not stop_apps.app.app_id
