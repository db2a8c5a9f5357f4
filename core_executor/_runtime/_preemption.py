"""Inside a container: volume mounts, preemption notices and hooks, and the input's attempt number."""
from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable, Optional

__all__ = ["current_input_attempt", "install", "on_preemption", "preemption_requested"]

NOTICE_FILE = "preempt"  # written by the worker into the container's directory (worker/_preemption.py)
POLL_S = 0.2

_hooks: list[Callable[[], Any]] = []
_noticed = threading.Event()
_runtime: Any = None


def on_preemption(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Decorator: call `fn()` (on a fabric thread) when this container's machine gets a preemption
    notice. Save a checkpoint there; the input re-runs elsewhere without spending retries, and
    `@exit` methods still run before the container stops."""
    _hooks.append(fn)
    return fn


def preemption_requested() -> bool:
    """True once this container's machine got a preemption notice (poll it in long loops)."""
    return _noticed.is_set()


def current_input_attempt() -> int:
    """1 for the first attempt of the running input, 2 after one failed attempt, ...; 0 outside
    an input. Re-runs after preemption or a lost worker keep the number (they are not charged)."""
    if _runtime is None:
        return 0
    from ._io import _input_context

    current = _input_context.get() or _runtime.logs._context
    entry = _runtime._running.get(current[0]) if current and current[0] else None
    return int(entry.inp.attempt) if entry is not None else 0


def _log(message: str) -> None:
    try:
        sys.__stderr__.write(f"[gpufabric runtime] {message}\n")
        sys.__stderr__.flush()
    except Exception:  # noqa: BLE001
        pass


def _watch(path: str) -> None:
    while not os.path.exists(path):
        threading.Event().wait(POLL_S)
    _noticed.set()
    _log("preemption notice: running on_preemption hooks; the input will re-run elsewhere")
    for hook in list(_hooks):
        try:
            hook()
        except Exception as exc:  # noqa: BLE001 - one failing hook must not block the others
            _log(f"on_preemption hook {getattr(hook, '__name__', hook)!r} failed: {exc!r}")


def install(runtime: Any, hello: Any, environ: Optional[dict] = None) -> None:
    """Called once from the runtime after ContainerHello: mounts volumes, starts the notice watch."""
    global _runtime
    _runtime = runtime
    environ = os.environ if environ is None else environ
    directory = os.path.dirname(environ.get("GPUFABRIC_STATUS_FILE", "")) or os.getcwd()
    if hello.spec.volumes:
        from core_executor._volume import mount

        for vm in hello.spec.volumes:
            mount(vm.volume_name, vm.mount_path, vm.read_only, directory)
    threading.Thread(target=_watch, args=(os.path.join(directory, NOTICE_FILE),),
                     name="gpufabric-preemption", daemon=True).start()
