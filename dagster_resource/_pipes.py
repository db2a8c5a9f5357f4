"""Dagster Pipes over gpu-fabric: PipesGpuFabricClient and its message reader."""
from __future__ import annotations

import json
import threading
import time
import weakref
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from dagster import (
    AssetExecutionContext,
    OpExecutionContext,
    PipesClient,
    PipesClientCompletedInvocation,
    PipesEnvContextInjector,
    PipesMessageReader,
    open_pipes_session,
)
from dagster._core.definitions.resource_annotation import TreatAsResourceParam
from dagster._core.pipes.context import PipesMessageHandler
from dagster_pipes import PipesExtras, PipesParams

from ._pool import FunctionPool
from ._remote import run_pipes
from ._resource import _pickle_by_value, _usage_of, usage_metadata
from .exceptions import PipesSessionNotOpenedError

__all__ = ["PipesGpuFabricClient", "PipesGpuFabricMessageReader"]


class PipesGpuFabricMessageReader(PipesMessageReader):
    """Reads Pipes messages from a gpu-fabric call's output stream.

    The call (our `run_pipes` entry point, a generator) tails the file that the remote
    `open_dagster_pipes()` writes its messages to, and streams every line back as an item of its
    output; `consume()` hands them to Dagster as they arrive.
    """

    STREAM_KEY = "gpu_fabric_stream"

    def __init__(self) -> None:
        self._handler: Optional[PipesMessageHandler] = None

    @contextmanager
    def read_messages(self, handler: PipesMessageHandler) -> Iterator[PipesParams]:
        self._handler = handler
        try:
            # Replaced in the container by the path of the file it tails (see `run_pipes`).
            yield {self.STREAM_KEY: True}
        finally:
            self._handler = None

    def consume(self, items: Iterator[Mapping[str, Any]]) -> Any:
        """Handle the call's stream until it ends; returns its final item (the function's result)."""
        if self._handler is None:
            raise RuntimeError("consume() runs inside read_messages() (an open Pipes session)")
        last: Any = None
        for item in items:
            if item.get("kind") == "message":
                self._handler.handle_message(json.loads(item["line"]))
            else:
                last = item
        return last

    def no_messages_debug_text(self) -> str:
        return (
            "Messages are read from the gpu-fabric call's output stream. The remote function (or command) "
            "must call `open_dagster_pipes()`; its own output is in the step's compute logs."
        )


