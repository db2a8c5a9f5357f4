"""The control plane's engine: queues, dispatch, retries, containers and workers, on one event loop."""
from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import time
from typing import Callable

from gpu_fabric.proto import client_pb2, common_pb2, worker_pb2

from ._autoscaler import check_function
from ._billing import Ledger
from ._cron import ScheduleRunRecord, Schedules, has_schedule, validate_schedule
from ._fleet import Fleet
from ._outcomes import FabricError, one_line as _one_line, result as _result
from ._records import BOUND_SEPARATOR, AppRec, CallRec, ContainerRec, FunctionRec, InputRec, WorkerRec, new_id
from ._tokens import DEFAULT_WORKSPACE, current_workspace, visible
from ._store import StateStore, StoredApp, StoredCall, StoredFunction, StoredInput, StoredOutput
from ._usage import CallUsage, container_rate
from .scheduler import Scheduler

log = logging.getLogger("gpu_fabric.control_plane")

S = common_pb2


class Engine(Fleet, Schedules):
    """All live state; every method runs on the control plane's event loop thread."""

    def __init__(
        self,
        store: StateStore,
        *,
        token: str,
        default_python: str,
        heartbeat_interval_s: float | None = None,
        heartbeat_timeout_s: float = 10.0,
        app_heartbeat_timeout_s: float = 30.0,
        default_timeout_s: float = 300.0,
        default_scaledown_window_s: float = 60.0,
        unplaceable_timeout_s: float = 60.0,
        max_queued_per_function: int = 200_000,
        output_ttl_s: float = 7 * 24 * 3600.0,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.token = token
        self.default_python = default_python
        # Four heartbeats fit in the timeout, so one slow beat on a busy machine loses nothing.
        self.heartbeat_interval_s = heartbeat_interval_s or min(1.0, heartbeat_timeout_s / 4)
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.app_heartbeat_timeout_s = app_heartbeat_timeout_s
        self.default_timeout_s = default_timeout_s
        self.default_scaledown_window_s = default_scaledown_window_s
        self.unplaceable_timeout_s = unplaceable_timeout_s
        self.max_queued_per_function = max_queued_per_function
        self.output_ttl_s = output_ttl_s
        self.clock = clock
        self.apps: dict[str, AppRec] = {}
        self.functions: dict[str, FunctionRec] = {}
        self.calls: dict[str, CallRec] = {}
        self.inputs: dict[str, InputRec] = {}
        self.containers: dict[str, ContainerRec] = {}
        self.workers: dict[str, WorkerRec] = {}
        self._pending_outputs: list[StoredOutput] = []
        self._pending_calls: dict[str, CallRec] = {}
        self._pending_retried: list[InputRec] = []
        self._pending_inputs: list[StoredInput] = []
        self._pending_logs: list[tuple[str, int, bytes]] = []
        self._durable_waiters: list[asyncio.Future] = []
        self._flush_scheduled = False
        # Schedules: function_id -> (anchor, last tick started); runs in flight by call id.
        self.schedule_positions: dict[str, tuple[float, float]] = {}
        self._schedule_runs: dict[str, ScheduleRunRecord] = {}
        self._pending_schedules: dict[str, tuple[float, float]] = {}
        self._pending_schedule_runs: list[ScheduleRunRecord] = []
        self._read_calls: collections.deque = collections.deque()
        # Capacity: the placement index, the billing ledger, and (with providers) the autoscaler.
        self.scheduler = Scheduler(clock=clock)
        self.ledger = Ledger(clock)
        self.autoscaler = None
        self.tokens = None  # _tokens.TokenRegistry: mints each workspace's container token
        # Called as observer(input, result, call) when an input finishes (gpu_fabric.web: history, metrics).
        self.finish_observers: list[Callable] = []

    # ------------------------------------------------------------------ load
    def load(self) -> None:
        """Rebuild live state from the store after a (re)start: unfinished inputs are queued again."""
        now = self.clock()
        for a in self.store.apps():
            self.apps[a.app_id] = AppRec(a.app_id, a.name, a.kind, a.state, a.created_at, a.stopped_at, last_heartbeat=now, version=a.version)
            self.apps[a.app_id].log_seq = self.store.max_log_seq(a.app_id)
            self.apps[a.app_id].workspace = self.store.get_meta(f"workspace:{a.app_id}") or DEFAULT_WORKSPACE
        for f in self.store.functions():
            spec = S.FunctionSpec.FromString(f.spec)
            definition = S.FunctionDefinition.FromString(f.definition)
            self.functions[f.function_id] = FunctionRec(f.function_id, f.app_id, f.name, spec, definition)
            if f.app_id in self.apps and not self.functions[f.function_id].bound:
                self.apps[f.app_id].function_ids[f.name] = f.function_id
        for c in self.store.calls():
            self.calls[c.call_id] = CallRec(c.call_id, c.function_id, c.kind, c.created_at, c.num_inputs, c.num_done, c.closed, c.cancelled)
            self.calls[c.call_id].next_seq = max(c.next_seq, c.num_done + 1)
            self.calls[c.call_id].usage = CallUsage.decode(c.usage)
        for o in self.store.outputs():
            call = self.calls.get(o.call_id)
            if call is None:
                continue
            call.outputs[o.seq] = client_pb2.FunctionOutput(
                input_id=o.input_id, idx=o.idx, result=S.FunctionResult.FromString(o.result),
                attempts=o.attempts, log_seq=o.log_seq, seq=o.seq,
            )
        self.schedule_positions = {fid: (anchor, last) for fid, anchor, last in self.store.schedules()}
        for run in self.store.schedule_runs(list(self.schedule_positions), 10_000):
            if not run.finished_at:
                self._schedule_runs[run.call_id] = run
        for i in self.store.pending_inputs():
            rec = InputRec(i.input_id, i.call_id, i.function_id, i.idx, S.FunctionInput.FromString(i.payload), i.payload, i.attempts, i.lost)
            if i.function_id not in self.functions or i.call_id not in self.calls:
                continue
            self.inputs[i.input_id] = rec
            self.calls[i.call_id].pending.add(i.input_id)
            self.functions[i.function_id].queue.append(i.input_id)

    # ------------------------------------------------------------------ apps
    def create_app(self, name: str, kind: int, detach: bool = False) -> AppRec:
        """A new app (a deployed app's next version for a redeploy). `detach`: an ephemeral app that
        outlives its client, until its inputs are done (APP_STATE_DETACHED)."""
        if not name or len(name) > 64:
            raise FabricError("INVALID_ARGUMENT", "app name must be 1 to 64 characters")
        if kind not in (client_pb2.APP_KIND_EPHEMERAL, client_pb2.APP_KIND_DEPLOYED):
            raise FabricError("INVALID_ARGUMENT", "app kind must be EPHEMERAL or DEPLOYED")
        if detach and kind != client_pb2.APP_KIND_EPHEMERAL:
            raise FabricError("INVALID_ARGUMENT", "only an ephemeral app can be detached; a deployed app runs until stopped anyway")
        now = self.clock()
        if kind == client_pb2.APP_KIND_DEPLOYED:
            existing = self.deployed_app(name)
            if existing is not None:  # a redeploy: same app, next version
                existing.version += 1
                self._save_app(existing)
                return existing
        state = (client_pb2.APP_STATE_DEPLOYED if kind == client_pb2.APP_KIND_DEPLOYED
                 else client_pb2.APP_STATE_DETACHED if detach else client_pb2.APP_STATE_RUNNING)
        app = AppRec(new_id("ap"), name, kind, state, now, last_heartbeat=now, workspace=current_workspace() or DEFAULT_WORKSPACE)
        if app.workspace != DEFAULT_WORKSPACE:
            self.store.set_meta(f"workspace:{app.app_id}", app.workspace)
        self.store.put_app(StoredApp(app.app_id, name, kind, state, now, 0.0))
        self.apps[app.app_id] = app
        return app

    def _save_app(self, app: AppRec) -> None:
        self.store.put_app(StoredApp(app.app_id, app.name, app.kind, app.state, app.created_at, app.stopped_at, app.version))

    def owned(self, app_id: str) -> bool:
        """Whether app `app_id` belongs to the workspace of the RPC being served (_tokens.visible)."""
        app = self.apps.get(app_id)
        return app is None or visible(app.workspace)

    def deployed_app(self, name: str) -> AppRec | None:
        for app in self.apps.values():
            if app.name == name and app.state == client_pb2.APP_STATE_DEPLOYED and visible(app.workspace):
                return app
        return None

    def app(self, app_id: str) -> AppRec:
        app = self.apps.get(app_id)
        if app is None or not visible(app.workspace):
            raise FabricError("NOT_FOUND", f"app {app_id!r} not found")
        return app

    def find_app(self, app_id: str, name: str) -> AppRec:
        if app_id:
            return self.app(app_id)
        candidates = [a for a in self.apps.values() if a.name == name and visible(a.workspace)]
        if not candidates:
            raise FabricError("NOT_FOUND", f"no app named {name!r}; `gpufabric app list` shows the apps")
        live = [a for a in candidates if a.state != client_pb2.APP_STATE_STOPPED]
        return max(live or candidates, key=lambda a: a.created_at)

    def heartbeat_app(self, app_id: str) -> None:
        self.app(app_id).last_heartbeat = self.clock()

    def stop_app(self, app: AppRec, reason: str = "the app was stopped") -> None:
        if app.state == client_pb2.APP_STATE_STOPPED:
            return
        app.state = client_pb2.APP_STATE_STOPPED
        app.stopped_at = self.clock()
        self._save_app(app)
        functions = {f.function_id: f for f in self.functions.values() if f.app_id == app.app_id}
        # Every input not yet done ends now, as in Modal: queued ones, ones waiting to be retried,
        # and running ones, whose containers are stopped (SIGTERM, so @exit runs, then SIGKILL
        # after the grace period) rather than left to run, and bill, up to their timeout. What
        # such a container still reports for its input is a late output, dropped.
        busy: set[str] = set()
        for rec in [r for r in self.inputs.values() if r.function_id in functions]:
            if rec.container_id:
                busy.add(rec.container_id)
            self._finish(rec, _result(S.RESULT_STATUS_TERMINATED, reason))
        for fn in functions.values():
            fn.queue.clear()
            for cid in list(fn.containers):
                container = self.containers[cid]
                if cid in busy:
                    self.system_log(app.app_id, f"{fn.name}: {reason}: stopping container {cid}, which was running an input", fn.name)
                    self._stop_container(container)
                else:  # idle: it runs @exit and exits at once
                    self._shutdown_container(container)
        self.flush()
        app.log_notifier.notify()

    # ------------------------------------------------------------- functions
    def create_function(self, app_id: str, spec, definition) -> FunctionRec:
        app = self.app(app_id)
        if app.state == client_pb2.APP_STATE_STOPPED:
            raise FabricError("FAILED_PRECONDITION", f"app {app.name!r} is stopped; start a new run")
        _validate_spec(spec)
        check_function(self, spec, spec.name)  # GPU types and placement constraints
        if has_schedule(spec):
            validate_schedule(spec.schedule)
        if definition.kind == S.FunctionDefinition.KIND_UNSPECIFIED:
            raise FabricError("INVALID_ARGUMENT", "function definition has no kind")
        existing = app.function_ids.get(spec.name)
        schedule_changed = False
        if existing is not None:
            fn = self.functions[existing]
            schedule_changed = fn.spec.schedule != spec.schedule
            changed = fn.spec != spec or fn.definition != definition
            fn.spec, fn.definition = spec, definition
            if changed:  # a redeploy: containers running the old code finish and go
                for cid in list(fn.containers):
                    self._shutdown_container(self.containers[cid])
        else:
            fn = FunctionRec(new_id("fu"), app_id, spec.name, spec, definition)
            self.functions[fn.function_id] = fn
            app.function_ids[spec.name] = fn.function_id
        self.store.put_function(StoredFunction(fn.function_id, app_id, spec.name, spec.SerializeToString(), definition.SerializeToString()))
        if app.kind == client_pb2.APP_KIND_DEPLOYED and has_schedule(spec):
            anchor, last = self.schedule_positions.get(fn.function_id, (0.0, 0.0))
            if not anchor or schedule_changed:
                self._set_schedule_position(fn.function_id, self.clock(), last)
        self.autoscale(fn)
        return fn

    def bind_params(self, function_id: str, pickled_params: bytes, options, has_options: bool) -> FunctionRec:
        """A class bound to constructor parameters (and Cls.with_options overrides): a function of
        its own with its own containers; the same parameters and options give the same one."""
        parent = self.function(function_id)
        if not parent.spec.cls_name:
            raise FabricError("INVALID_ARGUMENT", f"{parent.name} is not a class; only @app.cls classes take parameters")
        if parent.bound:
            raise FabricError("INVALID_ARGUMENT", "bind parameters on the class itself, not on an already bound one")
        if len(pickled_params) > MAX_PARAMS_BYTES:
            raise FabricError("INVALID_ARGUMENT", f"class parameters are {len(pickled_params):,} bytes, over {MAX_PARAMS_BYTES:,}; pass large data through a Volume")
        spec = S.FunctionSpec()
        spec.CopyFrom(parent.spec)
        if has_options:
            _apply_options(spec, options)
        _validate_spec(spec)
        check_function(self, spec, parent.name)
        definition = S.FunctionDefinition()
        definition.CopyFrom(parent.definition)
        definition.pickled_cls_params = pickled_params
        digest = hashlib.sha256(
            definition.SerializeToString(deterministic=True) + spec.SerializeToString(deterministic=True)
        ).hexdigest()[:16]
        name = f"{parent.name}{BOUND_SEPARATOR}{digest}"
        for fn in self.functions.values():
            if fn.app_id == parent.app_id and fn.name == name:
                return fn
        fn = FunctionRec(new_id("fu"), parent.app_id, name, spec, definition)
        self.functions[fn.function_id] = fn
        self.store.put_function(StoredFunction(fn.function_id, fn.app_id, name, spec.SerializeToString(), definition.SerializeToString()))
        self.autoscale(fn)
        return fn

    def function(self, function_id: str) -> FunctionRec:
        fn = self.functions.get(function_id)
        if fn is None or not self.owned(fn.app_id):
            raise FabricError("NOT_FOUND", f"function {function_id!r} not found")
        return fn

    def lookup_function(self, app_name: str, function_name: str) -> FunctionRec:
        app = self.deployed_app(app_name)
        if app is None:
            raise FabricError("NOT_FOUND", f"app {app_name!r} is not deployed; deploy it with `gpufabric deploy FILE`")
        fid = app.function_ids.get(function_name)
        if fid is None:
            names = ", ".join(sorted(app.function_ids)) or "none"
            raise FabricError("NOT_FOUND", f"app {app_name!r} has no function {function_name!r} (it has: {names})")
        return self.functions[fid]

    def container_python(self, fn: FunctionRec) -> str:
        return fn.spec.python_version or self.default_python

    # ----------------------------------------------------------------- calls
    def create_call(self, function_id: str, kind: int) -> CallRec:
        fn = self.function(function_id)
        app = self.apps[fn.app_id]
        if app.state == client_pb2.APP_STATE_STOPPED:
            raise FabricError("FAILED_PRECONDITION", f"app {app.name!r} is stopped")
        return CallRec(new_id("fc"), function_id, kind, self.clock())

    def call(self, call_id: str) -> CallRec:
        call = self.calls.get(call_id)
        if call is None or (call.function_id in self.functions and not self.owned(self.functions[call.function_id].app_id)):
            raise FabricError("NOT_FOUND", f"function call {call_id!r} not found (or its outputs expired)")
        return call

    def put_inputs(self, call: CallRec, inputs, closed: bool, *, new_call: bool) -> list[str]:
        """Store inputs durably, then queue them; returns their ids."""
        fn = self.function(call.function_id)
        if not new_call:
            if call.closed:
                raise FabricError("FAILED_PRECONDITION", f"call {call.call_id} is closed; start a new call")
            if call.cancelled:
                raise FabricError("FAILED_PRECONDITION", f"call {call.call_id} was cancelled")
        if inputs and len(fn.queue) + len(inputs) > self.max_queued_per_function:
            raise FabricError(
                "RESOURCE_EXHAUSTED",
                f"{len(fn.queue)} inputs are waiting for {fn.name}; retry this batch after a back-off",
            )
        recs = []
        for i, inp in enumerate(inputs):
            if not inp.args and not inp.args_blob_id:
                raise FabricError("INVALID_ARGUMENT", f"input {i} has neither args nor args_blob_id")
            payload = inp.SerializeToString()
            recs.append(InputRec(new_id("in"), call.call_id, fn.function_id, call.num_inputs + i, inp, payload))
        call.num_inputs += len(recs)
        call.closed = call.closed or closed
        self._pending_calls[call.call_id] = call
        self._pending_inputs.extend(StoredInput(r.input_id, r.call_id, r.function_id, r.idx, r.payload, 0, 0) for r in recs)
        self.schedule_flush()
        if new_call:
            self.calls[call.call_id] = call
        for r in recs:
            self.inputs[r.input_id] = r
            call.pending.add(r.input_id)
            fn.queue.append(r.input_id)
        self._dispatch(fn)
        fn.input_notifier.notify()
        if recs:
            self.inputs_arrived(fn)  # capacity: the adaptive idle window (_fleet.py)
        self.autoscale(fn)
        call.notifier.notify()
        return [r.input_id for r in recs]

    def ack_outputs(self, call: CallRec, cursor: int) -> None:
        if cursor <= 0 or not call.outputs:
            return
        acked = [seq for seq in call.outputs if seq <= cursor]
        if acked:
            for seq in acked:
                del call.outputs[seq]
            self.store.delete_outputs(call.call_id, cursor)

    def outputs_after(self, call: CallRec, cursor: int, max_items: int) -> list:
        out = []
        for seq, output in call.outputs.items():
            if seq > cursor:
                out.append(output)
                if len(out) >= max_items:
                    break
        return out

    def cancel_call(self, call: CallRec, terminate_containers: bool) -> None:
        if call.cancelled:
            return
        call.cancelled = True
        call.closed = True
        for input_id in list(call.pending):
            rec = self.inputs.get(input_id)
            if rec is None:
                continue
            cid = rec.container_id
            self._finish(rec, _result(S.RESULT_STATUS_TERMINATED, "the call was cancelled"))
            container = self.containers.get(cid) if cid else None
            if container is not None:
                container.cancelled.append(input_id)
                if terminate_containers:
                    self._stop_container(container)
        self._pending_calls[call.call_id] = call
        self.flush()

    # ------------------------------------------------------------ dispatching
    def _take(self, fn: FunctionRec, container: ContainerRec, n: int) -> list[InputRec]:
        taken = []
        now = self.clock()
        rate = container.rate
        if rate is None:  # its ledger charge is open while it takes inputs (usage prices from it)
            rate = container.rate = container_rate(self.ledger, container)
        while fn.queue and len(taken) < n:
            rec = self.inputs.get(fn.queue.popleft())
            if rec is None or rec.container_id or rec.waiting_retry:
                continue  # finished or claimed while it sat in the queue
            rec.container_id = container.container_id
            rec.claimed_at = now
            rec.rate = rate
            container.held[rec.input_id] = now
            taken.append(rec)
        return taken

    def _dispatch(self, fn: FunctionRec) -> None:
        """Hand queued inputs to containers of `fn` that are long-polling for them."""
        if not fn.queue:
            return
        for cid in fn.containers:
            container = self.containers[cid]
            waiter = container.waiter
            if waiter is None or waiter.done() or container.shutdown:
                continue
            taken = self._take(fn, container, container.waiter_max)
            if taken:
                container.waiter = None
                waiter.set_result(taken)
            if not fn.queue:
                return

    def to_container_input(self, rec: InputRec, fn: FunctionRec):
        return worker_pb2.ContainerInput(
            input_id=rec.input_id, call_id=rec.call_id, input=rec.proto, attempt=rec.attempts + 1,
            timeout_s=fn.spec.timeout_s or self.default_timeout_s, idx=rec.idx,
        )

    def release_unsent(self, container: ContainerRec, recs: list[InputRec]) -> None:
        """The long-poll that was to carry `recs` died: put them back at the front of the queue."""
        fn = self.functions[container.function_id]
        for rec in reversed(recs):
            if self.inputs.get(rec.input_id) is rec and rec.container_id == container.container_id:
                rec.container_id = ""
                container.held.pop(rec.input_id, None)
                fn.queue.appendleft(rec.input_id)
        self._dispatch(fn)

    # --------------------------------------------------------------- outputs
    def container_output(self, container: ContainerRec | None, input_id: str, result, duration_s: float) -> None:
        rec = self.inputs.get(input_id)
        if container is not None:
            container.held.pop(input_id, None)
            fn = self.functions[container.function_id]
            if result.status in (S.RESULT_STATUS_SUCCESS, S.RESULT_STATUS_FAILURE) and duration_s >= 0:
                fn.avg_duration_s = duration_s if fn.avg_duration_s is None else 0.8 * fn.avg_duration_s + 0.2 * duration_s
        if rec is None:
            return  # already finished (a late duplicate); the first output won
        if result.status == S.RESULT_STATUS_INIT_FAILURE:
            self.init_failed(self.functions[rec.function_id], result, also=[rec])
            return
        if result.status == S.RESULT_STATUS_SUCCESS and self.functions[rec.function_id].spec.is_generator and not result.gen_done:
            self._emit(rec, result, final=False)  # a generator's item: the input goes on
            if container is not None:
                container.held[input_id] = rec.claimed_at
            return
        self._complete_attempt(rec, result)

    def _complete_attempt(self, rec: InputRec, result) -> None:
        """An attempt ended with `result`: retry per the function's policy, or finish the input."""
        fn = self.functions[rec.function_id]
        call = self.calls[rec.call_id]
        retryable = result.status in (S.RESULT_STATUS_FAILURE, S.RESULT_STATUS_TIMEOUT, S.RESULT_STATUS_INTERNAL_FAILURE)
        policy = fn.spec.retries
        if retryable and not call.cancelled and rec.attempts < policy.max_retries:
            rec.attempts += 1
            delay = policy.initial_delay_s * (policy.backoff_coefficient or 1.0) ** (rec.attempts - 1)
            if policy.max_delay_s:
                delay = min(delay, policy.max_delay_s)
            self._release_claim(rec)
            self._pending_retried.append(rec)
            self._pending_calls[call.call_id] = call  # its usage changed
            self.system_log(fn.app_id, f"{fn.name}: input {rec.idx} failed ({_one_line(result.exception)}); retry {rec.attempts} of {policy.max_retries} in {delay:.1f}s", fn.name)
            self._requeue_later(rec, delay)
            return
        rec.attempts += 1
        self._finish(rec, result)

    def _requeue_later(self, rec: InputRec, delay: float) -> None:
        def requeue() -> None:
            rec.waiting_retry = False
            if self.inputs.get(rec.input_id) is rec:
                fn = self.functions[rec.function_id]
                fn.queue.append(rec.input_id)
                self._dispatch(fn)
                self.autoscale(fn)

        if delay <= 0:
            requeue()
        else:
            rec.waiting_retry = True
            asyncio.get_running_loop().call_later(delay, requeue)

    def _release_claim(self, rec: InputRec) -> None:
        """The input's attempt on its container (if it has one) ended: charge it to the call's usage."""
        if rec.container_id:
            container = self.containers.get(rec.container_id)
            if container is not None:
                container.held.pop(rec.input_id, None)
            rec.container_id = ""
            call = self.calls.get(rec.call_id)
            if call is not None:
                if call.usage is None:
                    call.usage = CallUsage()
                call.usage.charge(rec.rate, max(0.0, self.clock() - rec.claimed_at))  # rec.rate: set by _take

    def attempt_lost(self, rec: InputRec) -> None:
        """The input's container or worker went away under it (it is re-queued for free): its time
        so far goes to the call's lost attempts, not to what the call is charged."""
        call = self.calls.get(rec.call_id)
        if call is None or not rec.container_id:
            return
        if call.usage is None:
            call.usage = CallUsage()
        call.usage.lose(max(0.0, self.clock() - rec.claimed_at))
        self._pending_calls[call.call_id] = call

    def call_usage(self, call: CallRec):
        """FunctionCallUsage of `call` (client_pb2): finished attempts, per capacity, and lost ones."""
        usage = client_pb2.FunctionCallUsage(
            call_id=call.call_id, num_inputs=call.num_inputs, num_finished=call.num_done,
            num_running=sum(1 for i in call.pending if (r := self.inputs.get(i)) is not None and r.container_id),
        )
        if call.usage is not None:
            call.usage.to_proto(usage)
        return usage

    def _finish(self, rec: InputRec, result) -> None:
        """The input is done: its output is numbered, stored (at the next flush) and handed out."""
        self._release_claim(rec)
        self.inputs.pop(rec.input_id, None)
        call = self.calls[rec.call_id]
        call.pending.discard(rec.input_id)
        call.num_done += 1
        self._emit(rec, result, final=True)
        for observe in self.finish_observers:
            observe(rec, result, call)
        run = self._schedule_runs.pop(call.call_id, None) if call.kind == client_pb2.CALL_KIND_SCHEDULED else None
        if run is not None:
            run.finished_at, run.status, run.error = self.clock(), result.status, _one_line(result.exception)
            self._pending_schedule_runs.append(run)

    def _emit(self, rec: InputRec, result, *, final: bool) -> None:
        call = self.calls[rec.call_id]
        fn = self.functions[rec.function_id]
        app = self.apps[fn.app_id]
        seq = call.next_seq
        call.next_seq += 1
        output = client_pb2.FunctionOutput(
            input_id=rec.input_id, idx=rec.idx, result=result, attempts=max(1, rec.attempts), log_seq=app.log_seq, seq=seq
        )
        call.outputs[seq] = output
        self._pending_outputs.append(
            StoredOutput(call.call_id, seq, rec.input_id, rec.idx, result.SerializeToString(), output.attempts, app.log_seq, self.clock(), final)
        )
        self._pending_calls[call.call_id] = call
        self.schedule_flush()
        call.notifier.notify()

    def schedule_flush(self) -> None:
        """Commit at the end of this turn of the event loop, together with whatever else is due
        (group commit): responses that promise durability await `durable()` first."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    async def durable(self) -> None:
        """Return once everything accepted so far is committed."""
        if not (self._pending_inputs or self._pending_calls or self._pending_outputs or self._flush_scheduled):
            return
        fut = asyncio.get_running_loop().create_future()
        self._durable_waiters.append(fut)
        self.schedule_flush()
        await fut

    def flush(self) -> None:
        """Commit pending calls, inputs, outputs, retry counters and logs in one transaction."""
        self._flush_scheduled = False
        waiters, self._durable_waiters = self._durable_waiters, []
        try:
            if (self._pending_outputs or self._pending_calls or self._pending_retried or self._pending_inputs
                    or self._pending_logs or self._pending_schedules or self._pending_schedule_runs):
                inputs, self._pending_inputs = self._pending_inputs, []
                outputs, self._pending_outputs = self._pending_outputs, []
                calls, self._pending_calls = self._pending_calls, {}
                retried, self._pending_retried = self._pending_retried, []
                logs, self._pending_logs = self._pending_logs, []
                positions, self._pending_schedules = self._pending_schedules, {}
                runs, self._pending_schedule_runs = self._pending_schedule_runs, []
                self.store.write_batch(
                    calls=[_stored_call(c) for c in calls.values()],
                    inputs=inputs,
                    outputs=outputs,
                    retried=[StoredInput(r.input_id, r.call_id, r.function_id, r.idx, b"", r.attempts, r.lost) for r in retried if r.input_id in self.inputs],
                    logs=logs,
                    schedules=[(fid, anchor, last) for fid, (anchor, last) in positions.items()],
                    schedule_runs=runs,
                )
        except Exception as exc:
            log.exception("state store commit failed")
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(FabricError("UNAVAILABLE", f"the state store could not commit: {exc}"))
            raise
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def init_failed(self, fn: FunctionRec, result, also: list[InputRec] = ()) -> None:
        """The function cannot load: fail what is queued for it, without retries."""
        self.system_log(fn.app_id, f"{fn.name}: container could not start: {_one_line(result.exception)}", fn.name)
        for rec in list(also):
            if self.inputs.get(rec.input_id) is rec:
                self._finish(rec, result)
        while fn.queue:
            rec = self.inputs.get(fn.queue.popleft())
            if rec is not None and not rec.container_id:
                self._finish(rec, result)

    # ------------------------------------------------------------------ logs
    def append_logs(self, app_id: str, entries) -> None:
        app = self.apps.get(app_id)
        if app is None or not entries:
            return
        for entry in entries:
            app.log_seq += 1
            entry.seq = app.log_seq
            entry.app_id = app_id
            if not entry.timestamp:
                entry.timestamp = self.clock()
            app.logs.append(entry)
            self._pending_logs.append((app_id, entry.seq, entry.SerializeToString()))
        self.schedule_flush()
        app.log_notifier.notify()

    def system_log(self, app_id: str, text: str, function_name: str = "") -> None:
        log.info("%s: %s", app_id, text)
        self.append_logs(app_id, [S.LogEntry(stream=S.LOG_STREAM_SYSTEM, data=text + "\n", function_name=function_name)])

    def logs_after(self, app: AppRec, cursor: int, limit: int = 1000) -> list:
        if app.logs and app.logs[0].seq <= cursor + 1:
            return [e for e in app.logs if e.seq > cursor][:limit]
        return [S.LogEntry.FromString(b) for _, b in self.store.logs(app.app_id, cursor, limit)]

    def mark_read(self, call: CallRec) -> None:
        """Outputs handed over without a cursor (FunctionInvoke) expire soon after."""
        self._read_calls.append((self.clock(), call.call_id))

    def expire_outputs(self, read_ttl_s: float = 60.0) -> None:
        """Drop outputs read long enough ago, and everything older than the output TTL."""
        now = self.clock()
        while self._read_calls and now - self._read_calls[0][0] > read_ttl_s:
            _, call_id = self._read_calls.popleft()
            call = self.calls.get(call_id)
            if call is not None and not call.pending and call.closed:
                last = max(call.outputs, default=0)
                self.store.delete_outputs(call_id, last)
                del self.calls[call_id]
        cutoff = now - self.output_ttl_s
        for call in list(self.calls.values()):
            if call.created_at < cutoff and not call.pending:
                del self.calls[call.call_id]
        self.store.expire(cutoff)


MAX_PARAMS_BYTES = 1024 * 1024


def _apply_options(spec, options) -> None:
    """Fields set in `options` replace the spec's (lists replace, they do not extend)."""
    for field, value in options.ListFields():
        if field.name == "name":
            continue
        if field.is_repeated:
            target = getattr(spec, field.name)
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                target.clear()
                target.update(value)
            else:
                del target[:]
                target.extend(value)
        elif field.message_type is not None:
            getattr(spec, field.name).CopyFrom(value)
        else:
            setattr(spec, field.name, value)


def _validate_spec(spec) -> None:
    if not spec.name:
        raise FabricError("INVALID_ARGUMENT", "function spec has no name")
    checks = [
        (spec.cpu < 0, "cpu must be >= 0"),
        (spec.memory_mb < 0, "memory must be >= 0"),
        (spec.timeout_s < 0, "timeout must be >= 0"),
        (spec.min_containers < 0 or spec.max_containers < 0 or spec.buffer_containers < 0, "container counts must be >= 0"),
        (spec.max_containers and spec.min_containers > spec.max_containers, "min_containers must be <= max_containers"),
        (spec.retries.max_retries < 0 or spec.retries.max_retries > 10, "retries must be between 0 and 10"),
        (any(g.count < 1 for g in spec.gpus), "GPU count must be >= 1"),
    ]
    for failed, message in checks:
        if failed:
            raise FabricError("INVALID_ARGUMENT", message)


def _stored_call(call: CallRec) -> StoredCall:
    return StoredCall(call.call_id, call.function_id, call.kind, call.num_inputs, call.num_done, call.closed, call.cancelled,
                      call.created_at, call.next_seq, call.usage.encode() if call.usage is not None else b"")
