"""GpuFabricResource: call gpu-fabric functions from Dagster assets and ops."""
from __future__ import annotations

import threading
import time
from typing import Any, Iterable, Optional

import core_executor as fabric
from dagster import ConfigurableResource, DagsterInvalidConfigError, InitResourceContext
from pydantic import Field, PrivateAttr

from ._pool import FunctionPool
from ._remote import run_callable

__all__ = ["GpuFabricResource", "GpuFabricCaller"]

_OPTION_NAMES = ("gpu", "cpu", "memory", "timeout")


class GpuFabricResource(ConfigurableResource):
    """Runs functions on gpu-fabric from assets and ops.

        defs = Definitions(assets=[...], resources={"gpu_fabric": GpuFabricResource(
            url="grpc://fabric:7373", token=EnvVar("GPUFABRIC_TOKEN"), gpu="A100")})

        @asset
        def embeddings(gpu_fabric: GpuFabricResource) -> list:
            return gpu_fabric.map(embed, batches)

    `call`/`map`/`spawn` take a deployed function ("app/function", or a `Function.from_name`
    reference) or any picklable callable, which then runs in a container of this resource's
    app with the resource's defaults (`options(...)` overrides them per call). Containers'
    output is printed to the step's stdout/stderr, so it lands in the run's compute logs.

    Inside an asset or op, `call` and `map` add `gpu_fabric/*` metadata to the step's output
    (the asset's materialization), summed over the step's calls:

    - `gpu_fabric/calls`: inputs run.
    - `gpu_fabric/call_seconds`: wall time the step waited for its calls, as this process saw it
      (queueing, container start and transfers included); not what the fabric billed.
    - `gpu_fabric/container_seconds`, `gpu_fabric/gpu_seconds`, `gpu_fabric/cost_usd`: what the
      fabric measured and billed (`FunctionCall.get_usage()`): each attempt's time on its
      container, retries included; times the container's GPUs; priced at the container's share
      of its worker's price, as the fabric's billing ledger does (a local worker's GPUs cost $0).
    - `gpu_fabric/gpu`: the GPU type(s) the calls ran on ("A100-80GB", "H100:2"), when any.

    `spawn` returns at once: its call's usage is `call.get_usage()` after `.get()`, not metadata.
    """

    url: Optional[str] = Field(
        default=None,
        description="The fabric's URL, grpc://HOST:PORT (as printed by `gpufabric serve`). Unset: "
        "GPUFABRIC_URL, else an embedded fabric started on this machine.",
    )
    token: Optional[str] = Field(
        default=None,
        description="The fabric's bearer token; required with `url`. Use EnvVar('GPUFABRIC_TOKEN').",
    )
    environment: str = Field(
        default="dagster",
        description="The fabric app (workspace) that calls of callables run in; its name in `gpufabric app list`.",
    )
    gpu: Optional[str] = Field(default=None, description='Default GPU per call: "A100", "H100:2", or unset for none.')
    cpu: Optional[float] = Field(default=None, description="Default CPU cores reserved per call.")
    memory: Optional[int] = Field(default=None, description="Default memory per call, in MiB.")
    timeout: Optional[float] = Field(default=None, description="Default timeout of one call, in seconds (default one day).")
    show_logs: bool = Field(default=True, description="Print the containers' output to this process's stdout.")

    _pool: Optional[FunctionPool] = PrivateAttr(default=None)
    _pool_lock: Any = PrivateAttr(default=None)
    _totals: dict = PrivateAttr(default_factory=dict)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        if self.url and not self.token:
            raise DagsterInvalidConfigError(
                "GpuFabricResource: config field 'token' is required when 'url' is set "
                "(use token=EnvVar('GPUFABRIC_TOKEN'), the token printed by `gpufabric serve`).",
                [],
                {"url": self.url},
            )
        self._pool_lock = threading.Lock()
        self._totals = {}

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    # ---- calling ----

    def options(self, **overrides: Any) -> "GpuFabricCaller":
        """A caller with other resources for the calls made through it: `.options(gpu="H100").call(f, x)`."""
        unknown = set(overrides) - set(_OPTION_NAMES)
        if unknown:
            raise TypeError(f"unknown option(s) {sorted(unknown)}; known: {list(_OPTION_NAMES)}")
        return GpuFabricCaller(self, {**self._defaults(), **{k: v for k, v in overrides.items() if v is not None}})

    def call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run `function(*args, **kwargs)` on the fabric and return its result (or raise its error)."""
        return self.options().call(function, *args, **kwargs)

    def map(self, function: Any, *iterables: Iterable[Any], **kwargs: Any) -> list[Any]:
        """Run `function` on every element of `iterables` (zipped) in parallel; results in order."""
        return self.options().map(function, *iterables, **kwargs)

    def spawn(self, function: Any, *args: Any, **kwargs: Any) -> fabric.FunctionCall:
        """Start `function(*args, **kwargs)` and return its FunctionCall (`.get()` waits)."""
        return self.options().spawn(function, *args, **kwargs)

    @property
    def call_metadata(self) -> dict[str, Any]:
        """What this resource's calls used so far in the current step (the `gpu_fabric/*` metadata)."""
        context = _current_step_context()
        step = (context.run_id, str(context.op_handle)) if context is not None else None
        return dict(self._totals.get(step, {}))

    # ---- internals ----

    def _defaults(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _OPTION_NAMES if getattr(self, name) is not None}

    def _function_pool(self) -> FunctionPool:
        if self._pool_lock is None:  # used without Dagster's setup (direct instantiation)
            self._pool_lock = threading.Lock()
        with self._pool_lock:
            if self._pool is None:
                self._pool = FunctionPool(self.environment, url=self.url, token=self.token, show_logs=self.show_logs)
            return self._pool

    def _record(self, calls: int, seconds: float, call: Optional[fabric.FunctionCall]) -> None:
        """Add a finished call to the step's metadata: `calls` inputs, `seconds` of wall time, and
        the fabric's usage report of `call` (None when the call never started)."""
        context = _current_step_context()
        usage = _usage_of(call, context)
        step = (context.run_id, str(context.op_handle)) if context is not None else None
        totals = self._totals.setdefault(step, {})
        totals["gpu_fabric/calls"] = totals.get("gpu_fabric/calls", 0) + calls
        totals["gpu_fabric/call_seconds"] = round(totals.get("gpu_fabric/call_seconds", 0.0) + seconds, 3)
        if usage is not None:
            for key, value in usage_metadata(usage).items():
                if key == "gpu_fabric/gpu":
                    known = set(filter(None, totals.get(key, "").split(", ")))
                    totals[key] = ", ".join(sorted(known | set(value.split(", "))))
                else:
                    totals[key] = round(totals.get(key, 0.0) + value, 9 if key == "gpu_fabric/cost_usd" else 3)
        if context is not None:
            _add_step_metadata(context, dict(totals))


