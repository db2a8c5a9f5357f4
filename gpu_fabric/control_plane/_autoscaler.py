"""The autoscaler: launches workers through providers for queued inputs, fails over, times out, scales to zero."""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from gpu_fabric.providers.base import (
    Availability, Instance, LaunchError, LaunchRequest, Offering, Provider, ProviderError, startup_script,
)
from gpu_fabric.providers.catalog import UnknownGpuType

from ._billing import Charge, Ledger
from .scheduler import Candidate, Scheduler, Unsatisfiable, desired_containers

log = logging.getLogger("gpu_fabric.control_plane.autoscaler")

_STOPPED = 3  # client_pb2.APP_STATE_STOPPED, without importing the generated module here
JOIN_PREFIX = "gfj1"


@dataclass
class Budgets:
    """USD limits: `workspace` over all instances, `apps` per app name over its containers."""

    workspace: float | None = None
    apps: dict = field(default_factory=dict)


@dataclass
class Launch:
    """An instance the autoscaler asked for, from request to registered worker to termination."""

    launch_id: str
    provider: str
    candidate: Candidate
    function_id: str
    app_id: str
    slots: int
    started_at: float
    token: str
    state: str = "launching"  # launching -> booting -> registered -> terminating
    instance: Instance | None = None
    worker_id: str = ""
    idle_since: float = 0.0

    @property
    def name(self) -> str:
        return f"gf-{self.launch_id}"


def inline(call: Callable[[], object], done: Callable[[object, BaseException | None], None]) -> None:
    """Run a provider call now (simulated time, tests): results are applied before this returns."""
    try:
        result, error = call(), None
    except BaseException as exc:  # noqa: BLE001 - handed to `done`
        result, error = None, exc
    done(result, error)


def threaded(loop) -> Callable:
    """Run provider calls (blocking SDK requests) in the loop's executor; apply results on the loop."""

    def run(call, done) -> None:
        future = loop.run_in_executor(None, call)
        future.add_done_callback(lambda f: done(None, f.exception()) if f.exception() else done(f.result(), None))

    return run


