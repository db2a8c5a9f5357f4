"""Workers and containers: registration, loss, placement, autoscaling and the periodic tick."""
from __future__ import annotations

import copy
import logging

from gpu_fabric.proto import client_pb2, common_pb2, worker_pb2

from . import _preemption, scheduler as sched
from .scheduler._placement import place as place_on, release as release_capacity
from ._outcomes import FabricError, one_line as _one_line, result as _result
from ._records import ContainerRec, FunctionRec, WorkerRec, new_id

log = logging.getLogger("gpu_fabric.control_plane")

S = common_pb2
MAX_LOST = 5  # a lost input is retried for free this many times, then it fails
START_FAILURES_TO_GIVE_UP = 3
TIMEOUT_GRACE_S = 10.0
DEFAULT_STARTUP_TIMEOUT_S = 300.0


class Fleet:
    """The part of the Engine that manages workers and containers (a mixin: it uses the
    Engine's queues and output methods)."""

    # ------------------------------------------------------------- workers
    def register_worker(self, req) -> WorkerRec:
        resources = req.resources
        if resources.cpu <= 0 or resources.memory_mb <= 0:
            raise FabricError("INVALID_ARGUMENT", "a worker must report its CPUs and memory")
        worker_id = req.worker_id or new_id("wk")
        old = self.workers.get(worker_id)
        if old is not None:
            old.last_heartbeat = self.clock()
            old.info = req
            unknown = [c for c in req.running_container_ids if c not in self.containers]
        else:
            capacity = sched.WorkerCapacity(
                worker_id, resources.cpu, resources.memory_mb,
                [sched.GpuSlot(g.index, g.type) for g in resources.gpus],
            )
            old = WorkerRec(worker_id, capacity, req, self.clock())
            self.workers[worker_id] = old
            self.scheduler.add_worker(capacity)  # capacity: placement index, launch matching
            if self.autoscaler is not None:
                self.autoscaler.worker_registered(self, old)
            unknown = list(req.running_container_ids)
        for cid in unknown:  # containers from before a restart: they drain and exit by themselves
            old.assignments.put_nowait(worker_pb2.WorkerAssignment(stop_container_id=cid, stop_grace_s=30))
        log.info("worker %s registered (%s CPU, %s MiB, %d GPUs)", worker_id, resources.cpu, resources.memory_mb, len(resources.gpus))
        for fn in self.functions.values():
            if fn.queue:
                self.autoscale(fn)
        return old

    def worker(self, worker_id: str) -> WorkerRec:
        worker = self.workers.get(worker_id)
        if worker is None:
            raise FabricError("NOT_FOUND", f"worker {worker_id!r} is not registered; register again")
        return worker

    def lose_worker(self, worker: WorkerRec, reason: str) -> None:
        """The worker is gone: its inputs go back to the queue without spending retries."""
        log.warning("worker %s lost: %s", worker.worker_id, reason)
        self.workers.pop(worker.worker_id, None)
        self.scheduler.remove_worker(worker.worker_id)  # capacity
        if self.autoscaler is not None:
            self.autoscaler.worker_lost(worker.worker_id)
        for cid in list(worker.containers):
            container = self.containers.get(cid)
            if container is None:
                continue
            fn = self.functions[container.function_id]
            self.system_log(fn.app_id, f"{fn.name}: worker {worker.worker_id} lost ({reason}); re-queuing its inputs", fn.name)
            self._drop_container(container, running_input_id="", failure=None)
        self.flush()

    def preemption_notice(self, worker: WorkerRec, deadline_s: float, reason: str) -> None:
        worker.capacity.accepting = False
        log.warning("worker %s will be preempted in %.0fs: %s", worker.worker_id, deadline_s, reason)
        _preemption.on_notice(self, worker, deadline_s)  # preemption: drain it (control_plane/_preemption.py)

    # ----------------------------------------------------------- containers
    def inputs_arrived(self, fn: FunctionRec) -> None:
        """New inputs for `fn` (not retries): the autoscaler's idle window learns its arrival gaps."""
        if self.autoscaler is not None:
            self.autoscaler.note_arrival(fn)

    def autoscale(self, fn: FunctionRec) -> None:
        """Start containers for `fn` when its demand is above what it has."""
        app = self.apps.get(fn.app_id)
        if app is None or app.state == client_pb2.APP_STATE_STOPPED:
            return
        live = [self.containers[c] for c in fn.containers if not self.containers[c].shutdown]
        queued = sum(1 for i in fn.queue if (r := self.inputs.get(i)) is not None and not r.container_id) if len(fn.queue) < 64 else len(fn.queue)
        running = sum(len(c.held) for c in live)
        desired = sched.desired_containers(fn.spec, queued=queued, running=running, avg_duration_s=fn.avg_duration_s)
        idle_ready = sum(1 for c in live if c.ready and not c.held)
        starting = sum(1 for c in live if not c.ready)
        want = desired - len(live)
        if queued and idle_ready == 0 and starting == 0 and want <= 0 and (not fn.spec.max_containers or len(live) < fn.spec.max_containers):
            want = 1 if not live else 0
        want = min(want, sched.MAX_PARALLEL_STARTS - starting)
        for _ in range(max(0, want)):
            if not self._start_container(fn):
                break

    def _start_container(self, fn: FunctionRec) -> bool:
        allowed = self.autoscaler.restriction(self, fn) if self.autoscaler is not None else None  # budgets
        placement, reason = self.scheduler.place(fn.spec) if self.autoscaler is None else self.autoscaler.place(self, fn, allowed)
        if placement is None and allowed is None and self._evict_idle_for(fn):
            return False  # room is being made; the next autoscale places it
        if placement is None:
            if not fn.unplaceable_since:
                fn.unplaceable_since = self.clock()
            ever = self.placeable_later(fn.spec)
            fn.unplaceable_reason = reason if ever else (
                f"no worker in this fabric can run {fn.name} ({reason.removeprefix('no worker has room for ')}); "
                "start a worker that has it (gpufabric worker --url ... [--simulate-gpus TYPE:N])"
            )
            if fn.unplaceable_reason != fn.last_reason_logged and not ever:
                fn.last_reason_logged = fn.unplaceable_reason
                self.system_log(fn.app_id, fn.unplaceable_reason, fn.name)
            return False
        fn.unplaceable_since = 0.0
        worker = self.workers[placement.worker_id]
        self.scheduler.claim(worker.capacity, placement)
        container = ContainerRec(new_id("ct"), worker.worker_id, fn.function_id, fn.app_id, placement, self.clock())
        self.containers[container.container_id] = container
        app = self.apps[fn.app_id]
        self.ledger.container_started(container, worker, app=app.name, function=fn.name, workspace=app.workspace)  # billing
        worker.containers.add(container.container_id)
        fn.containers.add(container.container_id)
        worker.assignments.put_nowait(
            worker_pb2.WorkerAssignment(
                start=worker_pb2.ContainerAssignment(
                    container_id=container.container_id, function_id=fn.function_id, app_id=fn.app_id,
                    gpu_indices=placement.gpu_indices, spec=fn.spec,
                    # A container's token can only do container things, in its app's workspace.
                    container_token=self.tokens.container_token(self.apps[fn.app_id].workspace) if self.tokens else self.token,
                    definition_digest=fn.definition_digest,
                )
            )
        )
        gpu = f" with {len(placement.gpu_indices)}x {placement.gpu_type}" if placement.gpu_indices else ""
        log.info("starting container %s for %s on %s%s", container.container_id, fn.name, worker.worker_id, gpu)
        self._note_fallback(fn, placement)
        return True

    def _note_fallback(self, fn: FunctionRec, placement) -> None:
        """A GPU list placed on a later choice: say why in the app's log, once per function and reason."""
        if not placement.gpu_indices or len(fn.spec.gpus) < 2:
            return
        first = fn.spec.gpus[0]
        if first.type.strip().upper() in ("", "ANY") or placement.gpu_type in sched.acceptable_types(first.type):
            return
        detail = f"{fn.name}: {len(placement.gpu_indices)}x {placement.gpu_type} on {placement.worker_id}"
        reason = f"first choice {max(1, first.count)}x {first.type}: no registered worker has one free"
        if fn.last_reason_logged == detail + reason:
            return
        fn.last_reason_logged = detail + reason
        self.system_log(fn.app_id, self.scheduler.record(fn.app_id, fn.name, "fallback", detail, [reason]).text(), fn.name)

    def _evict_idle_for(self, fn: FunctionRec) -> bool:
        """Shut down idle warm containers of other functions on a worker where that makes room for
        `fn`: warm capacity is a cache, queued work comes first. Containers a function keeps
        because of its min_containers stay. True when some were asked to go."""
        for worker in self.workers.values():
            idle = []
            for cid in worker.containers:
                other = self.containers.get(cid)
                if (other is None or other.function_id == fn.function_id or not other.ready or other.held
                        or other.shutdown or self._kept_warm(other)):
                    continue
                idle.append(other)
            if not idle:
                continue
            trial = copy.deepcopy(worker.capacity)
            chosen = []
            for other in sorted(idle, key=lambda c: c.idle_since or 0.0):
                release_capacity(trial, other.placement)
                chosen.append(other)
                if place_on(fn.spec, [trial])[0] is not None:
                    for victim in chosen:
                        self._shutdown_container(victim)
                    names = ", ".join(sorted({self.functions[v.function_id].name for v in chosen}))
                    self.system_log(fn.app_id, f"{fn.name}: making room on {worker.worker_id} by stopping idle containers of {names}", fn.name)
                    return True
        return False

    def _kept_warm(self, container: ContainerRec) -> bool:
        fn = self.functions[container.function_id]
        live = sum(1 for c in fn.containers if not self.containers[c].shutdown)
        return live <= fn.spec.min_containers

    def container(self, container_id: str) -> ContainerRec | None:
        container = self.containers.get(container_id)
        return container if container is None or self.owned(container.app_id) else None

    def _shutdown_container(self, container: ContainerRec) -> None:
        container.shutdown = True
        waiter = container.waiter
        if waiter is not None and not waiter.done():
            container.waiter = None
            waiter.set_result([])

    def _stop_container(self, container: ContainerRec) -> None:
        if container.stop_requested:
            return
        container.stop_requested = True
        container.shutdown = True
        worker = self.workers.get(container.worker_id)
        if worker is not None:
            worker.assignments.put_nowait(worker_pb2.WorkerAssignment(stop_container_id=container.container_id, stop_grace_s=5))

    def container_exited(self, worker_id: str, req) -> None:
        container = self.containers.get(req.container_id)
        if container is None:
            return
        fn = self.functions[container.function_id]
        crashed = req.exit_code != 0 and not req.requested
        if crashed or req.running_input_id in container.held:
            tail = _one_line(req.stderr_tail[-600:]) if req.stderr_tail else ""
            message = f"container {container.container_id} for {fn.name} exited with code {req.exit_code}" + (f": {tail}" if tail else "")
            self.system_log(fn.app_id, message, fn.name)
        else:
            message = ""
        if not container.ready and crashed:
            fn.start_failures += 1
        failure = _result(S.RESULT_STATUS_INTERNAL_FAILURE, message) if message else None
        if failure is not None and not _preemption.charge_exit(self, container, req):  # preemption: free re-queue
            failure = None
        self._drop_container(container, running_input_id=req.running_input_id, failure=failure)
        if fn.start_failures >= START_FAILURES_TO_GIVE_UP and fn.queue:
            fn.start_failures = 0
            self.init_failed(fn, _result(S.RESULT_STATUS_INIT_FAILURE, message or "containers keep exiting before they are ready"))
        self.flush()
        self.autoscale(fn)

    def _drop_container(self, container: ContainerRec, *, running_input_id: str, failure) -> None:
        """Forget a container; the input it was running fails an attempt, the rest are re-queued."""
        self.containers.pop(container.container_id, None)
        fn = self.functions[container.function_id]
        fn.containers.discard(container.container_id)
        worker = self.workers.get(container.worker_id)
        if worker is not None:
            worker.containers.discard(container.container_id)
            self.scheduler.release(worker.capacity, container.placement)
        self.ledger.container_stopped(container.container_id)  # billing
        if container.waiter is not None and not container.waiter.done():
            container.waiter.set_result([])
        for input_id in list(container.held):
            rec = self.inputs.get(input_id)
            if rec is None or rec.container_id != container.container_id:
                continue
            if input_id == running_input_id and failure is not None:
                self._complete_attempt(rec, failure)
                continue
            self.attempt_lost(rec)  # usage: the fabric's loss, not the caller's
            rec.container_id = ""
            rec.lost += 1
            if rec.lost > MAX_LOST:
                self._finish(rec, _result(S.RESULT_STATUS_INTERNAL_FAILURE, f"the input's container was lost {rec.lost} times"))
                continue
            self._pending_retried.append(rec)
            fn.queue.appendleft(input_id)
        container.held.clear()
        self._dispatch(fn)

    # ------------------------------------------------------------------ tick
    def _stop_finished_detached_apps(self, now: float) -> None:
        """A detached app whose client has gone stops once none of its inputs is left (queued,
        running or waiting for a retry)."""
        gone = {app.app_id: app for app in self.apps.values() if app.state == client_pb2.APP_STATE_DETACHED
                and now - app.last_heartbeat > self.app_heartbeat_timeout_s}
        for rec in self.inputs.values():
            if not gone:
                return
            gone.pop(self.functions[rec.function_id].app_id, None)  # not done yet
        for app in gone.values():
            self.stop_app(app, "the detached app's client has gone and its inputs are done")

    def tick(self) -> None:
        """Periodic work: lapsed heartbeats, timeouts, scale-down, unplaceable inputs, expiry."""
        now = self.clock()
        for worker in list(self.workers.values()):
            if now - worker.last_heartbeat > self.heartbeat_timeout_s:
                self.lose_worker(worker, f"no heartbeat for {now - worker.last_heartbeat:.0f}s")
        for app in list(self.apps.values()):
            if (app.kind == client_pb2.APP_KIND_EPHEMERAL and app.state == client_pb2.APP_STATE_RUNNING
                    and now - app.last_heartbeat > self.app_heartbeat_timeout_s):
                self.stop_app(app, "the app's client went away")
        self._stop_finished_detached_apps(now)
        for container in list(self.containers.values()):
            fn = self.functions[container.function_id]
            startup = fn.spec.startup_timeout_s or DEFAULT_STARTUP_TIMEOUT_S
            # The runtime reports its own startup timeout; this is the backstop, a little later.
            if not container.ready and not container.stop_requested and now - container.started_at > startup + TIMEOUT_GRACE_S:
                message = f"{fn.name}: container {container.container_id} did not start within {startup:g}s (startup_timeout)"
                self.system_log(fn.app_id, message + "; stopping it", fn.name)
                self._stop_container(container)
                self.init_failed(fn, _result(S.RESULT_STATUS_INIT_FAILURE, message + "; raise startup_timeout or make enter() faster"))
            timeout = (fn.spec.timeout_s or self.default_timeout_s) + TIMEOUT_GRACE_S
            for input_id, claimed_at in list(container.held.items()):
                if now - claimed_at > timeout:
                    rec = self.inputs.get(input_id)
                    if rec is not None:
                        self._complete_attempt(rec, _result(S.RESULT_STATUS_TIMEOUT, f"input ran over its {timeout - TIMEOUT_GRACE_S:g}s timeout"))
                    self._stop_container(container)
        self.run_schedules(now)
        for fn in self.functions.values():
            self._scale_down(fn, now)
            if fn.queue and fn.unplaceable_since and now - fn.unplaceable_since > self.unplaceable_timeout_s:
                if not self.placeable_later(fn.spec):
                    self.init_failed(fn, _result(S.RESULT_STATUS_INTERNAL_FAILURE, fn.unplaceable_reason))
                    fn.unplaceable_since = 0.0
            if fn.queue:
                self.autoscale(fn)
        if self.autoscaler is not None:  # capacity: launches, launch timeouts, scale to zero
            self.autoscaler.tick(self)
        self.flush()

    def placeable_later(self, spec) -> bool:
        """True if a registered worker (once empty) or a provider's capacity could run `spec`."""
        return self.scheduler.could_ever_fit(spec) or (self.autoscaler is not None and self.autoscaler.can_provide(spec))

    def _scale_down(self, fn: FunctionRec, now: float) -> None:
        window = fn.spec.scaledown_window_s or self.default_scaledown_window_s
        live = [self.containers[c] for c in fn.containers if not self.containers[c].shutdown]
        keep = fn.spec.min_containers + (fn.spec.buffer_containers if fn.queue or any(c.held for c in live) else 0)
        idle = sorted((c for c in live if c.ready and not c.held and c.idle_since and now - c.idle_since >= window), key=lambda c: c.idle_since)
        for container in idle:
            if len(live) <= keep:
                break
            self._shutdown_container(container)
            live.remove(container)

