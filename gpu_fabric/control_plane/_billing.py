"""The billing ledger: per-second container and instance time times price, per function, app and workspace."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from typing import Callable

from ._tokens import DEFAULT_WORKSPACE

log = logging.getLogger("gpu_fabric.control_plane")

BY = ("function", "app", "workspace", "cloud", "gpu")


@dataclass
class Charge:
    """Time something ran and what it cost. kind "container" is attributed to a function;
    kind "instance" is what the cloud bills for the machine (idle time included)."""

    kind: str
    workspace: str
    app: str
    function: str
    cloud: str
    region: str
    instance_type: str
    market: str
    gpu: str
    gpu_count: int
    price_per_hour: float
    started_at: float
    seconds: float = 0.0
    # Containers: "cold", "fork_server" or "snapshot", as the container reported when ready.
    start_kind: str = ""
    # Containers: the workspace the machine they ran on was launched for ("" when the autoscaler
    # did not launch it). Their time is taken off that workspace's idle-machine share.
    host_workspace: str = ""

    @property
    def usd(self) -> float:
        return self.seconds * self.price_per_hour / 3600.0


@dataclass
class Replay:
    """The scheduler's choices against running the same GPU-seconds on one cloud's on-demand price."""

    actual_usd: float
    baseline_usd: float
    baseline_cloud: str
    gpu_seconds: float
    unpriced_gpu_seconds: float  # GPU types the baseline cloud does not offer (left out of both sums)

    @property
    def saving(self) -> float:
        return 1.0 - self.actual_usd / self.baseline_usd if self.baseline_usd else 0.0


class Ledger:
    """Open charges (running now) and closed ones; closed charges are appended to `path` (JSON
    lines) when given, so a restarted control plane keeps its history.

    What counts against budgets (`spend`): an app, its containers' time (their share of the
    machine's price); a workspace, its apps' containers plus the idle rest of the machines launched
    for it (machine time no container used); the whole fabric, every machine it launched."""

    def __init__(self, clock: Callable[[], float], path: str | None = None):
        self.clock = clock
        self.path = path
        self.open: dict[str, Charge] = {}
        self.closed: list[Charge] = []
        # ("app"|"workspace"|"hosted"|"instances", name) and ("all", "") -> usd of closed charges
        self._spent: dict[tuple[str, str], float] = {}
        # worker id -> the workspace its machine was launched for (set by the autoscaler)
        self.hosts: dict[str, str] = {}
        if path:
            self.load(path)

    def load(self, path: str) -> None:
        """Read the closed charges kept at `path` (an earlier run's history: budgets count it) and
        append new ones there from now on."""
        if self.path == path and self.closed:
            return
        self.path = path
        if os.path.exists(path):
            with open(path) as f:
                for number, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        self._close_record(Charge(**json.loads(line)))
                    except (ValueError, TypeError) as exc:
                        log.warning("billing ledger %s line %d is not a charge (%s); skipped", path, number, exc)

    # ----------------------------------------------------------- recording
    def start(self, key: str, charge: Charge, at: float | None = None) -> None:
        """Begin charging `key` (a container or instance id) from now, or from `at` (a machine
        adopted after a restart goes on being charged from when it was launched)."""
        charge.started_at = self.clock() if at is None else at
        self.open[key] = charge

    def stop(self, key: str) -> Charge | None:
        """Stop charging `key`; returns the closed charge (None when it was not open)."""
        charge = self.open.pop(key, None)
        if charge is None:
            return None
        return self.close(charge, self.clock())

    def close(self, charge: Charge, ended_at: float) -> Charge:
        """Record `charge` as having run from its `started_at` to `ended_at` (a machine that
        vanished while the control plane was down is closed at the last time it was known)."""
        charge.seconds = max(0.0, ended_at - charge.started_at)
        self._close_record(charge)
        if self.path:
            try:
                with open(self.path, "a") as f:
                    f.write(json.dumps(asdict(charge)) + "\n")
            except OSError:
                log.exception("could not append to the billing ledger %s", self.path)
        return charge

    def _add(self, key: tuple[str, str], usd: float) -> None:
        self._spent[key] = self._spent.get(key, 0.0) + usd

    def _close_record(self, charge: Charge) -> None:
        self.closed.append(charge)
        usd = charge.usd
        if charge.kind == "container":
            self._add(("app", charge.app), usd)
            self._add(("app", f"{charge.workspace}/{charge.app}"), usd)  # an app name is per workspace
            self._add(("workspace", charge.workspace), usd)
            if charge.host_workspace:
                self._add(("hosted", charge.host_workspace), usd)
        else:
            self._add(("instances", charge.workspace), usd)
            self._add(("all", ""), usd)

    def container_started(self, container, worker, *, app: str, function: str, workspace: str = DEFAULT_WORKSPACE) -> None:
        """Charge a container its share of its worker's price (its GPUs' share, or its CPU share),
        to its app's `workspace`."""
        info = worker.info
        capacity = worker.capacity
        price = float(getattr(info, "price_per_hour", 0.0) or 0.0)
        gpus = len(container.placement.gpu_indices)
        if capacity.gpus:
            share = gpus / len(capacity.gpus)
        else:
            share = container.placement.cpu / capacity.cpu_total if capacity.cpu_total else 0.0
        self.start(container.container_id, Charge(
            "container", workspace, app, function, getattr(info, "provider", "") or "local", getattr(info, "region", ""),
            getattr(info, "instance_type", ""), "spot" if getattr(info, "preemptible", False) else "on-demand",
            container.placement.gpu_type, gpus, price * share, 0.0,
            host_workspace=self.hosts.get(worker.worker_id, ""),
        ))

    def container_stopped(self, container_id: str) -> None:
        self.stop(container_id)

    # ------------------------------------------------------------- reading
    def spend(self, *, app: str | None = None, workspace: str | None = None) -> float:
        """USD spent so far, running charges included: an `app`'s containers (in every workspace, or
        in `workspace` when given too); a `workspace`'s containers plus the idle rest of the machines
        launched for it; with neither, every machine."""
        now = self.clock()

        def running(c: Charge) -> float:
            return max(0.0, now - c.started_at) * c.price_per_hour / 3600

        if app is not None:
            key = app if workspace is None else f"{workspace}/{app}"
            return self._spent.get(("app", key), 0.0) + sum(
                running(c) for c in self.open.values()
                if c.kind == "container" and c.app == app and (workspace is None or c.workspace == workspace))
        if workspace is None:
            return self._spent.get(("all", ""), 0.0) + sum(running(c) for c in self.open.values() if c.kind == "instance")
        total = (self._spent.get(("workspace", workspace), 0.0) + self._spent.get(("instances", workspace), 0.0)
                 - self._spent.get(("hosted", workspace), 0.0))
        for c in self.open.values():
            if c.kind == "instance":
                total += running(c) if c.workspace == workspace else 0.0
            else:
                total += (running(c) if c.workspace == workspace else 0.0) - (running(c) if c.host_workspace == workspace else 0.0)
        return max(0.0, total)

    def charges(self, include_running: bool = True) -> list[Charge]:
        out = list(self.closed)
        if include_running:
            now = self.clock()
            for c in self.open.values():
                running = Charge(**asdict(c))
                running.seconds = max(0.0, now - c.started_at)
                out.append(running)
        return out

    def totals(self, by: str = "function", kind: str = "container") -> list[tuple[str, float, float]]:
        """(name, seconds, usd) rows grouped `by` one of BY, most expensive first."""
        if by not in BY:
            raise ValueError(f"group by one of {', '.join(BY)}")
        rows: dict[str, list[float]] = {}
        for c in self.charges():
            if c.kind != kind:
                continue
            name = {"function": f"{c.app}.{c.function}", "app": c.app, "workspace": c.workspace,
                    "cloud": c.cloud, "gpu": c.gpu or "cpu"}[by]
            row = rows.setdefault(name, [0.0, 0.0])
            row[0] += c.seconds
            row[1] += c.usd
        return sorted(((k, v[0], v[1]) for k, v in rows.items()), key=lambda r: -r[2])

    def replay(self, catalog, baseline_cloud: str = "aws", kind: str = "container") -> Replay:
        """Price the same GPU-seconds at `baseline_cloud`'s cheapest on-demand price per GPU."""
        per_gpu: dict[str, float] = {}
        for o in catalog.offerings:
            if o.cloud == baseline_cloud:
                p = o.on_demand / o.gpu_count
                per_gpu[o.gpu] = min(p, per_gpu.get(o.gpu, p))
        actual = baseline = gpu_s = unpriced = 0.0
        for c in self.charges():
            if c.kind != kind or not c.gpu_count:
                continue
            seconds = c.seconds * c.gpu_count
            gpu_s += seconds
            price = per_gpu.get(c.gpu)
            if price is None:
                unpriced += seconds
                continue
            actual += c.usd
            baseline += seconds * price / 3600
        return Replay(actual, baseline, baseline_cloud, gpu_s, unpriced)


