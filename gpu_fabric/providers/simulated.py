"""A simulated cloud over an injected clock: capacity limits, launch latency, moving spot prices, preemptions."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Callable

from .base import Availability, Instance, LaunchError, LaunchRequest, Market, Offering, PreemptionSource, Provider

__all__ = ["SimClock", "SimulatedCloud", "SimulatedProvider"]


class SimClock:
    """Simulated seconds; `advance` moves time, nothing sleeps."""

    def __init__(self, start: float = 1_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class _SimInstance:
    instance: Instance
    offering: Offering
    ready_at: float
    key: tuple


class SimulatedProvider(Provider):
    """One simulated cloud with the same interface as the real ones.

    `capacity`: instances available per key, where a key is (region, zone, instance_type, market)
    with "" as a wildcard, most specific first; places no key covers have `default_capacity` each.
    `quota`: instances allowed per (region, market) before a quota error.
    `spot_swing`: spot prices move by up to this fraction on a daily cycle, phase-shifted per region.
    `preemptions_per_hour`: chance rate of losing each running spot instance.
    `launch_latency_s`: seconds from launch until its worker would register.
    """

    def __init__(self, name: str, offerings: list[Offering], *, clock: Callable[[], float],
                 capacity: dict | None = None, default_capacity: int = 1_000_000, quota: dict | None = None,
                 spot_swing: float = 0.3, preemptions_per_hour: float = 0.0, launch_latency_s: float = 60.0,
                 credentials_ok: bool = True, never_registers: set | None = None, seed: int = 0):
        self.name = name
        self._offerings = [replace(o, cloud=name) for o in offerings]
        self.clock = clock
        self.capacity = dict(capacity or {})
        self.default_capacity = default_capacity
        self.quota = dict(quota or {})
        self.spot_swing, self.preemptions_per_hour = spot_swing, preemptions_per_hour
        self.launch_latency_s, self.credentials_ok = launch_latency_s, credentials_ok
        self.never_registers = set(never_registers or ())  # zones whose machines never boot a worker
        self.rng = random.Random(seed)
        self.running: dict[str, _SimInstance] = {}
        self.launch_calls: list[LaunchRequest] = []
        self.terminated: list[str] = []
        self._used: dict[tuple, int] = {}
        self._reported: set[str] = set()
        self._last_preempt_check = clock()
        self._counter = 0

    # ----------------------------------------------------------- questions
    def availability(self) -> Availability:
        if not self.credentials_ok:
            return Availability(False, f"{self.name}: credentials were rejected (simulated)")
        return Availability(True)

    def spot_factor(self, region: str) -> float:
        phase = (sum(map(ord, region)) % 24) / 24.0
        return 1.0 + self.spot_swing * math.sin(2 * math.pi * (self.clock() / 86400.0 + phase))

    def offerings(self) -> list[Offering]:
        out = []
        for o in self._offerings:
            spot = None if o.spot is None else round(o.spot * self.spot_factor(o.region), 4)
            out.append(replace(o, spot=spot))
        return out

    def preemption_source(self) -> PreemptionSource:
        return PreemptionSource(self.name, "", {}, 30.0, 1.0, lambda status, body: False, "simulated")

    # ---------------------------------------------------------- side effects
    def _capacity_key(self, region: str, zone: str, instance_type: str, market: str) -> tuple:
        if self.capacity:
            for r in (region, ""):
                for z in (zone, ""):
                    for t in (instance_type, ""):
                        for m in (market, ""):
                            if (r, z, t, m) in self.capacity:
                                return (r, z, t, m)
        return (region, zone, instance_type, market)  # default_capacity applies per place

    def launch(self, request: LaunchRequest) -> Instance:
        self.launch_calls.append(request)
        o, market = request.offering, request.market
        if not self.credentials_ok:
            raise LaunchError(f"{self.name}: credentials rejected", kind="auth", scope="cloud", cloud=self.name)
        quota = self.quota.get((o.region, market.value))
        if quota is not None and self._used.get(("quota", o.region, market.value), 0) >= quota:
            raise LaunchError(f"{self.name} {o.region}: {market.value} quota of {quota} reached", kind="quota",
                              scope="region", cloud=self.name, region=o.region, market=market)
        key = self._capacity_key(o.region, request.zone, o.instance_type, market.value)
        limit = self.capacity.get(key, self.default_capacity)
        if self._used.get(key, 0) >= limit:
            raise LaunchError(f"{self.name} {request.zone}: no {o.instance_type} {market.value} capacity",
                              kind="capacity", scope="zone", cloud=self.name, region=o.region, zone=request.zone,
                              instance_type=o.instance_type, market=market)
        self._used[key] = self._used.get(key, 0) + 1
        qkey = ("quota", o.region, market.value)
        self._used[qkey] = self._used.get(qkey, 0) + 1
        self._counter += 1
        instance = Instance(f"{self.name}-i{self._counter}", self.name, o.region, request.zone, o.instance_type,
                            market, request.name, "pending")
        ready = math.inf if request.zone in self.never_registers else self.clock() + self.launch_latency_s
        self.running[instance.instance_id] = _SimInstance(instance, o, ready, key)
        return instance

    def terminate(self, instance: Instance) -> None:
        sim = self.running.pop(instance.instance_id, None)
        if sim is None:
            return
        self.terminated.append(instance.instance_id)
        self._used[sim.key] -= 1
        self._used[("quota", sim.offering.region, sim.instance.market.value)] -= 1

    def list(self) -> list[Instance]:
        return [s.instance for s in self.running.values()]

    # ------------------------------------------------------- simulation
    def booted(self) -> list[tuple[Instance, Offering]]:
        """Instances whose worker registers now (each reported once)."""
        now = self.clock()
        out = []
        for iid, sim in self.running.items():
            if iid not in self._reported and sim.ready_at <= now:
                self._reported.add(iid)
                sim.instance.state = "running"
                out.append((sim.instance, sim.offering))
        return out

    def preempt(self) -> list[Instance]:
        """Spot instances reclaimed since the last call (each spot instance independently, at the
        configured hourly rate); they are gone from `running`."""
        now = self.clock()
        dt, self._last_preempt_check = now - self._last_preempt_check, now
        if self.preemptions_per_hour <= 0 or dt <= 0:
            return []
        p = 1.0 - math.exp(-self.preemptions_per_hour * dt / 3600.0)
        lost = [s.instance for s in self.running.values() if s.instance.market == Market.SPOT and self.rng.random() < p]
        for instance in lost:
            self.terminate(instance)
        return lost


class SimulatedCloud(SimulatedProvider):
    """`gpufabric serve --provider simulated`: a simulated cloud whose machines are worker agent
    processes on this machine, for trying the autoscaler without a cloud account and for tests.

    Offerings and prices are `cloud`'s from the catalog (narrowed to `regions` and
    `instance_types` when given), with SimulatedProvider's capacity and quota limits and no
    preemptions. A launched machine is a `gpufabric worker` process that advertises the instance
    type's GPUs (simulated), CPUs and memory (`worker_cpu` / `worker_memory_mb` override those).
    Like real machines, they outlive the control plane: each agent runs in its own session, and
    the instances are recorded in `state_path` (JSON), which the next control plane reads back.
    Configure it in the --provider-config file: {"simulated": {"cloud": "aws", "state_path": ...}}
    (`serve` defaults state_path to simulated-cloud.json in its data dir).
    """

    def __init__(self, *, state_path: str = "", cloud: str = "aws", regions: list | None = None,
                 instance_types: list | None = None, fabric_id: str = "default", default_capacity: int = 4,
                 capacity: dict | None = None, quota: dict | None = None, worker_cpu: float | None = None,
                 worker_memory_mb: int | None = None, log_dir: str | None = None, clock: Callable[[], float] | None = None,
                 popen: Callable | None = None):
        import os
        import subprocess
        import threading
        import time

        from .catalog import load_catalog

        if not state_path:
            raise ValueError('the simulated provider needs a state_path (a JSON file recording its machines), e.g. '
                             '{"simulated": {"state_path": "cloud.json"}} in --provider-config')
        offerings = load_catalog().for_cloud(cloud, regions)
        if instance_types:
            offerings = [o for o in offerings if o.instance_type in set(instance_types)]
        if not offerings:
            raise ValueError(f"the simulated cloud has no offerings: the catalog has none for cloud {cloud!r}"
                             f"{f' in {regions}' if regions else ''}{f' of types {instance_types}' if instance_types else ''}; "
                             "check `python -m gpu_fabric.providers.catalog show`")
        super().__init__("simulated", offerings, clock=clock or time.time, capacity=capacity,
                         default_capacity=default_capacity, quota=quota, spot_swing=0.0, launch_latency_s=0.0)
        self.state_path = os.path.abspath(state_path)
        self.fabric_id = fabric_id
        self.worker_cpu, self.worker_memory_mb = worker_cpu, worker_memory_mb
        self.log_dir = log_dir or os.path.dirname(self.state_path)
        self._popen = popen or subprocess.Popen
        self._pids: dict[str, int] = {}
        self._children: dict[str, object] = {}  # agents this process started (reaped on terminate)
        self._lock = threading.RLock()  # the control plane calls providers from its executor threads
        self._load()

    # ------------------------------------------------------------------ state file
    def _load(self) -> None:
        import json
        import os

        if not os.path.exists(self.state_path):
            return
        with open(self.state_path) as f:
            state = json.load(f)
        self._counter = max(self._counter, int(state.get("counter", 0)))
        by_type = {(o.region, o.instance_type): o for o in self._offerings}
        for iid, entry in state.get("instances", {}).items():
            inst = entry["instance"]
            offering = by_type.get((inst["region"], inst["instance_type"]))
            if offering is None or not _alive(entry["pid"], inst["name"]):
                continue
            instance = Instance(iid, self.name, inst["region"], inst["zone"], inst["instance_type"], Market(inst["market"]),
                                inst["name"], "running", dict(inst.get("labels") or {}))
            key = tuple(entry["key"])
            self.running[iid] = _SimInstance(instance, offering, 0.0, key)
            self._reported.add(iid)
            self._pids[iid] = int(entry["pid"])
            self._used[key] = self._used.get(key, 0) + 1
            qkey = ("quota", offering.region, instance.market.value)
            self._used[qkey] = self._used.get(qkey, 0) + 1
        self._save()

    def _save(self) -> None:
        import json
        import os
        from dataclasses import asdict

        instances = {}
        for iid, sim in self.running.items():
            data = asdict(sim.instance)
            data["market"] = sim.instance.market.value
            instances[iid] = {"instance": data, "key": list(sim.key), "pid": self._pids.get(iid, 0)}
        os.makedirs(os.path.dirname(self.state_path), exist_ok=True)
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"counter": self._counter, "instances": instances}, f, indent=1)
        os.replace(tmp, self.state_path)

    # ---------------------------------------------------------------- provider calls
    def launch(self, request: LaunchRequest) -> Instance:
        with self._lock:
            return self._launch(request)

    def _launch(self, request: LaunchRequest) -> Instance:
        import os
        import subprocess
        import sys

        from .base import FABRIC_TAG, LAUNCH_TAG
        from .local import _worker_args

        instance = super().launch(request)
        instance.labels = {FABRIC_TAG: self.fabric_id, LAUNCH_TAG: request.name, **request.labels}
        o = request.offering
        args = _worker_args(request.startup_script) + [
            "--hostname", request.name, "--simulate-gpus", f"{o.gpu}:{o.gpu_count}",
            "--cpu", str(self.worker_cpu or o.cpu), "--memory-mb", str(int(self.worker_memory_mb or o.memory_gb * 1024)),
        ]
        env = {k: v for k, v in os.environ.items() if k != "GPUFABRIC_PARENT_PID"}  # a machine outlives the fabric
        try:
            os.makedirs(self.log_dir, exist_ok=True)
            with open(os.path.join(self.log_dir, f"{request.name}.log"), "ab") as log_file:
                proc = self._popen([sys.executable, "-m", "gpu_fabric", "worker", *args], stdin=subprocess.DEVNULL,
                                   stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        except OSError as exc:
            super().terminate(instance)
            raise LaunchError(f"simulated: could not start a worker process: {exc}", kind="transient", scope="zone",
                              cloud=self.name, region=o.region, zone=request.zone, instance_type=o.instance_type,
                              market=request.market) from None
        instance.state = "running"
        self._pids[instance.instance_id] = proc.pid
        self._children[instance.instance_id] = proc
        self._save()
        return instance

    def terminate(self, instance: Instance) -> None:
        import os
        import signal

        with self._lock:
            super().terminate(instance)
            pid = self._pids.pop(instance.instance_id, 0)
            if pid and _alive(pid, instance.name):
                try:
                    os.killpg(pid, signal.SIGTERM)  # the agent leads its own session: its containers go too
                except ProcessLookupError:
                    pass
            self._save()
        child = self._children.pop(instance.instance_id, None)
        if child is not None:
            try:
                child.wait(15)
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: it is told to stop; do not hang the caller
                log_stuck(instance)

    def list(self) -> list[Instance]:
        with self._lock:
            gone = [iid for iid, sim in self.running.items() if not _alive(self._pids.get(iid, 0), sim.instance.name)]
            for iid in gone:  # the agent process died: the simulated machine is gone
                SimulatedProvider.terminate(self, self.running[iid].instance)
                self._pids.pop(iid, None)
                child = self._children.pop(iid, None)
                if child is not None:
                    child.poll()  # reap it
            if gone:
                self._save()
            return [s.instance for s in self.running.values()
                    if s.instance.labels.get("gpufabric-fabric", self.fabric_id) == self.fabric_id]

    def preempt(self) -> list[Instance]:
        return []  # real time: machines are lost only when their process ends


def log_stuck(instance: Instance) -> None:
    import logging

    logging.getLogger("gpu_fabric.providers").warning(
        "simulated machine %s (%s) did not stop within 15s of SIGTERM", instance.instance_id, instance.name)


def _alive(pid: int, name: str) -> bool:
    """True while process `pid` runs and is the agent of machine `name` (not a reused pid)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().split(b"\0")
    except OSError:
        return False
    return name.encode() in cmdline
