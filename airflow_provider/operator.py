"""GpuFunctionOperator: runs a fabric function (deployed, or a Python callable) as an Airflow task."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Sequence

from airflow.sdk import BaseOperator

import core_executor as fabric

from . import _calls
from .exceptions import CallFailedError, GpuFabricAirflowError
from .hook import GpuFabricHook
from .links import GpuFabricCallLink
from .trigger import GpuFunctionCallTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["GpuFunctionOperator", "CALL_ID_XCOM_KEY", "CALL_ID_STATE_KEY"]

# XCom key under which the operator publishes its call id (for GpuFunctionSensor and friends).
CALL_ID_XCOM_KEY = "gpu_fabric_call_id"
# task_state_store key that survives retries: a retried task reconnects to this call.
CALL_ID_STATE_KEY = "gpu_fabric_call_id"

_OVERRIDES = ("gpu", "cpu", "memory", "timeout", "function_retries", "image", "secrets", "volumes", "env")
_NAME_OK = re.compile(r"[^A-Za-z0-9_.-]+")


def _name(text: str, limit: int = 64) -> str:
    return _NAME_OK.sub("-", text).strip("-")[:limit] or "airflow"


def _number(value: Any) -> Any:
    # A templated field renders to a string ("60"); the SDK wants numbers.
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return value
    return value


def _import_callable(path: str) -> Any:
    from airflow.sdk.module_loading import import_string

    if ":" in path:
        module, _, attr = path.partition(":")
        obj = import_string(module + "." + attr.split(".")[0])
        for part in attr.split(".")[1:]:
            obj = getattr(obj, part)
        return obj
    return import_string(path)


class GpuFunctionOperator(BaseOperator):
    """Runs one function call on a gpu-fabric and returns its result (pushed to XCom).

    What to run, either:

    * a deployed function: ``app_name`` and ``function_name`` (``gpufabric deploy`` made them), or
    * ``python_callable``: a function, a ``core_executor`` Function, or an import path
      (``"pkg.module:func"``). It is deployed (by value, so the DAG folder need not be on the
      fabric's workers) as ``function_name`` (default: the task id) of the app ``app_name``
      (default: ``airflow-<dag_id>``), with the overrides below, then called.

    :param function_args: positional arguments (templated).
    :param function_kwargs: keyword arguments (templated).
    :param map_inputs: when set (a list, templated), the function runs once per element, the
        element as its one positional argument plus ``function_kwargs`` (``Function.spawn_map``);
        the result is the list of results in input order. (Dynamic task mapping over the operator,
        ``.partial(...).expand(function_args=...)``, gives one task per input instead.)
    :param gpu, cpu, memory, timeout, function_retries, image, secrets, volumes, env: the
        function's options on the fabric (``@app.function(...)``'s arguments; ``function_retries``
        is its ``retries``), templated; only for ``python_callable`` unless the SDK can override a
        deployed function's options (``Function.with_options``).
    :param function_options: further ``@app.function`` arguments for ``python_callable``.
    :param deferrable: free the worker slot while the call runs (the default): the task spawns
        the call and defers to ``GpuFunctionCallTrigger``.
    :param poll_interval: the trigger's longest wait per request, seconds.
    :param unreachable_timeout: how long (s) the trigger retries while the fabric is unreachable.
    :param cancel_on_kill: cancel the remote call when the task is killed (default True).
    :param gpu_fabric_conn_id: the Airflow connection of the fabric.

    A retried task reconnects to the call its earlier try started (kept in ``task_state_store``)
    while that call is running or succeeded; after a failed or cancelled call it starts a new one.
    The call id is also pushed to XCom under ``gpu_fabric_call_id``.
    """

    template_fields: Sequence[str] = (
        "app_name", "function_name", "function_args", "function_kwargs", "map_inputs", "gpu", "cpu", "memory",
        "timeout", "function_retries", "env", "function_options",
    )
    template_fields_renderers = {"function_args": "py", "function_kwargs": "py", "map_inputs": "py"}
    operator_extra_links = (GpuFabricCallLink(),)
    ui_color = "#76b900"
    shallow_copy_attrs: Sequence[str] = ("python_callable",)

    def __init__(
        self,
        *,
        app_name: str | None = None,
        function_name: str | None = None,
        python_callable: Callable | str | None = None,
        function_args: Sequence[Any] | None = None,
        function_kwargs: dict[str, Any] | None = None,
        map_inputs: Sequence[Any] | None = None,
        gpu: Any = None,
        cpu: Any = None,
        memory: Any = None,
        timeout: Any = None,
        function_retries: Any = None,
        image: Any = None,
        secrets: Any = None,
        volumes: Any = None,
        env: dict[str, str] | None = None,
        function_options: dict[str, Any] | None = None,
        gpu_fabric_conn_id: str = GpuFabricHook.default_conn_name,
        deferrable: bool = True,
        poll_interval: float = 10.0,
        unreachable_timeout: float = 300.0,
        cancel_on_kill: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if python_callable is None and not (app_name and function_name):
            raise ValueError(
                f"{type(self).__name__} {self.task_id!r} needs app_name and function_name (a deployed "
                f"function) or python_callable (a function to run on the fabric)"
            )
        if python_callable is not None and not (callable(python_callable) or isinstance(python_callable, str)):
            raise TypeError(f"python_callable must be a callable or an import path, not {type(python_callable).__name__}")
        if function_args is not None and isinstance(function_args, (str, bytes, dict)):
            raise TypeError("function_args must be a list or tuple of positional arguments")
        if function_kwargs is not None and not isinstance(function_kwargs, dict) and not hasattr(function_kwargs, "resolve"):
            raise TypeError("function_kwargs must be a dict of keyword arguments")
        self.app_name = app_name
        self.function_name = function_name
        self.python_callable = python_callable
        self.function_args = function_args
        self.function_kwargs = function_kwargs
        self.map_inputs = map_inputs
        self.gpu, self.cpu, self.memory, self.timeout = gpu, cpu, memory, timeout
        self.function_retries, self.image, self.secrets, self.volumes, self.env = (
            function_retries, image, secrets, volumes, env)
        self.function_options = function_options
        self.gpu_fabric_conn_id = gpu_fabric_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.unreachable_timeout = unreachable_timeout
        self.cancel_on_kill = cancel_on_kill
        self.call_id: str | None = None
        self._hook: GpuFabricHook | None = None

    # ---- pieces ----

    @property
    def hook(self) -> GpuFabricHook:
        """The fabric hook of this task."""
        if self._hook is None:
            self._hook = GpuFabricHook(gpu_fabric_conn_id=self.gpu_fabric_conn_id)
        return self._hook

    def _overrides(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in _OVERRIDES}
        options = {k: v for k, v in values.items() if v is not None}
        if "function_retries" in options:
            options["retries"] = options.pop("function_retries")
        for key in ("cpu", "memory", "timeout", "retries"):
            if key in options:
                options[key] = _number(options[key])
        extra = dict(self.function_options or {})
        clash = sorted(set(extra) & set(options))
        if clash:
            raise ValueError(f"{', '.join(clash)} given both as an argument and in function_options")
        return {**extra, **options}

    def _call_arguments(self) -> tuple[tuple, dict[str, Any]]:
        args = self.function_args if self.function_args is not None else ()
        kwargs = self.function_kwargs if self.function_kwargs is not None else {}
        if isinstance(args, (str, bytes, dict)) or not hasattr(args, "__iter__"):
            raise GpuFabricAirflowError(f"function_args rendered to {type(args).__name__}; it must be a list of arguments")
        if not isinstance(kwargs, dict):
            raise GpuFabricAirflowError(f"function_kwargs rendered to {type(kwargs).__name__}; it must be a dict")
        return tuple(args), dict(kwargs)

    def _deployed_function(self, client: fabric.Client) -> fabric.Function:
        assert self.app_name and self.function_name
        fn = _calls.lookup_function(client, self.app_name, self.function_name)
        overrides = self._overrides()
        if overrides:
            with_options = getattr(fn, "with_options", None)
            if with_options is None:
                raise GpuFabricAirflowError(
                    f"{', '.join(sorted(overrides))}: a deployed function runs with the options it was deployed "
                    f"with; redeploy {self.app_name}.{self.function_name} with them, or pass python_callable"
                )
            fn = with_options(**overrides)
        return fn

    def _callable_function(self, client: fabric.Client, context: Context) -> fabric.Function:
        target = self.python_callable
        if isinstance(target, str):
            target = _import_callable(target)
        if isinstance(target, fabric.Function):
            app = target.app
            if app is None:
                return target
            if not app.name:
                app.name = _name(self.app_name or f"airflow-{self.dag_id}")
            app.deploy(client=client)
            return target
        app_name = _name(self.app_name or f"airflow-{self.dag_id}")
        function_name = _name(self.function_name or self.task_id)
        options = {"serialized": True, **self._overrides(), "name": function_name}
        app = fabric.App(app_name, description="deployed by Airflow's GpuFunctionOperator")
        fn = app.function(**options)(target)
        app.deploy(client=client)
        return fn

    def _spawn(self, client: fabric.Client, context: Context) -> str:
        fn = self._callable_function(client, context) if self.python_callable is not None else self._deployed_function(client)
        args, kwargs = self._call_arguments()
        if self.map_inputs is not None:
            inputs = list(self.map_inputs)
            if not inputs:
                raise GpuFabricAirflowError("map_inputs is empty: nothing to run")
            if args:
                raise GpuFabricAirflowError("map_inputs and function_args cannot be combined; use function_kwargs")
            call = fn.spawn_map(inputs, kwargs=kwargs)
        else:
            call = fn.spawn(*args, **kwargs)
        return call.object_id

    def _reconnect(self, client: fabric.Client, store: Any) -> str | None:
        prior = store.get(CALL_ID_STATE_KEY) if store is not None else None
        if not prior:
            return None
        try:
            status = _calls.call_status(client, str(prior))
        except fabric.exception.NotFoundError:
            self.log.info("The earlier try's call %s is unknown to the fabric; starting a new call", prior)
            return None
        if status.state in (_calls.RUNNING, _calls.SUCCEEDED):
            self.log.info("Reconnecting to call %s started by an earlier try (%s)", prior, status.state)
            return str(prior)
        self.log.info("The earlier try's call %s ended %s; starting a new call", prior, status.state)
        return None

    def _start(self, context: Context) -> str:
        client = self.hook.get_conn()
        store = context.get("task_state_store")
        call_id = self._reconnect(client, store)
        if call_id is None:
            call_id = self._spawn(client, context)
            if store is not None:
                store.set(CALL_ID_STATE_KEY, call_id)
            self.log.info("Started call %s on the fabric at %s", call_id, client.url)
        self.call_id = call_id
        context["ti"].xcom_push(key=CALL_ID_XCOM_KEY, value=call_id)
        GpuFabricCallLink.persist(context, self.hook.call_url(call_id))
        return call_id

    def _collect(self, context: Context, call_id: str) -> Any:
        client = self.hook.get_conn()
        call = fabric.FunctionCall.from_id(call_id, client=client)
        try:
            result = call.get()
        finally:
            self._log_remote(client, call_id)
        store = context.get("task_state_store")
        if store is not None:
            store.delete(CALL_ID_STATE_KEY)  # a cleared task runs afresh instead of reusing this call
        return result

    def _log_remote(self, client: fabric.Client, call_id: str) -> None:
        try:
            lines = _calls.call_log_lines(client, call_id)
        except Exception as exc:  # noqa: BLE001 - logs are a courtesy; the result matters
            self.log.warning("Could not read the logs of call %s: %s", call_id, exc)
            return
        for line in lines:
            self.log.info("%s", line)

    # ---- Airflow entry points ----

    def execute(self, context: Context) -> Any:
        call_id = self._start(context)
        if self.deferrable:
            self.defer(
                trigger=GpuFunctionCallTrigger(
                    call_id=call_id,
                    gpu_fabric_conn_id=self.gpu_fabric_conn_id,
                    poll_interval=self.poll_interval,
                    unreachable_timeout=self.unreachable_timeout,
                ),
                method_name="execute_complete",
                timeout=self.execution_timeout if isinstance(self.execution_timeout, timedelta) else None,
            )
        return self._collect(context, call_id)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Back from the trigger: fetch the result (or raise the remote exception)."""
        event = event or {}
        call_id = event.get("call_id") or self.call_id or ""
        self.call_id = call_id
        if event.get("status") == "error":
            raise GpuFabricAirflowError(event.get("message") or f"waiting for call {call_id} failed")
        if event.get("state") in (_calls.CANCELLED, _calls.EXPIRED):
            self._log_remote(self.hook.get_conn(), call_id)
            raise CallFailedError(event.get("message") or f"call {call_id} ended {event.get('state')}")
        return self._collect(context, call_id)

    def on_kill(self) -> None:
        if self.cancel_on_kill and self.call_id:
            try:
                _calls.cancel_call(self.hook.get_conn(), self.call_id)
                self.log.info("Cancelled call %s on the fabric", self.call_id)
            except Exception as exc:  # noqa: BLE001
                self.log.warning("Could not cancel call %s: %s", self.call_id, exc)
