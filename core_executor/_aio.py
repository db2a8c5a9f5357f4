"""Async twins of blocking calls (`f.remote.aio(...)`) and the warning for blocking inside a loop."""
from __future__ import annotations

import functools
import sys
import threading
import warnings
from typing import Any, AsyncIterator, Callable, Iterable

__all__ = ["AsyncUsageWarning", "blocking", "run_in_thread", "aiter_in_thread"]

# `.aio` calls mostly wait on the network; gathering hundreds of them should not queue behind
# the default executor's min(32, cpus + 4) threads.
MAX_AIO_THREADS = 256


class AsyncUsageWarning(UserWarning):
    """A blocking call was made inside a running event loop; `await` its `.aio` form there."""


_warned_sites: set[tuple[str, int]] = set()
_executor: Any = None
_executor_lock = threading.Lock()


def _get_executor() -> Any:
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                from concurrent.futures import ThreadPoolExecutor

                _executor = ThreadPoolExecutor(MAX_AIO_THREADS, thread_name_prefix="gpufabric-aio")
    return _executor


def in_event_loop() -> bool:
    """True when the calling thread runs an asyncio event loop right now."""
    asyncio = sys.modules.get("asyncio")
    # No asyncio imported means no loop: keeps `import core_executor` and .remote() cheap.
    return asyncio is not None and asyncio.events._get_running_loop() is not None


def warn_blocking(name: str, *, iterator: bool, stacklevel: int) -> None:
    """Warn (once per call site) that `name` blocks the running event loop."""
    try:
        frame = sys._getframe(stacklevel)
        site = (frame.f_code.co_filename, frame.f_lineno)
    except ValueError:
        site = ("?", 0)
    if site in _warned_sites:
        return
    _warned_sites.add(site)
    form = f"async for ... in {name}.aio(...)" if iterator else f"await {name}.aio(...)"
    warnings.warn(
        f"{name}(...) is a blocking call inside a running event loop, which stalls the loop; use `{form}`",
        AsyncUsageWarning,
        stacklevel=stacklevel + 1,
    )


async def run_in_thread(call: Callable[[], Any]) -> Any:
    """Await `call()` run in the SDK's worker threads."""
    import asyncio
    import contextvars

    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    return await loop.run_in_executor(_get_executor(), ctx.run, call)


async def _collect_async_args(args: tuple) -> tuple:
    # `f.map.aio(async_gen)`: the blocking implementation takes plain iterables.
    out = []
    for arg in args:
        if hasattr(arg, "__aiter__") and not hasattr(arg, "__iter__"):
            arg = [item async for item in arg]
        out.append(arg)
    return tuple(out)


def _has_async_iterable(args: tuple) -> bool:
    return any(hasattr(a, "__aiter__") and not hasattr(a, "__iter__") for a in args)


async def aiter_in_thread(make: Callable[[], Iterable[Any]]) -> AsyncIterator[Any]:
    """Iterate the blocking iterator `make()` from async code, one item per worker-thread hop."""
    import asyncio

    loop = asyncio.get_running_loop()
    executor = _get_executor()
    it = await loop.run_in_executor(executor, lambda: iter(make()))
    done = object()
    try:
        while True:
            item = await loop.run_in_executor(executor, next, it, done)
            if item is done:
                return
            yield item
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            try:
                # Closing the blocking generator cancels the remote call it drives.
                await loop.run_in_executor(executor, close)
            except (ValueError, RuntimeError):  # still running in its thread after a cancel
                pass


class _Bound:
    """A blocking method bound to its object: call it, or `await x.aio(...)`."""

    __slots__ = ("_owner", "_fn", "_name", "_iterator")

    def __init__(self, owner: Any, fn: Callable, name: str, iterator: bool):
        self._owner = owner
        self._fn = fn
        self._name = name
        self._iterator = iterator

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if in_event_loop():
            warn_blocking(self._display_name(), iterator=self._iterator, stacklevel=2)
        if self._owner is None:
            return self._fn(*args, **kwargs)
        return self._fn(self._owner, *args, **kwargs)

    def _display_name(self) -> str:
        # "square.remote" reads better than "Function.remote" in the warning.
        tag = getattr(self._owner, "_tag", "") if self._owner is not None else ""
        return f"{tag}.{self._name.rpartition('.')[2]}" if tag else self._name

    def _partial(self, args: tuple, kwargs: dict) -> Callable[[], Any]:
        if self._owner is None:
            return functools.partial(self._fn, *args, **kwargs)
        return functools.partial(self._fn, self._owner, *args, **kwargs)

    def aio(self, *args: Any, **kwargs: Any) -> Any:
        """The async form: a coroutine, or an async iterator for calls that yield results."""
        if self._iterator:
            if _has_async_iterable(args):
                return self._aiter_collected(args, kwargs)
            return aiter_in_thread(self._partial(args, kwargs))
        return self._run(args, kwargs)

    async def _run(self, args: tuple, kwargs: dict) -> Any:
        if _has_async_iterable(args):
            args = await _collect_async_args(args)
        return await run_in_thread(self._partial(args, kwargs))

    async def _aiter_collected(self, args: tuple, kwargs: dict) -> AsyncIterator[Any]:
        args = await _collect_async_args(args)
        async for item in aiter_in_thread(self._partial(args, kwargs)):
            yield item

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self._fn.__doc__

    def __repr__(self) -> str:
        return f"<{self._name} (blocking; .aio for async)>"


class blocking:  # noqa: N801 - used as a decorator, like property
    """Decorator for a blocking method: `obj.m(...)` blocks (warning inside a loop), `obj.m.aio(...)` awaits.

    `iterator=True` for methods returning an iterator of results (their `.aio` is an async
    iterator); `static=True` for static methods (`FunctionCall.gather`).
    """

    def __init__(self, fn: Callable | None = None, *, name: str = "", iterator: bool = False, static: bool = False):
        self._iterator = iterator
        self._static = static
        self._name = name
        self._fn: Callable | None = None
        if fn is not None:
            self(fn)

    def __call__(self, fn: Callable) -> "blocking":
        self._fn = fn
        self._name = self._name or fn.__name__
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        return self

    def __set_name__(self, owner: type, name: str) -> None:
        if "." not in self._name:
            self._name = f"{owner.__name__}.{self._name or name}"

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if self._static:
            return _Bound(None, self._fn, self._name, self._iterator)
        if obj is None:
            return self
        return _Bound(obj, self._fn, self._name, self._iterator)
