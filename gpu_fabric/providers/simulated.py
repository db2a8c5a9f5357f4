"""A simulated cloud over an injected clock: capacity limits, launch latency, moving spot prices, preemptions."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Callable

from .base import Availability, Instance, LaunchError, LaunchRequest, Market, Offering, PreemptionSource, Provider

__all__ = ["SimClock", "SimulatedProvider"]


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