class PipesGpuFabricClient(PipesClient, TreatAsResourceParam):
    """Runs a function or a command in a gpu-fabric container as a Dagster Pipes session.

        @asset
        def trained(context: AssetExecutionContext, pipes: PipesGpuFabricClient):
            return pipes.run(context=context, function=train, extras={"epochs": 3},
                             gpu="A100").get_materialize_result()

    The remote code uses `open_dagster_pipes()` unchanged: the context travels in the call's
    environment, and logs, materializations, asset checks and custom messages come back over the
    call's output stream while it runs.

    url/token: the fabric (None: GPUFABRIC_URL, else an embedded fabric). app_name: the fabric
    app the calls belong to. gpu/cpu/memory/timeout: default resources of each run.

    The client starts its fabric app on its first run and keeps it for later runs (one app per
    client, one function per distinct resource set), so a second run with the same resources
    finds a warm container instead of starting an app and a container of its own. The app stops
    with `close()` (or `with PipesGpuFabricClient(...) as pipes:`), else when the process exits;
    a process killed outright leaves it to the fabric, which stops an app whose client stopped
    heart-beating (30 s by default).

    The returned invocation's metadata: `gpu_fabric/call_seconds` (the wall time of the run, as
    this process saw it) and, from the fabric's usage report (`FunctionCall.get_usage()`),
    `gpu_fabric/container_seconds`, `gpu_fabric/gpu_seconds` (container seconds times its GPUs),
    `gpu_fabric/cost_usd` (at the container's price, as the fabric bills it; $0 on a local worker)
    and `gpu_fabric/gpu` (the GPU type it ran on).
    """

    def __init__(
        self,
        *,
        url: Optional[str] = None,
        token: Optional[str] = None,
        app_name: str = "dagster-pipes",
        gpu: Optional[str] = None,
        cpu: Optional[float] = None,
        memory: Optional[int] = None,
        timeout: Optional[float] = None,
        show_logs: bool = True,
        message_reader: Optional[PipesGpuFabricMessageReader] = None,
    ):
        self._url, self._token, self._app_name, self._show_logs = url, token, app_name, show_logs
        self._defaults = {"gpu": gpu, "cpu": cpu, "memory": memory, "timeout": timeout}
        self.message_reader = message_reader or PipesGpuFabricMessageReader()
        self.context_injector = PipesEnvContextInjector()
        self._pool: Optional[FunctionPool] = None
        self._pool_lock = threading.Lock()
        self._finalizer: Optional[weakref.finalize] = None

    def _function_pool(self) -> FunctionPool:
        """This client's pool of fabric functions, started on first use and kept until `close()`."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = FunctionPool(self._app_name, url=self._url, token=self._token, show_logs=self._show_logs)
                # Also at interpreter exit: a client that is never closed still stops its app.
                self._finalizer = weakref.finalize(self, self._pool.close)
            return self._pool

    def close(self) -> None:
        """Stop the fabric app this client started (a later `run` starts a new one)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
            finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None:
            finalizer.detach()
        if pool is not None:
            pool.close()

    def __enter__(self) -> "PipesGpuFabricClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_pool"], state["_pool_lock"], state["_finalizer"] = None, None, None  # a copy starts its own app
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._pool_lock = threading.Lock()

    @classmethod
    def _is_dagster_maintained(cls) -> bool:
        return False

    def run(  # type: ignore[override]
        self,
        *,
        context: OpExecutionContext | AssetExecutionContext,
        function: Optional[Callable[..., Any]] = None,
        args: Sequence[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        command: Optional[Sequence[str]] = None,
        extras: Optional[PipesExtras] = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        gpu: Optional[str] = None,
        cpu: Optional[float] = None,
        memory: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> PipesClientCompletedInvocation:
        """Run `function(*args, **kwargs)` (any picklable callable) or `command` (argv, run with the
        container's environment) in a fabric container, in a Pipes session.

        Returns once the call ends. Raises the remote exception (with its traceback) when the
        function fails or the command exits non-zero, and PipesSessionNotOpenedError when the
        remote code never opened the Pipes session.
        """
        if (function is None) == (command is None):
            raise TypeError("PipesGpuFabricClient.run takes exactly one of function= or command=")
        import cloudpickle

        if function is not None:
            target = {"function": function, "args": tuple(args), "kwargs": dict(kwargs or {}), "env": dict(env or {})}
        else:
            target = {"command": list(command), "env": dict(env or {}), "cwd": cwd}
        packed = _pickle_by_value(cloudpickle, target, function)
        options = {**self._defaults, **{k: v for k, v in dict(gpu=gpu, cpu=cpu, memory=memory, timeout=timeout).items() if v is not None}}
        started = time.monotonic()
        with open_pipes_session(
            context=context,
            context_injector=self.context_injector,
            message_reader=self.message_reader,
            extras=extras,
        ) as session:
            bootstrap = session.get_bootstrap_env_vars()
            entry = self._function_pool().get(run_pipes, options)
            call = entry.spawn(bootstrap, packed)  # a handle, for the usage report afterwards
            self.message_reader.consume(call.get_gen())
            if not session.message_handler.received_opened_message:
                raise PipesSessionNotOpenedError(
                    f"the {'function' if function is not None else 'command'} ran on gpu-fabric but never "
                    "opened a Dagster Pipes session: call `open_dagster_pipes()` (in a `with` block) in the "
                    "remote code. Its output is in this step's compute logs."
                )
        metadata: dict[str, Any] = {"gpu_fabric/call_seconds": round(time.monotonic() - started, 3)}
        usage = _usage_of(call, context)
        if usage is not None:
            metadata.update(usage_metadata(usage))
        return PipesClientCompletedInvocation(session, metadata=metadata)

