"""Integration tier: real fabrics (`python -m gpu_fabric serve`) on loopback, as subprocesses."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.integration


class Fabric:
    """A `gpufabric serve` process: control plane plus local worker agents."""

    def __init__(self, data_dir: str, *args: str, port: int = 0):
        self.data_dir = data_dir
        self.args = list(args)
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.url = self.token = ""

    def start(self) -> "Fabric":
        ready = os.path.join(self.data_dir, f"ready-{time.monotonic_ns()}.json")
        os.makedirs(self.data_dir, exist_ok=True)
        self.log = open(os.path.join(self.data_dir, "serve.log"), "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gpu_fabric", "serve", "--port", str(self.port), "--data-dir", self.data_dir,
             "--ready-file", ready, "--log-level", "INFO", *self.args],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fabric did not start: {self.tail()}")
            time.sleep(0.05)
        with open(ready) as f:
            info = json.load(f)
        self.url, self.token = info["url"], info["token"]
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def tail(self, n: int = 4000) -> str:
        with open(os.path.join(self.data_dir, "serve.log"), "rb") as f:
            return f.read()[-n:].decode(errors="replace")

    def worker_pids(self) -> list[int]:
        import psutil

        return [c.pid for c in psutil.Process(self.proc.pid).children() if "worker" in " ".join(c.cmdline())]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig) if sig == signal.SIGKILL else self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def wait_for(predicate, timeout: float = 30.0) -> bool:
    """Whether `predicate()` came true within `timeout` seconds (polled every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def alive(pid: int) -> bool:
    """Whether a process with this pid still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _use(monkeypatch, fabric: Fabric) -> None:
    monkeypatch.setenv("GPUFABRIC_URL", fabric.url)
    monkeypatch.setenv("GPUFABRIC_TOKEN", fabric.token)


@pytest.fixture(scope="module")
def shared_fabric(tmp_path_factory):
    fabric = Fabric(str(tmp_path_factory.mktemp("fabric")), "--heartbeat-timeout", "3", "--simulate-gpus", "H100:1",
                    "--max-payload-bytes", str(16 * 1024 * 1024), "--scaledown-window", "30").start()
    yield fabric
    fabric.stop()


@pytest.fixture
def fabric_env(shared_fabric, monkeypatch):
    _use(monkeypatch, shared_fabric)
    return shared_fabric


@pytest.fixture
def new_fabric(tmp_path, monkeypatch):
    """A fresh fabric per test; call it with serve arguments."""
    started = []

    def make(*args: str, port: int = 0) -> Fabric:
        fabric = Fabric(str(tmp_path / f"fabric{len(started)}"), *args, port=port).start()
        started.append(fabric)
        _use(monkeypatch, fabric)
        return fabric

    yield make
    for fabric in started:
        fabric.stop()
