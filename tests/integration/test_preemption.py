"""Preemption and lost workers on a real fabric: inputs resume from checkpoints, retries unspent."""
from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
import uuid

import psutil
import pytest

pytestmark = pytest.mark.integration

STEPS, STEP_S = 14, 0.5


def _gpufabric(*args: str) -> str:
    cli = os.path.join(os.path.dirname(sys.executable), "gpufabric")
    out = subprocess.run([cli, *args], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    return out.stdout


def _busy_worker() -> str:
    for line in _gpufabric("worker", "ls").splitlines():
        wid, state, _, inputs, *_ = line.split("\t")
        if state == "accepting" and inputs.startswith("1 "):
            return wid
    return ""


def _wait_checkpoints(volume, run_id: str, at_least: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            names = [e.path for e in volume.listdir(run_id)]
        except Exception:  # noqa: BLE001 - not committed yet
            names = []
        steps = [int(n.rsplit("-", 1)[1].split(".")[0]) for n in names if n.endswith(".pkl")]
        if steps and max(steps) >= at_least:
            return max(steps)
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint {at_least} of {run_id} within {timeout}s")


def _container_procs(fabric) -> list[psutil.Process]:
    out = []
    for proc in psutil.Process(fabric.proc.pid).children(recursive=True):
        try:
            if "core_executor._runtime" in " ".join(proc.cmdline()):
                out.append(proc)
        except psutil.Error:
            pass
    return out


def _wait_moved(fabric, old_worker: str, timeout: float = 60.0) -> str:
    """Waits until one container runs the input, on a worker other than `old_worker`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = _busy_worker()
        if busy and busy != old_worker and len(_container_procs(fabric)) == 1:
            return busy
        time.sleep(0.2)
    raise AssertionError(f"the input did not move off {old_worker or 'its container'}")


def _apps():
    # Re-imported so the mount path (read at import) is this test's.
    from . import preempt_apps

    return importlib.reload(preempt_apps)


@pytest.fixture
def mount(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt-mount")
    monkeypatch.setenv("IT_PREEMPT_MOUNT", path)
    return path


def test_preempted_killed_and_lost_runs_resume_from_checkpoints_without_spending_retries(new_fabric, mount):
    fabric = new_fabric("--workers", "3", "--heartbeat-timeout", "3")
    apps = _apps()

    run_id = f"run-{uuid.uuid4().hex[:6]}"
    with apps.app.run(show_logs=False):
        call = apps.train.spawn(run_id, STEPS, STEP_S, mount)
        # 1. A preemption notice: the worker drains and the input re-runs on another worker.
        _wait_checkpoints(apps.ckpt_volume, run_id, 2)
        busy = ""
        while not busy:
            busy = _busy_worker()
        _gpufabric("worker", "preempt", busy, "--deadline", "4")
        _wait_moved(fabric, busy)
        seen = _wait_checkpoints(apps.ckpt_volume, run_id, _wait_checkpoints(apps.ckpt_volume, run_id, 0) + 1)
        # 2. The container is SIGKILLed from outside (no notice).
        busy = _busy_worker()
        _container_procs(fabric)[0].kill()
        _wait_moved(fabric, "")
        seen = _wait_checkpoints(apps.ckpt_volume, run_id, seen + 2, timeout=90)
        # 3. The worker itself dies: its heartbeat lapses and the input runs on the last worker.
        _container_procs(fabric)[0].parent().kill()
        result = call.get(timeout=180)
    assert result["total"] == sum(range(STEPS))
    starts = result["starts"]
    assert len(starts) == 4, starts
    # Preemption, the outside SIGKILL of the container and the lost worker were all free: the
    # infrastructure's losses (an out-of-memory kill, which the sandbox reports, would spend one).
    assert [attempt for _, attempt in starts] == [1, 1, 1, 1], starts
    # Each re-run began where the last checkpoint left off (at most one step was redone).
    assert [s for s, _ in starts] == sorted(s for s, _ in starts) and starts[0][0] == 0
    assert starts[1][0] >= 3 and starts[3][0] > starts[2][0]


def test_volume_commit_in_containers_and_cli(new_fabric, mount, tmp_path):
    new_fabric("--workers", "1")
    apps = _apps()

    with apps.app.run(show_logs=False):
        assert apps.write_and_commit.remote("notes/a.txt", "alpha", mount) == ["a.txt"]
        assert apps.write_and_commit.remote("notes/b.txt", "beta", mount) == ["a.txt", "b.txt"]
    assert b"".join(apps.ckpt_volume.read_file("notes/b.txt")) == b"beta"
    local = tmp_path / "up.txt"
    local.write_text("uploaded")
    _gpufabric("volume", "put", "it-checkpoints", str(local), "notes/up.txt")
    assert "notes/" in _gpufabric("volume", "ls", "it-checkpoints")
    assert _gpufabric("volume", "get", "it-checkpoints", "notes/up.txt", "-") == "uploaded"
    _gpufabric("volume", "rm", "it-checkpoints", "notes", "-r")
    assert "it-checkpoints" in _gpufabric("volume", "ls")
