"""`gpufabric serve --provider ...` for real: machines launched from zero, billed, scaled down, adopted after a restart."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

import core_executor as fabric

from .conftest import Fabric, _use, alive

pytestmark = pytest.mark.integration

APP_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "capacity_app.py")
GPUFABRIC = os.path.join(os.path.dirname(sys.executable), "gpufabric")


def _cli(*args: str) -> str:
    """stdout and stderr of a `gpufabric` command (app logs print the fabric's own lines to stderr)."""
    proc = subprocess.run([GPUFABRIC, *args], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def _wait(predicate, timeout: float, what: str, fabric_: Fabric):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; serve log:\n{fabric_.tail()}")


def _worker_processes(served: Fabric) -> list[int]:
    """Live (not zombie) worker agent processes the serve process started."""
    import psutil

    out = []
    for child in psutil.Process(served.proc.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "worker" in " ".join(child.cmdline()):
                out.append(child.pid)
        except psutil.Error:
            continue
    return out


def _workers() -> list[str]:
    return [line for line in _cli("worker", "ls").splitlines() if line.strip()]


def test_serve_with_the_local_provider_scales_from_zero_runs_bills_and_scales_back(new_fabric, tmp_path):
    config = tmp_path / "providers.json"
    # $36 an hour: a cent a second, so that a few seconds show in the bill.
    config.write_text(json.dumps({"local": {"simulate_gpus": "L4:1", "max_workers": 1, "price_per_hour": 36.0, "cpu": 2}}))
    served = new_fabric("--workers", "0", "--provider", "local", "--provider-config", str(config),
                        "--idle-window", "4", "--scaledown-window", "2", "--heartbeat-timeout", "5")
    assert _workers() == []  # scaled to zero before any call
    _cli("deploy", APP_FILE)
    assert fabric.Function.from_name("capacity-demo", "on_gpu").remote(1.0) == "ran on GPU 0"
    logs = _cli("app", "logs", "capacity-demo")
    assert "scheduler: launch: local local local (1x L4, on-demand) at $36.00/h" in logs, logs
    assert len(_worker_processes(served)) == 1
    # Idle past its window: the worker is terminated, and so is its process.
    _wait(lambda: _workers() == [], 60, "the idle worker to be scaled down", served)
    _wait(lambda: "scheduler: scale-down" in _cli("app", "logs", "capacity-demo"), 30, "the scale-down event", served)
    _wait(lambda: _worker_processes(served) == [], 30, "the worker process to end", served)
    report = _cli("billing")
    row = next(line for line in report.splitlines() if line.startswith("capacity-demo.on_gpu"))
    container_usd = float(row.split()[-1])
    machine_usd = float(re.search(r"machines launched by the fabric: \$([0-9.]+)", report).group(1))
    assert 0.01 <= container_usd <= machine_usd, report  # at least a second of container time; the machine's covers it
    assert "provider local: enabled" in report


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cloud_instances(state_path) -> dict:
    if not os.path.exists(state_path):
        return {}
    with open(state_path) as f:
        return json.load(f)["instances"]


@pytest.fixture
def simulated_cloud(tmp_path):
    """The simulated cloud's state file; whatever machines (worker processes) it still lists are killed after."""
    state_path = tmp_path / "cloud" / "state.json"
    yield state_path
    for entry in _cloud_instances(state_path).values():
        if entry["pid"] and alive(entry["pid"]):
            os.killpg(entry["pid"], signal.SIGKILL)


def test_a_restarted_control_plane_adopts_the_machines_it_launched(tmp_path, monkeypatch, simulated_cloud):
    config = tmp_path / "providers.json"
    config.write_text(json.dumps({"simulated": {"cloud": "aws", "regions": ["us-east-1"], "instance_types": ["g6.xlarge"],
                                                "state_path": str(simulated_cloud)}}))
    args = ("--workers", "0", "--provider", "simulated", "--provider-config", str(config), "--heartbeat-timeout", "5",
            "--idle-window", "600")
    port = _free_port()
    data_dir = str(tmp_path / "fabric")
    first = Fabric(data_dir, *args, port=port).start()
    second = None
    try:
        _use(monkeypatch, first)
        _cli("deploy", APP_FILE)
        fn = fabric.Function.from_name("capacity-demo", "on_gpu")
        assert fn.remote(0.0) == "ran on GPU 0"  # a machine was launched for it and ran it
        (instance_id, entry), = _cloud_instances(simulated_cloud).items()
        call = fn.spawn(6.0)
        time.sleep(2.0)  # the call runs on the machine
        crashed_at = time.time()
        first.stop(signal.SIGKILL)  # the control plane crashes; the machine (its own session) runs on
        assert alive(entry["pid"]) and list(_cloud_instances(simulated_cloud)) == [instance_id]

        second = Fabric(data_dir, *args, port=port).start()
        _use(monkeypatch, second)
        # The unfinished call is re-queued; the adopted machine's worker re-registers and runs it.
        assert fabric.FunctionCall.from_id(call.object_id).get(timeout=120) == "ran on GPU 0"
        assert list(_cloud_instances(simulated_cloud)) == [instance_id], "no second machine was launched"
        logs = _cli("app", "logs", "capacity-demo")
        assert logs.count("scheduler: launch:") == 1, logs
        assert "scheduler: adopt:" in logs and "still runs after the control plane restarted" in logs
        # The SDK's invoke stream to the crashed control plane ended while idle: it is reopened.
        assert fn.remote(0.0) == "ran on GPU 0"
    finally:
        for served in (second, first):
            if served is not None:
                served.stop()
    # A graceful stop (no --keep-machines) terminates the machines it launched, and closes their
    # bill: one charge for the machine, from its launch before the crash to the stop.
    assert _cloud_instances(simulated_cloud) == {}
    with open(os.path.join(data_dir, "billing.jsonl")) as f:
        (machine,) = [c for c in map(json.loads, f) if c["kind"] == "instance"]
    assert machine["started_at"] < crashed_at and machine["started_at"] + machine["seconds"] > crashed_at + 5
    deadline = time.monotonic() + 20
    while alive(entry["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(entry["pid"])