class Autoscaler:
    """Turns demand the registered workers cannot meet into launches on the cheapest place that is
    not blocked; terminates what idles past `idle_window_s` or never registers within
    `launch_timeout_s`; stops launching at a budget (queued inputs wait, nothing is dropped)."""

    def __init__(self, providers: list[Provider], scheduler: Scheduler, ledger: Ledger, *, control_url: str,
                 secret: str, clock: Callable[[], float] = time.time, run: Callable = inline,
                 launch_timeout_s: float = 900.0, idle_window_s: float = 300.0, join_token_ttl_s: float = 1800.0,
                 budgets: Budgets | None = None, max_launches_per_tick: int = 16, max_failovers_per_tick: int = 12,
                 install: str = "gpu-fabric[gpu]", workspace: str = "default", recheck_s: float = 600.0,
                 drain_target_s: float = 300.0, assumed_duration_s: float = 60.0):
        self.providers = {p.name: p for p in providers}
        self.scheduler, self.ledger = scheduler, ledger
        self.control_url, self.clock, self.run = control_url, clock, run
        self._secret = hashlib.sha256(("join:" + secret).encode()).digest()
        self.launch_timeout_s, self.idle_window_s, self.join_token_ttl_s = launch_timeout_s, idle_window_s, join_token_ttl_s
        self.budgets = budgets or Budgets()
        self.max_launches_per_tick, self.max_failovers_per_tick = max_launches_per_tick, max_failovers_per_tick
        self.install, self.workspace, self.recheck_s = install, workspace, recheck_s
        # Machines take minutes to boot and bill per second: launch enough to drain the queue
        # within `drain_target_s`, not the seconds the engine aims for on warm workers.
        self.drain_target_s, self.assumed_duration_s = drain_target_s, assumed_duration_s
        self.launches: dict[str, Launch] = {}
        self.availability: dict[str, Availability] = {}
        self._checked_at = -math.inf
        self._over_budget: set[str] = set()
        self._offerings: list[Offering] = []
        self._offerings_at = -math.inf

    # ------------------------------------------------------------ providers
    def check_providers(self, force: bool = False) -> dict[str, Availability]:
        """Ask each provider whether it is usable (credentials, config); cached for `recheck_s`."""
        now = self.clock()
        if force or now - self._checked_at >= self.recheck_s:
            self._checked_at = now
            for name, provider in self.providers.items():
                try:
                    self.availability[name] = provider.availability()
                except Exception as exc:  # noqa: BLE001 - a broken provider must not stop the others
                    self.availability[name] = Availability(False, f"{type(exc).__name__}: {exc}")
                if not self.availability[name].enabled:
                    log.warning("provider %s disabled: %s", name, self.availability[name].reason)
            self._offerings_at = -math.inf
        return self.availability

    def enabled(self) -> list[Provider]:
        self.check_providers()
        return [p for n, p in self.providers.items() if self.availability[n].enabled]

    def offerings(self) -> list[Offering]:
        """Offerings of the enabled providers (re-read each second: simulated spot prices move)."""
        now = self.clock()
        if now - self._offerings_at >= 1.0:
            self._offerings = [o for p in self.enabled() for o in p.offerings()]
            self._offerings_at = now
        return self._offerings

    def disabled_reasons(self) -> list[str]:
        self.check_providers()
        return [f"{n} disabled: {a.reason}" for n, a in self.availability.items() if not a.enabled]

    def can_provide(self, spec) -> bool:
        """True when some enabled provider offers capacity that could run `spec` (blocks aside)."""
        if not spec.gpus:
            return False
        try:
            self.scheduler.check(spec, self.offerings())
        except (Unsatisfiable, UnknownGpuType):
            return False
        return True

    # ---------------------------------------------------------- join tokens
    def _sign(self, launch_id: str, expires: int) -> str:
        return hmac.new(self._secret, f"{launch_id}.{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    def join_token(self, launch_id: str) -> str:
        expires = int(self.clock() + self.join_token_ttl_s)
        return f"{JOIN_PREFIX}.{launch_id}.{expires}.{self._sign(launch_id, expires)}"

    def allows(self, authorization: str) -> bool:
        """Auth hook: a join token admits the worker of its launch, to register within its TTL and
        for as long as that worker's instance lives."""
        token = authorization.removeprefix("Bearer ").strip()
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != JOIN_PREFIX or not parts[2].isdigit():
            return False
        launch_id, expires, sig = parts[1], int(parts[2]), parts[3]
        if not hmac.compare_digest(sig, self._sign(launch_id, expires)):
            return False
        launch = self.launches.get(launch_id)
        if launch is None or launch.state == "terminating":
            return False
        return bool(launch.worker_id) or self.clock() < expires

    # ------------------------------------------------------------ the tick
    def tick(self, fleet) -> None:
        """Periodic work: time out launches, scale down idle workers, launch for unmet demand."""
        now = self.clock()
        self._time_out(fleet, now)
        self._scale_down(fleet, now)
        launched = 0
        for fn in list(fleet.functions.values()):
            if launched >= self.max_launches_per_tick:
                break
            if fn.queue and fn.unplaceable_since and fn.spec.gpus:
                launched += self._provide(fleet, fn, now)

    def pending_slots(self, function_id: str) -> int:
        return sum(la.slots for la in self.launches.values() if la.function_id == function_id and not la.worker_id
                   and la.state in ("launching", "booting"))

    def _shortfall(self, fleet, fn) -> int:
        live = [c for c in fn.containers if c in fleet.containers and not fleet.containers[c].shutdown]
        running = sum(len(fleet.containers[c].held) for c in live)
        per_container = max(1, fn.spec.target_concurrent_inputs or fn.spec.max_concurrent_inputs or 1)
        duration = fn.avg_duration_s if fn.avg_duration_s is not None else self.assumed_duration_s
        drain = math.ceil(len(fn.queue) * duration / (self.drain_target_s * per_container))
        desired = min(desired_containers(fn.spec, queued=len(fn.queue), running=running, avg_duration_s=fn.avg_duration_s),
                      math.ceil(running / per_container) + max(1, drain))
        if fn.spec.max_containers:
            desired = min(desired, fn.spec.max_containers)
        return desired - len(live) - self.pending_slots(fn.function_id)

    def _budget_stop(self, fleet, fn) -> bool:
        app = fleet.apps.get(fn.app_id)
        app_name = app.name if app is not None else fn.app_id
        limits = []
        if self.budgets.workspace is not None:
            limits.append(("workspace", self.workspace, self.budgets.workspace, self.ledger.spend(workspace=self.workspace)))
        if app_name in self.budgets.apps:
            limits.append(("app", app_name, float(self.budgets.apps[app_name]), self.ledger.spend(app=app_name)))
        for scope, name, limit, spent in limits:
            if spent >= limit:
                key = f"{scope}:{name}:{fn.function_id}"
                if key not in self._over_budget:
                    self._over_budget.add(key)
                    self._decide(fleet, fn, "budget", f"the {scope} budget of {name!r} is reached (${spent:.2f} of ${limit:.2f}): "
                                 f"no more machines are launched; queued inputs wait (raise the budget to go on)")
                return True
        self._over_budget = {k for k in self._over_budget if not k.endswith(":" + fn.function_id)}
        return False

    def _provide(self, fleet, fn, now: float) -> int:
        short = self._shortfall(fleet, fn)
        if short <= 0 or self._budget_stop(fleet, fn):
            return 0
        launched = failovers = 0
        while short > 0 and launched < self.max_launches_per_tick and failovers <= self.max_failovers_per_tick:
            candidates, skipped = self.scheduler.rank(fn.spec, self.offerings(), demand=short)
            if not candidates:
                reasons = skipped[:4] + self.disabled_reasons()
                self._decide(fleet, fn, "wait", f"no capacity to launch for {fn.name} now; retrying as blocks expire", reasons)
                break
            best = candidates[0]
            outcome = self._launch(fleet, fn, best, len(candidates), skipped)
            if outcome is None:
                failovers += 1
                continue
            launched += 1
            short -= best.slots
        return launched

    def _launch(self, fleet, fn, candidate: Candidate, n_candidates: int, skipped: list[str]) -> Launch | None:
        """Ask the provider for one instance; None when it failed at once (the place is blocked)."""
        launch_id = uuid.uuid4().hex[:12]
        provider = self.providers[candidate.offering.cloud]
        launch = Launch(launch_id, provider.name, candidate, fn.function_id, fn.app_id, candidate.slots,
                        self.clock(), self.join_token(launch_id))
        self.launches[launch_id] = launch
        request = LaunchRequest(
            candidate.offering, candidate.zone, candidate.market, launch.name,
            startup_script(url=self.control_url, join_token=launch.token, hostname=launch.name, install=self.install),
            {"gpufabric-app": fn.app_id, "gpufabric-function": fn.name[:60]},
        )
        why = f"cheapest of {n_candidates} candidates" + (f"; {len(skipped)} blocked" if skipped else "")
        self._decide(fleet, fn, "launch", f"{candidate.describe()} for {fn.name} ({candidate.slots} containers)", [why])
        self.run(lambda: provider.launch(request), lambda result, error: self._launched(fleet, fn, launch, result, error))
        return None if launch.state == "failed" else launch

    def _launched(self, fleet, fn, launch: Launch, instance, error) -> None:
        if error is not None:
            launch.state = "failed"
            self.launches.pop(launch.launch_id, None)
            if isinstance(error, LaunchError):
                block = self.scheduler.blocklist.add_error(error)
                if error.kind == "auth":
                    self.availability[error.cloud] = Availability(False, str(error))
                self._decide(fleet, fn, "failover", f"launch failed: {error}", [f"blocked {block.scope} {block.cloud}/{block.region}/{block.zone}".rstrip("/")])
            else:
                c = launch.candidate
                self.scheduler.blocklist.add(cloud=c.offering.cloud, region=c.offering.region, zone=c.zone,
                                             instance_type=c.offering.instance_type, market=c.market.value,
                                             kind="transient", reason=f"{type(error).__name__}: {error}")
                self._decide(fleet, fn, "failover", f"launch failed: {type(error).__name__}: {error}")
            return
        launch.instance = instance
        if launch.state == "terminating":  # timed out or cancelled while the request was in flight
            self._terminate(launch)
            return
        launch.state = "booting"
        c = launch.candidate
        self.ledger.start("instance:" + launch.launch_id, Charge(
            "instance", self.workspace, "", "", c.offering.cloud, c.offering.region, c.offering.instance_type,
            c.market.value, c.gpu, c.offering.gpu_count, c.price, 0.0))

    # ------------------------------------------------------- worker events
    def worker_registered(self, fleet, worker) -> Launch | None:
        """A worker joined: if it is one of ours (matched by hostname), fill in where it runs and its price."""
        hostname = getattr(worker.info, "hostname", "")
        launch = self.launches.get(hostname.removeprefix("gf-")) if hostname.startswith("gf-") else None
        if launch is None:
            launch = self._match_local(hostname)
        if launch is None or launch.state == "terminating":
            return None
        launch.state, launch.worker_id, launch.idle_since = "registered", worker.worker_id, self.clock()
        c = launch.candidate
        info = worker.info
        info.provider, info.region, info.instance_type = c.offering.cloud, c.offering.region, c.offering.instance_type
        info.preemptible, info.price_per_hour = c.market.value == "spot", c.price
        return launch

    def _match_local(self, hostname: str) -> Launch | None:
        # A local worker cannot take the launch's hostname; it is this machine's own.
        import socket

        if hostname != socket.gethostname():
            return None
        pending = [la for la in self.launches.values() if la.provider == "local" and not la.worker_id and la.state == "booting"]
        return min(pending, key=lambda la: la.started_at) if pending else None

    def worker_lost(self, worker_id: str) -> None:
        """A worker stopped heartbeating (preempted, crashed): make sure its instance is gone."""
        for launch in list(self.launches.values()):
            if launch.worker_id == worker_id:
                self._terminate(launch)

    # ------------------------------------------------ timeouts and scale-down
    def _time_out(self, fleet, now: float) -> None:
        for launch in list(self.launches.values()):
            if launch.worker_id or launch.state not in ("launching", "booting"):
                continue
            if now - launch.started_at > self.launch_timeout_s:
                c = launch.candidate
                self.scheduler.blocklist.add(cloud=c.offering.cloud, region=c.offering.region, zone=c.zone,
                                             instance_type=c.offering.instance_type, market=c.market.value,
                                             kind="no-register", reason=f"a worker did not register within {self.launch_timeout_s:g}s")
                fn = fleet.functions.get(launch.function_id)
                if fn is not None:
                    self._decide(fleet, fn, "timeout", f"{c.describe()}: its worker did not register within "
                                 f"{self.launch_timeout_s:g}s; terminating it and placing again elsewhere")
                self._terminate(launch)

    def _scale_down(self, fleet, now: float) -> None:
        for launch in list(self.launches.values()):
            if not launch.worker_id:
                continue
            worker = fleet.workers.get(launch.worker_id)
            if worker is None:
                self._terminate(launch)
                continue
            if worker.containers:
                launch.idle_since = 0.0
            elif not launch.idle_since:
                launch.idle_since = now
            elif now - launch.idle_since >= self.idle_window_s:
                worker.capacity.accepting = False
                fleet.lose_worker(worker, f"idle for {now - launch.idle_since:.0f}s: scaled down")
                self._terminate(launch)

    def _terminate(self, launch: Launch) -> None:
        if launch.state == "terminating" and launch.instance is None:
            return
        was_launching = launch.state == "launching"
        launch.state = "terminating"
        if launch.instance is None:
            if not was_launching:
                self.launches.pop(launch.launch_id, None)
            return  # still in flight: `_launched` terminates it when the instance arrives
        self.launches.pop(launch.launch_id, None)
        self.ledger.stop("instance:" + launch.launch_id)
        provider, instance = self.providers[launch.provider], launch.instance
        launch.instance = None

        def done(_result, error) -> None:
            if error is not None:
                log.error("could not terminate %s %s: %s", provider.name, instance.instance_id, error)

        self.run(lambda: provider.terminate(instance), done)

    def reconcile(self) -> list[Instance]:
        """Terminate instances tagged with this fabric that no launch knows (left by an earlier run)."""
        known = {la.instance.instance_id for la in self.launches.values() if la.instance is not None}
        stray = []
        for provider in self.enabled():
            try:
                for instance in provider.list():
                    if instance.instance_id not in known:
                        stray.append(instance)
                        provider.terminate(instance)
            except ProviderError as exc:
                log.warning("could not list %s instances: %s", provider.name, exc)
        return stray

    def shutdown(self) -> None:
        """Terminate every instance this autoscaler launched (the fabric is stopping)."""
        for launch in list(self.launches.values()):
            self._terminate(launch)

    def _decide(self, fleet, fn, action: str, detail: str, reasons: list[str] | None = None) -> None:
        decision = self.scheduler.record(fn.app_id, fn.name, action, detail, reasons)
        fleet.system_log(fn.app_id, decision.text(), fn.name)


def check_function(engine, spec, name: str) -> None:
    """Deploy-time checks: GPU types the catalog (or a registered worker) knows, and, with providers,
    constraints something can satisfy. Raises FabricError naming the problem."""
    from ._outcomes import FabricError

    for request in spec.gpus:
        try:
            engine.scheduler.catalog.resolve(request.type, request.count)
        except UnknownGpuType as exc:
            wanted = request.type.rstrip("!").upper()
            if not any(w.gpu_type == wanted for w in engine.scheduler.index.workers.values()):
                raise FabricError("INVALID_ARGUMENT", f"{name}: {exc}") from None
    if engine.autoscaler is None or not spec.gpus or engine.scheduler.could_ever_fit(spec):
        return
    try:
        engine.scheduler.check(spec, engine.autoscaler.offerings(), name)
    except Unsatisfiable as exc:
        reasons = engine.autoscaler.disabled_reasons()
        extra = f" ({'; '.join(reasons)})" if reasons else ""
        raise FabricError("FAILED_PRECONDITION", f"{exc}{extra}; relax {exc.constraint} or enable a provider that has it") from None
    except UnknownGpuType:
        pass  # a type only registered workers have, checked above


def configure(plane, options: dict | None) -> None:
    """Give a started ControlPlane its providers and autoscaler from `serve` options:
    providers (names), provider_config ({name: kwargs}), budget_usd, app_budgets ({app: usd}),
    launch_timeout_s, idle_window_s, public_url (what launched machines dial), fabric_id."""
    import asyncio
    import os

    from gpu_fabric.providers import make_provider

    engine = plane.engine
    engine.ledger.path = os.path.join(plane.data_dir, "billing.jsonl")
    if not options or not options.get("providers"):
        return
    config = options.get("provider_config") or {}
    fabric_id = options.get("fabric_id") or "default"
    providers = []
    for name in options["providers"]:
        kwargs = dict(config.get(name, {}))
        if name != "local":
            kwargs.setdefault("fabric_id", fabric_id)
        providers.append(make_provider(name, **kwargs))
    engine.autoscaler = Autoscaler(
        providers, engine.scheduler, engine.ledger, control_url=options.get("public_url") or plane.url,
        secret=plane.token, clock=engine.clock, run=threaded(asyncio.get_running_loop()),
        launch_timeout_s=options.get("launch_timeout_s", 900.0), idle_window_s=options.get("idle_window_s", 300.0),
        budgets=Budgets(options.get("budget_usd"), dict(options.get("app_budgets") or {})),
    )
    for name, avail in engine.autoscaler.check_providers(force=True).items():
        log.warning("provider %s: %s", name, "enabled" if avail.enabled else f"disabled: {avail.reason}")


def shutdown(plane) -> None:
    """Terminate the machines this control plane launched (it is stopping; their join tokens die with it)."""
    autoscaler = plane.engine.autoscaler
    if autoscaler is not None:
        autoscaler.run = inline
        autoscaler.shutdown()
