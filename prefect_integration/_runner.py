"""GpuFabricTaskRunner: Prefect's TaskRunner contract, each task run a gpu-fabric function call."""
from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import uuid
from contextvars import copy_context
from typing import TYPE_CHECKING, Any, Iterable

import core_executor as fabric
from prefect.futures import PrefectFuture, PrefectFutureList, resolve_futures_to_states
from prefect.logging.loggers import get_run_logger
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from ._futures import PrefectGpuFabricFuture
from ._options import RemoteOptions, current_overrides
from ._payload import import_roots, pack
from ._remote import run_prefect_task
from .exceptions import PrefectIntegrationError, TaskNotPicklableError

if TYPE_CHECKING:
    from prefect.client.schemas.objects import RunInput
    from prefect.states import State
    from prefect.tasks import Task

__all__ = ["GpuFabricTaskRunner"]

try:  # time-ordered ids, as Prefect's own runners use
    from prefect._internal.uuid7 import uuid7 as _new_task_run_id
except ImportError:  # pragma: no cover - older Prefect
    _new_task_run_id = uuid.uuid4

_SETTINGS_PREFIX = "PREFECT_"


class GpuFabricTaskRunner(TaskRunner[PrefectGpuFabricFuture[Any]]):
    """Runs each submitted task in a gpu-fabric container, through Prefect's own task engine.

        @flow(task_runner=GpuFabricTaskRunner(gpu="A100", timeout=3600))
        def pipeline(): ...

    Resource options (gpu, image, cpu, memory, timeout, secrets, volumes, env,
    min/max/buffer_containers, scaledown_window, region, cloud, nonpreemptible) are those of
    `@app.function`; `remote_options(...)` overrides them for the tasks submitted inside it.
    Tasks with equal options share one fabric function, so their containers stay warm between
    task runs.

    url/token: the fabric (default GPUFABRIC_URL / GPUFABRIC_TOKEN, else an embedded fabric on
    this machine). app_name: the fabric app the calls belong to. show_logs: stream the
    containers' output to this process's terminal. max_in_flight: task runs waiting on upstream
    futures or on the fabric at once (one thread each). cancel_poll_s: how often task runs
    cancelled in Prefect are looked up to cancel their calls.

    Inside a fabric container (a task that submits tasks), the runner runs those nested tasks
    in a thread pool in the same container.
    """

    def __init__(
        self,
        gpu: Any = None,
        *,
        image: Any = None,
        cpu: Any = None,
        memory: Any = None,
        timeout: Any = None,
        secrets: Any = None,
        volumes: Any = None,
        env: dict[str, str] | None = None,
        min_containers: int | None = None,
        max_containers: int | None = None,
        buffer_containers: int | None = None,
        scaledown_window: float | None = None,
        region: Any = None,
        cloud: Any = None,
        nonpreemptible: bool | None = None,
        url: str | None = None,
        token: str | None = None,
        app_name: str = "prefect",
        show_logs: bool = True,
        max_in_flight: int = 256,
        cancel_poll_s: float = 2.0,
    ):
        super().__init__()
        self._remote = RemoteOptions(
            gpu=gpu, image=image, cpu=cpu, memory=memory, timeout=timeout, secrets=secrets, volumes=volumes,
            env=env, min_containers=min_containers, max_containers=max_containers,
            buffer_containers=buffer_containers, scaledown_window=scaledown_window, region=region, cloud=cloud,
            nonpreemptible=nonpreemptible,
        )  # fmt: skip
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self._url = url
        self._token = token
        self._app_name = app_name
        self._show_logs = show_logs
        self._max_in_flight = max_in_flight
        self._cancel_poll_s = cancel_poll_s
        self._reset_runtime()

    def _reset_runtime(self) -> None:
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._local: ThreadPoolTaskRunner | None = None
        self._stack: contextlib.ExitStack | None = None
        self._client: fabric.Client | None = None
        self._functions: dict[tuple, fabric.Function] = {}
        self._functions_lock = threading.Lock()
        self._pending: set[PrefectGpuFabricFuture[Any]] = set()
        self._running: dict[uuid.UUID, PrefectGpuFabricFuture[Any]] = {}
        self._state_lock = threading.Lock()
        self._picklable_tasks: dict[int, Any] = {}
        self._stop_watching = threading.Event()
        self._watcher: threading.Thread | None = None
        self._start_error: PrefectIntegrationError | None = None

    # ---- configuration, equality, pickling ----

    @property
    def options(self) -> RemoteOptions:
        """The resources every task run asks for (before `remote_options()` overrides)."""
        return self._remote

    def _config(self) -> dict[str, Any]:
        return {
            **self._remote.given(),
            "url": self._url, "token": self._token, "app_name": self._app_name, "show_logs": self._show_logs,
            "max_in_flight": self._max_in_flight, "cancel_poll_s": self._cancel_poll_s,
        }  # fmt: skip

    def duplicate(self) -> "GpuFabricTaskRunner":
        """A new, unstarted runner with the same configuration."""
        return type(self)(**self._config())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return False
        mine, theirs = self._config(), other._config()  # type: ignore[attr-defined]
        return self._remote == other._remote and all(  # type: ignore[attr-defined]
            mine[k] == theirs[k] for k in ("url", "token", "app_name", "show_logs", "max_in_flight", "cancel_poll_s")
        )

    __hash__ = None  # type: ignore[assignment] - equal by configuration, like Prefect's runners

    def __getstate__(self) -> dict[str, Any]:
        # The flow (and so this runner) travels in the serialized Prefect context: configuration only.
        return self._config()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def __repr__(self) -> str:
        where = self._url or "GPUFABRIC_URL or embedded"
        return f"GpuFabricTaskRunner({self._remote!r}, fabric={where!r})"

    # ---- lifecycle ----

    def __enter__(self) -> "GpuFabricTaskRunner":
        super().__enter__()
        if not fabric.is_local():
            # Hydrated in a fabric container for a task that submits tasks: run them right here.
            self._local = ThreadPoolTaskRunner().__enter__()
            return self
        self._stack = contextlib.ExitStack()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._max_in_flight, thread_name_prefix="gpufabric-prefect"
        )
        self._start_error = None
        try:
            if self._url:
                self._client = fabric.Client(self._url, self._token or "")
            # Connect now, once: with the fabric unreachable every task run fails at once, clearly.
            self._function_for(self._remote)
        except Exception as exc:  # noqa: BLE001 - reported through the task runs' states
            where = self._url or "GPUFABRIC_URL, or an embedded fabric on this machine"
            self._start_error = PrefectIntegrationError(f"GpuFabricTaskRunner could not start on gpu-fabric ({where}): {exc}")
            self._start_error.__cause__ = exc
            # Prefect enters task runners before its flow-run error handling: raising here would
            # leave the flow run Running. Its task runs fail instead, so the flow run fails.
            self.logger.error(str(self._start_error))
        self._stop_watching.clear()
        context = copy_context()
        self._watcher = threading.Thread(
            target=context.run, args=(self._watch_cancellations,), name="gpufabric-prefect-cancel", daemon=True
        )
        self._watcher.start()
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        if self._local is not None:
            local, self._local = self._local, None
            local.__exit__(exc_type, exc_value, traceback)
        else:
            # Like ThreadPoolTaskRunner: a flow that ends normally waits for its running tasks; one
            # that ends with an error (crash, cancellation) cancels what is still running.
            self._shutdown(cancel=exc_type is not None)
        super().__exit__(exc_type, exc_value, traceback)

    def cancel_all(self) -> None:
        """Cancel every task run of this runner that has not finished (their fabric calls too)."""
        with self._state_lock:
            pending = list(self._pending)
        for future in pending:
            future.cancel()

    def _shutdown(self, *, cancel: bool) -> None:
        self._stop_watching.set()
        if cancel:
            self.cancel_all()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._watcher is not None:
            self._watcher.join(timeout=10)
            self._watcher = None
        if self._stack is not None:
            stack, self._stack = self._stack, None
            try:
                stack.close()
            except Exception:  # noqa: BLE001 - the fabric stops apps whose heartbeats end
                self.logger.debug("Stopping the fabric apps failed", exc_info=True)
        self._functions = {}
        self._client = None

    def _function_for(self, options: RemoteOptions) -> fabric.Function:
        """The fabric function for these options, registered and started on first use."""
        key = options.key()
        fn = self._functions.get(key)
        if fn is not None:
            return fn
        with self._functions_lock:
            fn = self._functions.get(key)
            if fn is None:
                if self._stack is None:
                    raise RuntimeError("The task runner is not started")
                app = fabric.App(self._app_name)
                fn = app.function(name="run_prefect_task", **options.function_kwargs())(run_prefect_task)
                self._stack.enter_context(app.run(client=self._client, show_logs=self._show_logs))
                self._functions[key] = fn
        return fn

    # ---- submission ----

    def submit(
        self,
        task: "Task[Any, Any]",
        parameters: dict[str, Any],
        wait_for: Iterable[PrefectFuture[Any]] | None = None,
        dependencies: dict[str, set["RunInput"]] | None = None,
    ) -> PrefectGpuFabricFuture[Any]:
        """Run `task` with `parameters` as a fabric call, after the futures it depends on.

        Upstream futures (in `wait_for` or among the parameters) are awaited here and travel as
        their final states, so a failed upstream leaves this task run NotReady, as with
        Prefect's own runners. Returns at once with a PrefectGpuFabricFuture.
        """
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        if self._local is not None:
            return self._local.submit(task, parameters, wait_for, dependencies)  # type: ignore[return-value]
        if self._executor is None:
            raise RuntimeError("The task runner must be started before submitting work.")
        from prefect.context import FlowRunContext, serialize_context

        self._check_picklable(task)
        options = self._remote.merged(current_overrides())
        task_run_id = _new_task_run_id()
        flow_run_ctx = FlowRunContext.get()
        flow_run_id = flow_run_ctx.flow_run.id if flow_run_ctx and flow_run_ctx.flow_run else None
        if flow_run_ctx:
            get_run_logger(flow_run_ctx).debug(f"Submitting task {task.name} to gpu-fabric ({options!r})...")
        else:
            self.logger.debug(f"Submitting task {task.name} to gpu-fabric ({options!r})...")
        call = dict(
            task=task, task_run_id=task_run_id, parameters=parameters, wait_for=list(wait_for) if wait_for else None,
            dependencies=dependencies, context=_serialized_context(serialize_context), env=_settings_environment(),
        )  # fmt: skip
        wrapped: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future: PrefectGpuFabricFuture[Any] = PrefectGpuFabricFuture(task_run_id=task_run_id, wrapped_future=wrapped)
        if self._start_error is not None:
            state = _crashed_state(str(self._start_error), self._start_error)
            self._report_state(task, task_run_id, state, flow_run_id)
            wrapped.set_result(state)
            return future
        with self._state_lock:
            self._pending.add(future)
        context = copy_context()  # settings (API URL...) and tags of the submitting flow
        self._executor.submit(context.run, self._execute, future, wrapped, call, options, flow_run_id)
        return future

    def map(
        self,
        task: "Task[Any, Any]",
        parameters: dict[str, Any],
        wait_for: Iterable[PrefectFuture[Any]] | None = None,
    ) -> PrefectFutureList[PrefectGpuFabricFuture[Any]]:
        """Submit one task run per element of the iterable parameters (Prefect's mapping rules)."""
        if self._local is not None:
            return self._local.map(task, parameters, wait_for)  # type: ignore[return-value]
        return super().map(task, parameters, wait_for)

    def _check_picklable(self, task: "Task[Any, Any]") -> None:
        # Fail the submit itself for a task that can never travel (once per task object).
        if id(task) in self._picklable_tasks:
            return
        pack(task, {"task": task})
        self._picklable_tasks[id(task)] = task

    # ---- one task run, on a thread of the executor ----

    def _execute(
        self,
        future: PrefectGpuFabricFuture[Any],
        wrapped: concurrent.futures.Future[Any],
        call: dict[str, Any],
        options: RemoteOptions,
        flow_run_id: uuid.UUID | None,
    ) -> None:
        task = call["task"]
        try:
            state = self._run_remote(future, call, options, flow_run_id)
        except BaseException as exc:  # noqa: BLE001 - the future always ends with a state
            state = _crashed_state(f"Sending task {task.name!r} to gpu-fabric failed: {type(exc).__name__}: {exc}", exc)
            self._report_state(task, call["task_run_id"], state, flow_run_id)
        finally:
            with self._state_lock:
                self._pending.discard(future)
                self._running.pop(call["task_run_id"], None)
        wrapped.set_result(state)

    def _run_remote(
        self, future: PrefectGpuFabricFuture[Any], call: dict[str, Any], options: RemoteOptions,
        flow_run_id: uuid.UUID | None,
    ) -> "State":  # fmt: skip
        from prefect.states import Failed

        task, task_run_id = call["task"], call["task_run_id"]
        # Upstream futures become their final states: the engine in the container turns a
        # failed one into NotReady (or passes it through allow_failure) exactly as it would here.
        if call["wait_for"]:
            # allow_failure(...) and quote(...) wrappers are kept around the states.
            call["wait_for"] = resolve_futures_to_states(call["wait_for"])
        call["parameters"] = resolve_futures_to_states(call["parameters"])
        if future.cancel_requested:
            return self._cancelled(task, task_run_id, flow_run_id, "before it was sent to gpu-fabric")
        env = call.pop("env")
        try:
            payload = pack(task, call)
        except TaskNotPicklableError as exc:
            state = Failed(message=str(exc), data=exc)
            self._report_state(task, task_run_id, state, flow_run_id)
            return state
        fn = self._function_for(options)
        function_call = fn.spawn(import_roots(task, _flow_of(call)), env, payload)
        if not future._attach(function_call):
            return self._cancelled(task, task_run_id, flow_run_id, "before it started")
        with self._state_lock:
            self._running[task_run_id] = future
        try:
            state = function_call.get()
        except fabric.exception.InputCancellation:
            return self._cancelled(task, task_run_id, flow_run_id, f"(fabric call {function_call.object_id})")
        except Exception as exc:  # noqa: BLE001 - the container died, timed out, or the fabric failed
            if future.cancel_requested:
                return self._cancelled(task, task_run_id, flow_run_id, f"(fabric call {function_call.object_id})")
            message = (
                f"Task run {task.name!r} crashed on gpu-fabric (call {function_call.object_id}): "
                f"{type(exc).__name__}: {exc}"
            )
            state = _crashed_state(message, exc)
            self._report_state(task, task_run_id, state, flow_run_id)
            return state
        if future.cancel_requested and not state.is_final():
            return self._cancelled(task, task_run_id, flow_run_id, "")
        return state

    def _cancelled(self, task: "Task[Any, Any]", task_run_id: uuid.UUID, flow_run_id: uuid.UUID | None, when: str) -> "State":
        from prefect.states import Cancelled

        state = Cancelled(message=f"Task run {task.name!r} was cancelled {when}".rstrip())
        self._report_state(task, task_run_id, state, flow_run_id)
        return state

    def _report_state(self, task: "Task[Any, Any]", task_run_id: uuid.UUID, state: "State", flow_run_id: uuid.UUID | None) -> None:
        """Record a state decided here (crash, cancellation) in the Prefect API."""
        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True) as client:
                try:
                    client.set_task_run_state(task_run_id, state, force=True)
                except Exception:  # noqa: BLE001 - the container never created the run: create it
                    if flow_run_id is None:
                        raise
                    client.create_task_run(
                        task=task, flow_run_id=flow_run_id, dynamic_key=str(task_run_id), id=task_run_id, state=state
                    )
        except Exception:  # noqa: BLE001 - the future still carries the state
            self.logger.debug("Could not record the state of task run %s", task_run_id, exc_info=True)

    # ---- cancellation from Prefect ----

    def _watch_cancellations(self) -> None:
        """Cancel the fabric calls of task runs that Prefect marks Cancelling or Cancelled."""
        while not self._stop_watching.wait(self._cancel_poll_s):
            with self._state_lock:
                running = dict(self._running)
            if not running:
                continue
            try:
                for run_id in _cancelled_runs(list(running)):
                    future = running.get(run_id)
                    if future is not None:
                        self.logger.info("Task run %s was cancelled in Prefect; cancelling its fabric call", run_id)
                        future.cancel()
            except Exception:  # noqa: BLE001 - try again on the next turn
                self.logger.debug("Looking up cancelled task runs failed", exc_info=True)