class GpuFabricCaller:
    """Calls with one set of resources (from `GpuFabricResource.options(...)`)."""

    def __init__(self, resource: GpuFabricResource, options: dict[str, Any]):
        self._resource = resource
        self._options = options

    def _target(self, function: Any, args: tuple, kwargs: dict) -> tuple[fabric.Function, tuple, dict]:
        if isinstance(function, str):
            app_name, _, name = function.partition("/")
            if not name:
                raise ValueError(f"a deployed function is named 'app/function', got {function!r}")
            return fabric.Function.from_name(app_name, name), args, kwargs
        if isinstance(function, fabric.Function):
            try:
                function.get_raw_f()
            except fabric.exception.InvalidError:
                return function, args, kwargs  # a deployed reference (Function.from_name)
            function = function.get_raw_f()  # a decorated function: run its code on our app
        if not callable(function):
            raise TypeError(f"call a callable, a deployed 'app/function' name or a fabric Function; got {function!r}")
        import cloudpickle

        payload = _pickle_by_value(cloudpickle, (function, args, kwargs), function)
        entry = self._resource._function_pool().get(run_callable, self._options)
        return entry, (payload,), {}

    def call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run `function(*args, **kwargs)` on the fabric; its result, or its error raised here."""
        target, a, kw = self._target(function, args, kwargs)
        started = time.monotonic()
        call = None
        try:
            # spawn + get rather than remote(): the handle's call id gives the usage report.
            call = target.spawn(*a, **kw)
            return _get(call)
        finally:
            self._resource._record(1, time.monotonic() - started, call)

    def map(self, function: Any, *iterables: Iterable[Any], **kwargs: Any) -> list[Any]:
        """Run `function` on every element of `iterables` (zipped); results in input order."""
        columns = [list(it) for it in iterables]
        if not columns:
            raise TypeError("map needs at least one iterable")
        started = time.monotonic()
        call = None
        try:
            if isinstance(function, (str, fabric.Function)) and not _has_local_code(function):
                target, _, _ = self._target(function, (), {})
                call = target.spawn_map(*columns, kwargs=kwargs)
            else:
                payloads = [self._target(function, tuple(row), kwargs)[1][0] for row in zip(*columns)]
                entry = self._resource._function_pool().get(run_callable, self._options)
                call = entry.spawn_map(payloads)
            return list(_get(call, many=True))
        finally:
            count = len(columns[0]) if columns else 0
            self._resource._record(count, time.monotonic() - started, call)

    def spawn(self, function: Any, *args: Any, **kwargs: Any) -> fabric.FunctionCall:
        target, a, kw = self._target(function, args, kwargs)
        return target.spawn(*a, **kw)


def _has_local_code(function: Any) -> bool:
    if isinstance(function, str):
        return False
    try:
        function.get_raw_f()
        return True
    except fabric.exception.InvalidError:
        return False


def _pickle_by_value(cloudpickle: Any, value: Any, function: Any) -> bytes:
    """Pickle `value` with `function`'s module by value: the container may not have the caller's files."""
    import sys

    module = sys.modules.get(getattr(function, "__module__", None) or "")
    registered = False
    if module is not None and module.__name__ not in ("__main__", "builtins") and _is_user_module(module):
        try:
            cloudpickle.register_pickle_by_value(module)
            registered = True
        except ValueError:
            pass
    try:
        return cloudpickle.dumps(value)
    finally:
        if registered:
            cloudpickle.unregister_pickle_by_value(module)


def _is_user_module(module: Any) -> bool:
    import os
    import sysconfig

    path = getattr(module, "__file__", None)
    if not path:
        return False
    real = os.path.realpath(path)
    roots = {sysconfig.get_paths().get(k, "") for k in ("purelib", "platlib", "stdlib", "platstdlib")}
    return not any(r and real.startswith(os.path.realpath(r) + os.sep) for r in roots)


def _get(call: fabric.FunctionCall, *, many: bool = False) -> Any:
    """`call.get()`. A step interrupted while it waits (Dagster raises a BaseException there)
    cancels the call, and so does a failed input of a map (`many`), as `Function.map` does, so
    the other inputs stop running."""
    try:
        return call.get()
    except BaseException as exc:
        if many or not isinstance(exc, Exception):
            try:
                call.cancel(terminate_containers=not isinstance(exc, Exception))
            except Exception:  # noqa: BLE001 - best effort while already failing
                pass
        raise


def usage_metadata(usage: fabric.CallUsage) -> dict[str, Any]:
    """The `gpu_fabric/*` metadata of one call's usage report (what the fabric billed)."""
    metadata: dict[str, Any] = {
        "gpu_fabric/container_seconds": round(usage.seconds, 3),
        "gpu_fabric/gpu_seconds": round(usage.gpu_seconds, 3),
        "gpu_fabric/cost_usd": round(usage.usd, 9),
    }
    gpus = sorted({c.gpu_type if c.gpu_count == 1 else f"{c.gpu_type}:{c.gpu_count}" for c in usage.capacity if c.gpu_type})
    if gpus:
        metadata["gpu_fabric/gpu"] = ", ".join(gpus)
    return metadata


def _usage_of(call: Optional[fabric.FunctionCall], context: Any) -> Optional[fabric.CallUsage]:
    """The fabric's usage report of `call`; None (with a warning in the step's log) when it cannot
    be had, so the billed metadata is left out rather than guessed."""
    if call is None:
        return None
    try:
        return call.get_usage()
    except Exception as exc:  # noqa: BLE001 - the call's own outcome matters more than its metadata
        message = f"gpu-fabric: no usage report for call {call.object_id} ({exc}); its billed seconds are left out"
        if context is not None:
            context.log.warning(message)
        else:
            import warnings

            warnings.warn(message, stacklevel=3)
        return None


def _current_step_context() -> Any:
    try:
        from dagster import OpExecutionContext

        return OpExecutionContext.get()
    except Exception:  # noqa: BLE001 - not inside an asset or op
        return None


def _add_step_metadata(context: Any, metadata: dict[str, Any]) -> None:
    """Attach metadata to the step's output (the asset's materialization), when it has one output."""
    try:
        if len(context.op_def.output_defs) == 1:
            context.add_output_metadata(metadata)
    except Exception:  # noqa: BLE001 - e.g. the output was already yielded
        pass
