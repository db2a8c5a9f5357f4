"""gpu_fabric_executor: a step-delegating executor that runs each Dagster step as a fabric call."""
from __future__ import annotations

import os
import threading
from typing import Any, Iterator, Mapping

from dagster import Field, Noneable, Permissive, StringSource, executor
from dagster import _check as check
from dagster._core.definitions.executor_definition import multiple_process_executor_requirements
from dagster._core.events import DagsterEvent
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.executor.step_delegating import (
    CheckStepHealthResult,
    StepDelegatingExecutor,
    StepHandler,
    StepHandlerContext,
)

from ._pool import FunctionPool
from ._remote import run_dagster_step

__all__ = ["gpu_fabric_executor", "GpuFabricStepHandler", "STEP_TAG_PREFIX"]

# Op/asset tags that set a step's resources: {"gpu_fabric/gpu": "A100", "gpu_fabric/memory": "4096"}.
STEP_TAG_PREFIX = "gpu_fabric/"
_TAG_OPTIONS = {"gpu": str, "cpu": float, "memory": int, "timeout": float}


def options_from_tags(tags: Mapping[str, str]) -> dict[str, Any]:
    """The resources a step's tags ask for (`gpu_fabric/gpu`, `/cpu`, `/memory`, `/timeout`)."""
    options: dict[str, Any] = {}
    for name, kind in _TAG_OPTIONS.items():
        value = tags.get(STEP_TAG_PREFIX + name)
        if value is None or value == "":
            continue
        try:
            options[name] = kind(value)
        except ValueError:
            raise check.CheckError(f"tag {STEP_TAG_PREFIX + name}={value!r} is not a valid {kind.__name__}") from None
    return options


class GpuFabricStepHandler(StepHandler):
    """Launches each step as `dagster api execute_step` in a fabric container, and watches the call."""

    def __init__(self, pool: FunctionPool, defaults: Mapping[str, Any], env: Mapping[str, str]):
        super().__init__()
        self._pool = pool
        self._defaults = dict(defaults)
        self._env = dict(env)
        self._calls: dict[tuple[str, str], Any] = {}
        self._outcomes: dict[tuple[str, str], Any] = {}
        self._reported: set[tuple[str, str]] = set()
        self._runs: dict[tuple[str, str], tuple[Any, Any]] = {}  # (instance, run) to report usage to
        self._watchers: dict[tuple[str, str], threading.Thread] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "GpuFabricStepHandler"

    def _step_key(self, ctx: StepHandlerContext) -> str:
        keys = ctx.execute_step_args.step_keys_to_execute
        assert keys is not None and len(keys) == 1, "GpuFabricStepHandler launches one step at a time"
        return keys[0]

    def launch_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        step_key = self._step_key(step_handler_context)
        run_id = step_handler_context.execute_step_args.run_id
        options = {**self._defaults, **options_from_tags(step_handler_context.step_tags[step_key])}
        args = step_handler_context.execute_step_args
        compressed = next(e["value"] for e in args.get_command_env() if e["name"] == "DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS")
        env = dict(self._env)
        if os.environ.get("DAGSTER_HOME"):
            env.setdefault("DAGSTER_HOME", os.environ["DAGSTER_HOME"])
        function = self._pool.get(run_dagster_step, options)
        call = function.spawn(compressed, env)
        key = (run_id, step_key)
        watcher = threading.Thread(target=self._watch, args=(key, call), name=f"gpufabric-step-{step_key}", daemon=True)
        with self._lock:
            self._calls[key] = call
            self._outcomes.pop(key, None)
            self._reported.discard(key)
            self._runs[key] = (step_handler_context.instance, step_handler_context.dagster_run)
            self._watchers[key] = watcher
        watcher.start()
        described = ", ".join(f"{k}={v}" for k, v in sorted(options.items()) if v is not None) or "default resources"
        yield DagsterEvent.step_worker_starting(
            step_handler_context.get_step_context(step_key),
            message=f"Launching step on gpu-fabric ({described}).",
            metadata={"gpu_fabric/call_id": call.object_id, **{f"gpu_fabric/{k}": str(v) for k, v in options.items() if v is not None}},
        )

    def _watch(self, key: tuple[str, str], call: Any) -> None:
        try:
            outcome: Any = call.get()
        except BaseException as exc:  # noqa: BLE001 - recorded for check_step_health
            outcome = exc
        with self._lock:
            self._outcomes[key] = outcome

    def check_step_health(self, step_handler_context: StepHandlerContext) -> CheckStepHealthResult:
        step_key = self._step_key(step_handler_context)
        key = (step_handler_context.execute_step_args.run_id, step_key)
        with self._lock:
            if key not in self._calls:
                return CheckStepHealthResult.unhealthy(f"step {step_key} has no gpu-fabric call (was it launched here?)")
            if key not in self._outcomes:
                return CheckStepHealthResult.healthy()
            outcome = self._outcomes[key]
            call = self._calls[key]
            report = key not in self._reported
            self._reported.add(key)
        if report:
            self._report_usage(step_handler_context.instance, step_handler_context.dagster_run, step_key, call)
        if isinstance(outcome, BaseException):
            return CheckStepHealthResult.unhealthy(
                f"the gpu-fabric call {call.object_id} of step {step_key} failed: {type(outcome).__name__}: {outcome}"
            )
        if outcome.get("exit_code", 0) != 0:
            return CheckStepHealthResult.unhealthy(
                f"step {step_key} exited with code {outcome['exit_code']} on gpu-fabric (call {call.object_id}); "
                "see its compute logs"
            )
        return CheckStepHealthResult.healthy()

    @staticmethod
    def _report_usage(instance: Any, dagster_run: Any, step_key: str, call: Any) -> None:
        """Once a step's call has ended: what the fabric billed for it, as an engine event of the
        step (`gpu_fabric/gpu_seconds`, `/cost_usd`, `/container_seconds`, `/gpu`, `/call_id`)."""
        from dagster._core.events import EngineEventData

        from ._resource import _usage_of, usage_metadata

        usage = _usage_of(call, None)
        if usage is None:
            return
        metadata = {"gpu_fabric/call_id": call.object_id, **usage_metadata(usage)}
        try:
            instance.report_engine_event(
                f"gpu-fabric billed step {step_key}: {usage.gpu_seconds:.1f} GPU-seconds, ${usage.usd:.4f} "
                f"({usage.seconds:.1f} container-seconds)",
                dagster_run, EngineEventData(metadata=metadata), step_key=step_key)
        except Exception as exc:  # noqa: BLE001 - the run's outcome matters more than this event
            import warnings

            warnings.warn(f"gpu-fabric: could not report the usage of step {step_key}: {exc}", stacklevel=2)

    def report_finished(self, wait_s: float = 10.0) -> None:
        """Report the usage of every launched step not reported yet (steps finish faster than the
        health checks notice): at the end of the run, waiting up to `wait_s` for calls to end."""
        import time

        deadline = time.monotonic() + wait_s
        with self._lock:
            pending = [(key, self._watchers.get(key)) for key in self._calls if key not in self._reported]
        for key, watcher in pending:
            if watcher is not None:
                watcher.join(max(0.0, deadline - time.monotonic()))
            with self._lock:
                if key not in self._outcomes or key in self._reported:
                    continue
                self._reported.add(key)
                call, (instance, run) = self._calls[key], self._runs[key]
            self._report_usage(instance, run, key[1], call)

    def terminate_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        step_key = self._step_key(step_handler_context)
        key = (step_handler_context.execute_step_args.run_id, step_key)
        with self._lock:
            call = self._calls.get(key)
        if call is not None:
            call.cancel(terminate_containers=True)
        return iter(())

    def close(self) -> None:
        self._pool.close()


