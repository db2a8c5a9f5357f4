"""This machine as a provider: "launching" starts a worker agent process here, at no cost."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from typing import Callable

from .base import Availability, Instance, LaunchError, LaunchRequest, Market, Offering, Provider

__all__ = ["LocalProvider"]


def _discover(simulate: str) -> list:
    from gpu_fabric.worker._gpus import discover_gpus  # the worker's own discovery, so both agree

    return list(discover_gpus(simulate))


class LocalProvider(Provider):
    """Starts up to `max_workers` worker agents on this machine, each offering its GPUs (or the
    simulated ones in `simulate_gpus`, e.g. "H100:2", for tests).

    `price_per_hour`: what an hour of this machine costs you (power, amortization), for billing
    and budgets; 0 by default. `popen`: how the agent process is started (tests pass a fake).
    The agents end with the control plane (they are its children), so a restart never adopts them.
    """

    name = "local"

    def __init__(self, *, max_workers: int = 1, simulate_gpus: str = "", cpu: float | None = None,
                 memory_mb: int | None = None, price_per_hour: float = 0.0, popen: Callable = subprocess.Popen,
                 discover: Callable = _discover):
        if price_per_hour < 0:
            raise ValueError(f"local price_per_hour must be 0 or more (got {price_per_hour})")
        self.max_workers = max_workers
        self.simulate_gpus = simulate_gpus
        self.price_per_hour = float(price_per_hour)
        self.cpu = cpu or float(os.cpu_count() or 1)
        self.memory_mb = memory_mb
        self._popen = popen
        self._discover = discover
        self._procs: dict[str, tuple[object, Instance]] = {}

    def availability(self) -> Availability:
        if not self._gpus():
            return Availability(False, "this machine has no GPU (NVML/nvidia-smi found none; set simulate_gpus for tests)")
        return Availability(True)

    def _gpus(self) -> list:
        try:
            return self._discover(self.simulate_gpus)
        except Exception:  # noqa: BLE001 - discovery failing means: no GPUs to offer
            return []

    def offerings(self) -> list[Offering]:
        gpus = self._gpus()
        if not gpus:
            return []
        memory_gb = (self.memory_mb or 0) / 1024 or 1024.0
        return [Offering("local", "local", ("local",), "local", gpus[0].type, len(gpus), self.cpu, memory_gb,
                         self.price_per_hour, None)]

    def launch(self, request: LaunchRequest) -> Instance:
        self._reap()
        if len(self._procs) >= self.max_workers:
            raise LaunchError(f"this machine already runs {len(self._procs)} local worker(s) (max_workers={self.max_workers})",
                              kind="capacity", scope="zone", cloud="local", region="local", zone="local",
                              instance_type="local", market=Market.ON_DEMAND)
        # The launch's name as the worker's hostname: how the control plane matches it to this launch.
        args = _worker_args(request.startup_script) + ["--hostname", request.name]
        if self.simulate_gpus:
            args += ["--simulate-gpus", self.simulate_gpus]
        if self.memory_mb:
            args += ["--memory-mb", str(self.memory_mb)]
        env = dict(os.environ, GPUFABRIC_PARENT_PID=str(os.getpid()))
        proc = self._popen([sys.executable, "-m", "gpu_fabric", "worker", *args, "--cpu", str(self.cpu)],
                           stdin=subprocess.DEVNULL, env=env)
        instance = Instance(f"local-{proc.pid}", "local", "local", "local", "local", Market.ON_DEMAND, request.name)
        self._procs[instance.instance_id] = (proc, instance)
        return instance

    def terminate(self, instance: Instance) -> None:
        """Stop the agent (SIGTERM: it stops its containers first) and reap it; SIGKILL after 15 s."""
        entry = self._procs.pop(instance.instance_id, None)
        if entry is None:
            return
        proc = entry[0]
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def list(self) -> list[Instance]:
        self._reap()
        return [inst for _, inst in self._procs.values()]

    def _reap(self) -> None:
        for key, (proc, _) in list(self._procs.items()):
            if proc.poll() is not None:
                del self._procs[key]


def _worker_args(script: str) -> list[str]:
    """The --url/--token of the worker line of a startup script (local launches run the agent directly)."""
    for line in script.splitlines():
        if " worker --url " in line:
            words = shlex.split(line)
            return words[words.index("worker") + 1:]
    raise ValueError("the startup script has no worker command")