def _cancelled_runs(task_run_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterId
    from prefect.client.schemas.objects import StateType

    # States are checked here rather than in the filter: its state-filter model differs across
    # Prefect 3 minor versions.
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(id=TaskRunFilterId(any_=task_run_ids)),
                                     limit=len(task_run_ids))
    cancelled = (StateType.CANCELLING, StateType.CANCELLED)
    return [run.id for run in runs if run.state is not None and run.state.type in cancelled]


def _flow_of(call: dict[str, Any]) -> Any:
    return ((call.get("context") or {}).get("flow_run_context") or {}).get("flow")


def _serialized_context(serialize_context: Any) -> dict[str, Any]:
    """Prefect's serialized context, with the settings as the model itself rather than a dict.

    Rebuilding Settings from a dict re-reads the environment for every nested settings model
    (about 0.7 s per task run in a container here); an unpickled model is used as it is.
    """
    from prefect.context import SettingsContext

    context = serialize_context()
    settings_context = SettingsContext.get()
    if settings_context is not None and context.get("settings_context"):
        context["settings_context"] = {"profile": settings_context.profile, "settings": settings_context.settings}
    return context


def _settings_environment() -> dict[str, str]:
    """The caller's Prefect settings as PREFECT_* variables (API URL and key included)."""
    from prefect.settings.context import get_current_settings

    env = get_current_settings().to_environment_variables(exclude_unset=True)
    return {k: v for k, v in env.items() if k.startswith(_SETTINGS_PREFIX)}


def _crashed_state(message: str, exc: BaseException) -> "State":
    from prefect.states import Crashed

    return Crashed(message=message, data=exc if isinstance(exc, Exception) else RuntimeError(message))
