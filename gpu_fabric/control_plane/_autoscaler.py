"""The autoscaler: launches workers through providers for queued inputs, fails over, times out, scales to zero.

Launches are kept in the state store (`_launches.py`), so a restarted control plane adopts the
machines still running; idle machines go by an idle window that adapts to arrivals (`_idle.py`);
budgets stop launching per app, per workspace and for the whole fabric.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from gpu_fabric.providers.base import (
    Availability, Instance, LaunchError, LaunchRequest, Offering, Provider, startup_script,
)
from gpu_fabric.providers.catalog import UnknownGpuType

from . import _launches
from ._billing import Ledger
from ._budgets import BudgetGuard, Budgets, workspace_of
from ._idle import IdlePolicy
from ._tokens import DEFAULT_WORKSPACE
from .scheduler import Candidate, Scheduler, Unsatisfiable, desired_containers

log = logging.getLogger("gpu_fabric.control_plane.autoscaler")

_STOPPED = 3  # client_pb2.APP_STATE_STOPPED, without importing the generated module here
JOIN_PREFIX = "gfj1"


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
    workspace: str = DEFAULT_WORKSPACE  # of the app it was launched for: its idle time counts there
    # launching -> booting -> registered -> terminating; "rejoining": adopted after a restart,
    # its worker (registered before) not back yet
    state: str = "launching"
    instance: Instance | None = None
    worker_id: str = ""
    idle_since: float = 0.0
    prior_worker_id: str = ""  # adopted: the worker id it had before the restart
    rejoin_by: float = 0.0
    charged_from: float = 0.0  # when its instance charge began

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
    not blocked; terminates what idles past its adaptive idle window (at most `idle_window_s`;
    `adaptive_idle=False` for the fixed window) or never registers within `launch_timeout_s`; stops
    launching at a budget (queued inputs wait, nothing is dropped).

    `store`: the StateStore its launches are kept in (None: not kept; a restart forgets them).
    `rejoin_timeout_s`: how long an adopted machine's worker has to re-register after a restart.
    `sweep_s`: how often providers are listed for tagged instances no launch knows (terminated).
    """

    def __init__(self, providers: list[Provider], scheduler: Scheduler, ledger: Ledger, *, control_url: str,
                 secret: str, clock: Callable[[], float] = time.time, run: Callable = inline,
                 launch_timeout_s: float = 900.0, idle_window_s: float = 300.0, join_token_ttl_s: float = 1800.0,
                 budgets: Budgets | None = None, max_launches_per_tick: int = 16, max_failovers_per_tick: int = 12,
                 install: str = "gpu-fabric[gpu]", recheck_s: float = 600.0,
                 drain_target_s: float = 300.0, assumed_duration_s: float = 60.0, store=None,
                 rejoin_timeout_s: float = 120.0, adaptive_idle: bool = True, sweep_s: float = 600.0,
                 alive_every_s: float = 30.0):
        self.providers = {p.name: p for p in providers}
        self.scheduler, self.ledger = scheduler, ledger
        self.control_url, self.clock, self.run = control_url, clock, run
        self._secret = hashlib.sha256(("join:" + secret).encode()).digest()
        self.launch_timeout_s, self.idle_window_s, self.join_token_ttl_s = launch_timeout_s, idle_window_s, join_token_ttl_s
        self.idle = IdlePolicy(idle_window_s, adaptive=adaptive_idle)
        self.budgets = budgets or Budgets()
        self.guard = BudgetGuard(self.budgets, ledger, scheduler, clock)
        self.max_launches_per_tick, self.max_failovers_per_tick = max_launches_per_tick, max_failovers_per_tick
        self.install, self.recheck_s = install, recheck_s
        self.store, self.rejoin_timeout_s, self.sweep_s, self.alive_every_s = store, rejoin_timeout_s, sweep_s, alive_every_s
        self._swept_at = self._alive_at = clock()
        self.keep_machines = False  # on stop: leave machines for the next start to adopt (`serve --keep-machines`)
        # Machines take minutes to boot and bill per second: launch enough to drain the queue
        # within `drain_target_s`, not the seconds the engine aims for on warm workers.
        self.drain_target_s, self.assumed_duration_s = drain_target_s, assumed_duration_s
        self.launches: dict[str, Launch] = {}
        self.availability: dict[str, Availability] = {}
        self._checked_at = -math.inf
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

    def token_from_id(self, token_id: str) -> str:
        """The join token of a stored "<launch_id>.<expires>" (the signature comes from the fabric's secret)."""
        launch_id, _, expires = token_id.partition(".")
        if not expires.isdigit():
            return ""
        return f"{JOIN_PREFIX}.{launch_id}.{expires}.{self._sign(launch_id, int(expires))}"

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
        return bool(launch.worker_id or launch.prior_worker_id) or self.clock() < expires

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
        if self.store is not None and self.launches and now - self._alive_at >= self.alive_every_s:
            self._alive_at = now
            self._store_call(lambda: self.store.set_meta(_launches.ALIVE_KEY, repr(now)))
        if now - self._swept_at >= self.sweep_s:
            self._swept_at = now
            self._sweep()

    def note_arrival(self, fn, now: float | None = None) -> None:
        """Inputs arrived for `fn`: the adaptive idle window learns the function's arrival gaps."""
        self.idle.arrival(fn.function_id, self.clock() if now is None else now)

    def pending_slots(self, function_id: str) -> int:
        """Containers of `function_id` that machines on their way (booting, or rejoining after a restart) will hold."""
        return sum(la.slots for la in self.launches.values() if la.function_id == function_id and not la.worker_id
                   and la.state in ("launching", "booting", "rejoining"))

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

    @staticmethod
    def workspace_of(fleet, app_id: str) -> str:
        return workspace_of(fleet, app_id)

    def restriction(self, fleet, fn) -> Callable[[Launch], bool] | None:
        """Which launched machines `fn` may use while its workspace or app is at its budget (_budgets.py)."""
        return self.guard.restriction(fleet, fn)

    def place(self, fleet, fn, allowed: Callable[[Launch], bool] | None):
        """The scheduler's placement for `fn`, leaving out launched machines `allowed` rejects."""
        return self.guard.place(fn, allowed, self.launches.values())

    def _provide(self, fleet, fn, now: float) -> int:
        short = self._shortfall(fleet, fn)
        if short <= 0 or self.guard.stop(fleet, fn, self._decide):
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
                        self.clock(), self.join_token(launch_id), workspace=self.workspace_of(fleet, fn.app_id))
        self.launches[launch_id] = launch
        self.persist(launch)  # before the request: a crash while it is in flight still leaves its name
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
            self._forget(launch)
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
        launch.charged_from = self.clock()
        self.ledger.start("instance:" + launch.launch_id, _launches.instance_charge(launch), at=launch.charged_from)
        self.persist(launch)

    # ------------------------------------------------------- worker events
    def worker_registered(self, fleet, worker) -> Launch | None:
        """A worker joined: if it is one of ours (its worker id from before a restart, or its
        hostname, which is the launch's name), fill in where it runs and its price."""
        now = self.clock()
        launch = next((la for la in self.launches.values()
                       if la.prior_worker_id and la.prior_worker_id == worker.worker_id and la.state == "rejoining"), None)
        hostname = getattr(worker.info, "hostname", "")
        if launch is None and hostname.startswith("gf-"):
            launch = self.launches.get(hostname.removeprefix("gf-"))
        if launch is None or launch.state == "terminating":
            return None
        if launch.state in ("launching", "booting"):
            self.idle.launched(launch.provider, now - launch.started_at)  # the provider's launch latency
        launch.state, launch.worker_id, launch.idle_since, launch.prior_worker_id = "registered", worker.worker_id, now, ""
        c = launch.candidate
        info = worker.info
        info.provider, info.region, info.instance_type = c.offering.cloud, c.offering.region, c.offering.instance_type
        info.preemptible, info.price_per_hour = c.market.value == "spot", c.price
        self.ledger.hosts[worker.worker_id] = launch.workspace
        self.persist(launch)
        return launch

    def worker_lost(self, worker_id: str) -> None:
        """A worker stopped heartbeating (preempted, crashed): make sure its instance is gone."""
        for launch in list(self.launches.values()):
            if launch.worker_id == worker_id:
                self._terminate(launch)

    # ------------------------------------------------ timeouts and scale-down
    def _time_out(self, fleet, now: float) -> None:
        for launch in list(self.launches.values()):
            if launch.state == "rejoining" and now > launch.rejoin_by:
                self.decide_for(fleet, launch, "timeout", f"{launch.candidate.describe()}: its worker did not come back "
                                f"within {self.rejoin_timeout_s:g}s of the control plane's restart; terminating it")
                self._terminate(launch)
                continue
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
        """Terminate registered machines the idle policy no longer keeps (`_idle.py`)."""
        for launch in list(self.launches.values()):
            if not launch.worker_id:
                continue
            worker = fleet.workers.get(launch.worker_id)
            if worker is None:
                self._terminate(launch)
                continue
            if worker.containers:
                launch.idle_since = 0.0
                continue
            if not launch.idle_since:
                launch.idle_since = now
                continue
            idle_s = now - launch.idle_since
            fn = fleet.functions.get(launch.function_id)
            if fn is not None and fn.queue and idle_s < self.idle_window_s:
                continue  # its function has inputs waiting: they are placed on it next
            verdict = self.idle.verdict(pool=launch.function_id, provider=launch.provider,
                                        price_per_hour=launch.candidate.price, idle_s=idle_s, now=now)
            if verdict.keep:
                continue
            worker.capacity.accepting = False
            self.decide_for(fleet, launch, "scale-down", f"{launch.candidate.describe()}: {verdict.reason}; terminating it")
            fleet.lose_worker(worker, f"scaled down: {verdict.reason}")
            self._terminate(launch)

    def _terminate(self, launch: Launch) -> None:
        if launch.state == "terminating" and launch.instance is None:
            return
        was_launching = launch.state == "launching"
        launch.state = "terminating"
        if launch.worker_id:
            self.ledger.hosts.pop(launch.worker_id, None)
        if launch.instance is None:
            if not was_launching:
                self.launches.pop(launch.launch_id, None)
                self._forget(launch)
            return  # still in flight: `_launched` terminates it when the instance arrives
        self.launches.pop(launch.launch_id, None)
        self.ledger.stop("instance:" + launch.launch_id)
        self._forget(launch)
        provider, instance = self.providers[launch.provider], launch.instance
        launch.instance = None

        def done(_result, error) -> None:
            if error is not None:
                log.error("could not terminate %s %s: %s (the periodic sweep tries again)", provider.name, instance.instance_id, error)

        self.run(lambda: provider.terminate(instance), done)

    def _sweep(self) -> None:
        """Terminate instances tagged with this fabric that no launch knows (a launch whose request
        was in flight when an earlier control plane died, a failed terminate)."""
        for provider in self.enabled():
            def done(instances, error, provider=provider) -> None:
                if error is not None:
                    log.warning("could not list %s instances: %s", provider.name, error)
                    return
                known = {la.instance.instance_id for la in self.launches.values() if la.instance is not None}
                names = {la.name for la in self.launches.values()}
                for instance in instances or ():
                    if instance.instance_id not in known and instance.name not in names:
                        log.warning("terminating %s instance %s (%s): tagged with this fabric but no launch knows it",
                                    provider.name, instance.instance_id, instance.name or "no name")
                        self.run(lambda i=instance: provider.terminate(i), lambda _r, e: e and log.error("terminate failed: %s", e))

            self.run(provider.list, done)

    def shutdown(self, keep_machines: bool = False) -> None:
        """The fabric is stopping: terminate every instance this autoscaler launched, or with
        `keep_machines` leave them running (and in the store) for the next start to adopt."""
        if keep_machines:
            if self.store is not None and self.launches:
                self._store_call(lambda: self.store.set_meta(_launches.ALIVE_KEY, repr(self.clock())))
            return
        for launch in list(self.launches.values()):
            self._terminate(launch)

    # ------------------------------------------------------------ the store
    def persist(self, launch: Launch) -> None:
        """Write `launch` to the store (a failure is logged: the machine is then found as a stray on restart)."""
        if self.store is not None:
            self._store_call(lambda: self.store.put_launch(_launches.to_row(launch)))

    def _forget(self, launch: Launch) -> None:
        if self.store is not None:
            self._store_call(lambda: self.store.delete_launch(launch.launch_id))

    @staticmethod
    def _store_call(call: Callable[[], object]) -> None:
        try:
            call()
        except Exception:  # noqa: BLE001 - capacity management goes on; the restart reconciles
            log.exception("could not record a launch in the state store")

    def _decide(self, fleet, fn, action: str, detail: str, reasons: list[str] | None = None) -> None:
        decision = self.scheduler.record(fn.app_id, fn.name, action, detail, reasons)
        fleet.system_log(fn.app_id, decision.text(), fn.name)

    def decide_for(self, fleet, launch: Launch, action: str, detail: str) -> None:
        """Record a decision about `launch` in the log of the app it was launched for."""
        fn = fleet.functions.get(launch.function_id)
        if fn is not None:
            self._decide(fleet, fn, action, detail)
        else:
            self.scheduler.record(launch.app_id, "", action, detail)


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
    """Give a started ControlPlane its providers and autoscaler from `serve` options, then
    reconcile the launches an earlier run left in the store (`_launches.restore`).

    providers: names (or Provider objects, for embedding and tests); provider_config ({name:
    kwargs}); budget_usd (all machines), workspace_budgets ({workspace: usd}), app_budgets ({app:
    usd}); launch_timeout_s; idle_window_s (the upper bound of the adaptive window); adaptive_idle
    (False: the fixed window); keep_machines (leave machines running on stop, for the next start to
    adopt); rejoin_timeout_s; public_url (what launched machines dial); fabric_id.
    """
    import asyncio
    import os

    from gpu_fabric.providers import make_provider

    engine = plane.engine
    engine.ledger.load(os.path.join(plane.data_dir, "billing.jsonl"))
    if not options or not options.get("providers"):
        _warn_unmanaged(plane.store)
        return
    config = options.get("provider_config") or {}
    fabric_id = options.get("fabric_id") or "default"
    providers = []
    for name in options["providers"]:
        if isinstance(name, Provider):
            providers.append(name)
            continue
        kwargs = dict(config.get(name, {}))
        if name != "local":
            kwargs.setdefault("fabric_id", fabric_id)
        if name == "simulated":  # its machines' record, beside the fabric's own state
            kwargs.setdefault("state_path", os.path.join(plane.data_dir, "simulated-cloud.json"))
        providers.append(make_provider(name, **kwargs))
    engine.autoscaler = Autoscaler(
        providers, engine.scheduler, engine.ledger, control_url=options.get("public_url") or plane.url,
        secret=plane.token, clock=engine.clock, run=threaded(asyncio.get_running_loop()),
        launch_timeout_s=options.get("launch_timeout_s", 900.0), idle_window_s=options.get("idle_window_s", 300.0),
        budgets=Budgets(options.get("budget_usd"), dict(options.get("workspace_budgets") or {}),
                        dict(options.get("app_budgets") or {})),
        store=plane.store, adaptive_idle=options.get("adaptive_idle", True),
        rejoin_timeout_s=options.get("rejoin_timeout_s", 120.0),
    )
    engine.autoscaler.keep_machines = bool(options.get("keep_machines"))
    for name, avail in engine.autoscaler.check_providers(force=True).items():
        log.warning("provider %s: %s", name, "enabled" if avail.enabled else f"disabled: {avail.reason}")
    _launches.restore(engine.autoscaler, engine)


def _warn_unmanaged(store) -> None:
    try:
        rows = store.launches()
    except Exception:  # noqa: BLE001 - only a warning
        return
    if rows:
        clouds = ", ".join(sorted({r.provider for r in rows}))
        log.warning("%d machine(s) launched by an earlier run on %s may still be running; start with --provider "
                    "%s to adopt or terminate them", len(rows), clouds, " --provider ".join(sorted({r.provider for r in rows})))


def shutdown(plane) -> None:
    """The control plane is stopping: terminate the machines it launched (their join tokens die
    with it), or leave them for the next start to adopt when `keep_machines` was asked for."""
    autoscaler = plane.engine.autoscaler
    if autoscaler is not None:
        autoscaler.run = inline
        autoscaler.shutdown(keep_machines=getattr(autoscaler, "keep_machines", False))
