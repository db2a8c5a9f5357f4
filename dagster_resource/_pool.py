"""FunctionPool: one fabric app per distinct resource set, started on first use, stopped together."""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Mapping

import core_executor as fabric

__all__ = ["FunctionPool", "options_key", "DEFAULT_TIMEOUT_S"]

# A Dagster step has no timeout of its own; the fabric's default (300 s) is too short for GPU work.
DEFAULT_TIMEOUT_S = 24 * 3600.0


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    return value


def options_key(options: Mapping[str, Any]) -> tuple:
    return _freeze({k: v for k, v in options.items() if v is not None})


class FunctionPool:
    """Fabric functions for our entry points, one app per (entry point, resource options).

    url/token: the fabric (None: GPUFABRIC_URL, else an embedded fabric on this machine).
    """

    def __init__(self, app_name: str, *, url: str | None = None, token: str | None = None, show_logs: bool = True):
        self.app_name = app_name
        self._client = fabric.Client(url, token or "") if url else None
        self._show_logs = show_logs
        self._stack = contextlib.ExitStack()
        self._functions: dict[tuple, fabric.Function] = {}
        self._lock = threading.Lock()
        self._closed = False

    def get(self, entry: Callable[..., Any], options: Mapping[str, Any]) -> fabric.Function:
        """The running fabric function that runs `entry` with these `@app.function` options."""
        kwargs = {k: v for k, v in options.items() if v is not None}
        kwargs.setdefault("timeout", DEFAULT_TIMEOUT_S)
        key = (entry.__qualname__, options_key(kwargs))
        fn = self._functions.get(key)
        if fn is not None:
            return fn
        with self._lock:
            if self._closed:
                raise RuntimeError("the gpu-fabric function pool is closed")
            fn = self._functions.get(key)
            if fn is None:
                app = fabric.App(self.app_name)
                fn = app.function(name=entry.__name__, **kwargs)(entry)
                self._stack.enter_context(app.run(client=self._client, show_logs=self._show_logs))
                self._functions[key] = fn
        return fn

    def close(self) -> None:
        """Stop every app this pool started."""
        with self._lock:
            self._closed = True
            stack, self._stack = self._stack, contextlib.ExitStack()
            self._functions = {}
        stack.close()