class BillingServicer:
    """FabricBilling: the ledger, the replay and the scheduler's recent decisions."""

    def __init__(self, engine):
        self.engine = engine

    async def BillingReport(self, request, context):
        from gpu_fabric.proto import billing_pb2

        engine = self.engine
        by = request.group_by or "function"
        if by not in BY:
            from grpc import StatusCode

            await context.abort(StatusCode.INVALID_ARGUMENT, f"group_by must be one of {', '.join(BY)}")
        baseline = request.baseline_cloud or "aws"
        replay = engine.ledger.replay(engine.scheduler.catalog, baseline)
        instance_usd = sum(usd for _, _, usd in engine.ledger.totals("workspace", kind="instance"))
        providers = []
        if engine.autoscaler is not None:
            for name, avail in engine.autoscaler.check_providers().items():
                providers.append(f"{name}: enabled" if avail.enabled else f"{name}: disabled: {avail.reason}")
        decisions = list(engine.scheduler.decisions)[-request.decisions:] if request.decisions > 0 else []
        return billing_pb2.BillingReportResponse(
            rows=[billing_pb2.BillingRow(name=n, seconds=s, usd=u) for n, s, u in engine.ledger.totals(by)],
            instance_usd=instance_usd, actual_usd=replay.actual_usd, baseline_usd=replay.baseline_usd,
            baseline_cloud=baseline, providers=providers, decisions=[d.text() for d in decisions],
        )
