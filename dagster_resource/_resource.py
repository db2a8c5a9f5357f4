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
    output is printed to the step's stdout/stderr, so it lands in the run's compute logs. Inside
    an asset or op, each call adds `gpu_fabric/*` metadata (calls, call seconds, GPU seconds) to
    the step's output.
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

    def _record(self, options: dict[str, Any], calls: int, seconds: float) -> None:
        context = _current_step_context()
        step = (context.run_id, str(context.op_handle)) if context is not None else None
        totals = self._totals.setdefault(step, {})
        totals["gpu_fabric/calls"] = totals.get("gpu_fabric/calls", 0) + calls
        totals["gpu_fabric/call_seconds"] = round(totals.get("gpu_fabric/call_seconds", 0.0) + seconds, 3)
        gpu_count = _gpu_count(options.get("gpu"))
        if gpu_count:
            totals["gpu_fabric/gpu_seconds"] = round(totals.get("gpu_fabric/gpu_seconds", 0.0) + seconds * gpu_count, 3)
            totals["gpu_fabric/gpu"] = str(options.get("gpu"))
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
        target, a, kw = self._target(function, args, kwargs)
        started = time.monotonic()
        try:
            return target.remote(*a, **kw)
        finally:
            self._resource._record(self._options, 1, time.monotonic() - started)

    def map(self, function: Any, *iterables: Iterable[Any], **kwargs: Any) -> list[Any]:
        columns = [list(it) for it in iterables]
        if not columns:
            raise TypeError("map needs at least one iterable")
        started = time.monotonic()
        try:
            if isinstance(function, (str, fabric.Function)) and not _has_local_code(function):
                target, _, _ = self._target(function, (), {})
                return list(target.map(*columns, kwargs=kwargs))
            payloads = [self._target(function, tuple(row), kwargs)[1][0] for row in zip(*columns)]
            entry = self._resource._function_pool().get(run_callable, self._options)
            return list(entry.map(payloads))
        finally:
            count = len(columns[0]) if columns else 0
            self._resource._record(self._options, count, time.monotonic() - started)

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


def _gpu_count(gpu: Any) -> int:
    if not gpu:
        return 0
    first = gpu[0] if isinstance(gpu, (list, tuple)) else gpu
    _, _, count = str(first).partition(":")
    return int(count) if count.isdigit() else 1


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