class _GpuFabricExecutor(StepDelegatingExecutor):
    """StepDelegatingExecutor that stops its fabric apps when the run's steps are done."""

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[DagsterEvent]:
        try:
            yield from super().execute(plan_context, execution_plan)
        finally:
            handler = self._step_handler
            if isinstance(handler, GpuFabricStepHandler):
                try:
                    handler.report_finished()
                finally:
                    handler.close()


@executor(
    name="gpu_fabric",
    config_schema={
        "url": Field(Noneable(StringSource), default_value=None, description="grpc://HOST:PORT of the fabric; unset: GPUFABRIC_URL, else an embedded fabric."),
        "token": Field(Noneable(StringSource), default_value=None, description="The fabric's token ({env: GPUFABRIC_TOKEN} works); required with url."),
        "app_name": Field(str, default_value="dagster-steps", description="The fabric app the steps run in."),
        "gpu": Field(Noneable(str), default_value=None, description='Default GPU per step ("A100", "H100:2"); tag gpu_fabric/gpu overrides.'),
        "cpu": Field(Noneable(float), default_value=None, description="Default CPU cores per step; tag gpu_fabric/cpu overrides."),
        "memory": Field(Noneable(int), default_value=None, description="Default memory per step (MiB); tag gpu_fabric/memory overrides."),
        "timeout": Field(Noneable(float), default_value=None, description="Default step timeout (s); tag gpu_fabric/timeout overrides."),
        "env_vars": Field(Permissive(), default_value={}, description="Environment variables for the steps' processes."),
        "max_concurrent": Field(Noneable(int), default_value=None, description="Steps running at once (default: no limit)."),
        "show_logs": Field(bool, default_value=True, description="Print the steps' container output here too."),
        "check_step_health_interval_seconds": Field(int, default_value=5, description="How often a launched step's call is checked."),
        "retries": get_retries_config(),
    },
    requirements=multiple_process_executor_requirements(),
)
def gpu_fabric_executor(init_context: Any) -> StepDelegatingExecutor:
    """Runs every step of a job as a gpu-fabric function call (`dagster api execute_step` in a container).

    Requirements, as for Dagster's other step-delegating executors: a reconstructable job (loaded
    from a file or module), a persistent Dagster instance (DAGSTER_HOME) that the containers can
    reach (the same machine, or PostgreSQL storage for remote workers), and an IO manager whose
    storage both sides share (the filesystem IO manager on a shared disk, or an object store).
    Per-step resources come from op/asset tags: {"gpu_fabric/gpu": "A100"}. When a step's call
    ends, an engine event of the step carries what the fabric billed for it (`gpu_fabric/gpu_seconds`,
    `gpu_fabric/cost_usd`, `gpu_fabric/container_seconds`, `gpu_fabric/gpu`).
    """
    config = init_context.executor_config
    if config.get("url") and not config.get("token"):
        raise check.CheckError("gpu_fabric_executor: config field 'token' is required when 'url' is set")
    pool = FunctionPool(config["app_name"], url=config.get("url"), token=config.get("token"), show_logs=config["show_logs"])
    defaults = {k: config.get(k) for k in ("gpu", "cpu", "memory", "timeout") if config.get(k) is not None}
    handler = GpuFabricStepHandler(pool, defaults, {str(k): str(v) for k, v in (config.get("env_vars") or {}).items()})
    return _GpuFabricExecutor(
        handler,
        retries=RetryMode.from_config(config["retries"]),
        max_concurrent=config.get("max_concurrent"),
        check_step_health_interval_seconds=config["check_step_health_interval_seconds"],
        sleep_seconds=0.2,
    )
