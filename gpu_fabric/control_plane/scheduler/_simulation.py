"""A small stand-in for the engine's fleet, driving the real scheduler, autoscaler and ledger in simulated time."""
from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass, field

from gpu_fabric.proto import worker_pb2

from .._billing import Ledger
from . import GpuSlot, Scheduler, WorkerCapacity, desired_containers


@dataclass
class SimApp:
    name: str
    state: int = 1
    workspace: str = "main"


@dataclass
class SimFunction:
    function_id: str
    app_id: str
    name: str
    spec: object
    duration_s: float
    queue: collections.deque = field(default_factory=collections.deque)
    containers: set = field(default_factory=set)
    unplaceable_since: float = 0.0
    avg_duration_s: float | None = None


@dataclass
class SimContainer:
    container_id: str
    worker_id: str
    function_id: str
    placement: object
    held: dict = field(default_factory=dict)  # input -> finishes at
    shutdown: bool = False
    idle_since: float = 0.0


@dataclass
class SimWorker:
    worker_id: str
    capacity: WorkerCapacity
    info: object
    containers: set = field(default_factory=set)


class SimFleet:
    """Functions with queues, workers from simulated providers, containers that run one input for
    the function's duration. Preempted workers re-queue their inputs, as the engine does."""

    def __init__(self, clock, providers, *, scaledown_window_s: float = 60.0, **autoscaler_options):
        from .._autoscaler import Autoscaler

        self.clock = clock
        self.providers = {p.name: p for p in providers}
        self.scheduler = Scheduler(clock=clock)
        self.ledger = Ledger(clock)
        self.autoscaler = Autoscaler(providers, self.scheduler, self.ledger, control_url="grpc://sim:1",
                                     secret="sim", clock=clock, **autoscaler_options)
        self.apps: dict[str, SimApp] = {}
        self.functions: dict[str, SimFunction] = {}
        self.containers: dict[str, SimContainer] = {}
        self.workers: dict[str, SimWorker] = {}
        self.scaledown_window_s = scaledown_window_s
        self.logs: list[str] = []
        self.completed = 0
        self.requeued = 0
        self.preempted = 0
        self._ids = itertools.count(1)
        self._submitted_at: dict[int, float] = {}  # batch -> when it was submitted
        self._waited = [0, 0.0]  # inputs handed to a container, seconds they waited in all

    # ---------------------------------------------------------- the fleet API the autoscaler uses
    def system_log(self, app_id: str, text: str, function_name: str = "") -> None:
        self.logs.append(text)

    def lose_worker(self, worker: SimWorker, reason: str) -> None:
        self.workers.pop(worker.worker_id, None)
        self.scheduler.remove_worker(worker.worker_id)
        self.autoscaler.worker_lost(worker.worker_id)
        for cid in list(worker.containers):
            container = self.containers.pop(cid)
            fn = self.functions[container.function_id]
            fn.containers.discard(cid)
            self.ledger.container_stopped(cid)
            for item in container.held:
                fn.queue.appendleft(item)  # re-queued without spending a retry: nothing is lost
                self.requeued += 1

    # ----------------------------------------------------------------------- driving
    def add_function(self, name: str, spec, *, duration_s: float, app: str = "app", workspace: str = "main",
                     app_id: str = "") -> SimFunction:
        app_id = app_id or "ap-" + app
        self.apps.setdefault(app_id, SimApp(app, workspace=workspace))
        fn = SimFunction("fu-" + name, app_id, name, spec, duration_s)
        self.functions[fn.function_id] = fn
        return fn

    def submit(self, fn: SimFunction, n: int) -> None:
        start = next(self._ids)
        self._submitted_at[start] = self.clock()
        fn.queue.extend(range(start * 10_000_000, start * 10_000_000 + n))
        if n:
            self.autoscaler.note_arrival(fn, self.clock())

    def register(self, instance, offering, worker_id: str = "") -> SimWorker:
        """A worker on `instance` registers (again, after a control-plane restart, with its old `worker_id`)."""
        wid = worker_id or f"wk-{next(self._ids)}"
        capacity = WorkerCapacity(wid, offering.cpu, int(offering.memory_gb * 1024),
                                  [GpuSlot(i, offering.gpu) for i in range(offering.gpu_count)])
        worker = SimWorker(wid, capacity, worker_pb2.WorkerRegisterRequest(hostname=instance.name, provider="local"))
        self.workers[wid] = worker
        self.scheduler.add_worker(capacity)
        self.autoscaler.worker_registered(self, worker)
        return worker

    def step(self, dt: float) -> None:
        """Advance the clock by `dt` and run one round of everything."""
        self.clock.advance(dt)
        now = self.clock()
        for provider in self.providers.values():
            for instance, offering in getattr(provider, "booted", lambda: [])():
                self.register(instance, offering)
            for instance in getattr(provider, "preempt", lambda: [])():
                self.preempted += 1
                for launch in list(self.autoscaler.launches.values()):
                    if launch.instance is not None and launch.instance.instance_id == instance.instance_id and launch.worker_id:
                        worker = self.workers.get(launch.worker_id)
                        if worker is not None:
                            self.lose_worker(worker, "preempted")
        self._finish(now)
        for fn in self.functions.values():
            self._place(fn, now)
        self.autoscaler.tick(self)
        self._scale_down(now)

    def _finish(self, now: float) -> None:
        for container in self.containers.values():
            done = [i for i, t in container.held.items() if t <= now]
            for item in done:
                del container.held[item]
                self.completed += 1
                self.functions[container.function_id].avg_duration_s = self.functions[container.function_id].duration_s
            if done and not container.held:
                container.idle_since = now
        for container in self.containers.values():
            fn = self.functions[container.function_id]
            if not container.held and fn.queue and not container.shutdown:
                container.held[self._take(fn, now)] = now + fn.duration_s

    def _place(self, fn: SimFunction, now: float) -> None:
        if not fn.queue:
            return
        running = sum(len(self.containers[c].held) for c in fn.containers)
        want = desired_containers(fn.spec, queued=len(fn.queue), running=running, avg_duration_s=None) - len(fn.containers)
        for _ in range(max(0, want)):
            placement, _reason = self.autoscaler.place(self, fn, self.autoscaler.restriction(self, fn))
            if placement is None:
                fn.unplaceable_since = fn.unplaceable_since or now
                return
            fn.unplaceable_since = 0.0
            worker = self.workers[placement.worker_id]
            self.scheduler.claim(worker.capacity, placement)
            cid = f"ct-{next(self._ids)}"
            container = SimContainer(cid, worker.worker_id, fn.function_id, placement)
            self.containers[cid] = container
            worker.containers.add(cid)
            fn.containers.add(cid)
            app = self.apps[fn.app_id]
            self.ledger.container_started(container, worker, app=app.name, function=fn.name, workspace=app.workspace)
            if fn.queue:
                container.held[self._take(fn, now)] = now + fn.duration_s
            if not fn.queue:
                return

    def _scale_down(self, now: float) -> None:
        for cid, container in list(self.containers.items()):
            fn = self.functions[container.function_id]
            if container.held or fn.queue or now - container.idle_since < self.scaledown_window_s:
                continue
            del self.containers[cid]
            fn.containers.discard(cid)
            worker = self.workers.get(container.worker_id)
            if worker is not None:
                worker.containers.discard(cid)
                self.scheduler.release(worker.capacity, container.placement)
            self.ledger.container_stopped(cid)

    def _take(self, fn: SimFunction, now: float) -> int:
        item = fn.queue.popleft()
        self._waited[0] += 1
        self._waited[1] += now - self._submitted_at.get(item // 10_000_000, now)
        return item

    @property
    def wait_s(self) -> float:
        """Mean seconds from submission to a container taking the input (re-queued inputs count again)."""
        return self._waited[1] / self._waited[0] if self._waited[0] else 0.0

    def queued(self) -> int:
        return sum(len(fn.queue) for fn in self.functions.values())

    def running(self) -> int:
        return sum(len(c.held) for c in self.containers.values())
