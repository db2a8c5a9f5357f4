"""What travels to the container for one task run, and how it is pickled (user code by value)."""
from __future__ import annotations

import os
import sys
import sysconfig
import threading
from types import ModuleType
from typing import Any

from .exceptions import TaskNotPicklableError

__all__ = ["pack", "import_roots"]

# cloudpickle's by-value registry is process-wide: one pickling at a time while it is changed.
_pickle_lock = threading.Lock()


def _installed_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths.get(k, "") for k in ("purelib", "platlib", "stdlib", "platstdlib")}
    return tuple(os.path.realpath(r) + os.sep for r in roots if r)


_INSTALLED = _installed_roots()


def _user_module(obj: Any) -> ModuleType | None:
    """The module of `obj` when it is user code: a file outside site-packages and the stdlib."""
    fn = getattr(obj, "fn", obj)
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    if module is None or module.__name__ in ("__main__", "builtins"):
        return None  # cloudpickle already ships __main__ by value
    path = getattr(module, "__file__", None)
    if not path:
        return None
    real = os.path.realpath(path)
    if any(real.startswith(root) for root in _INSTALLED):
        return None
    return module


def import_roots(*objs: Any) -> list[str]:
    """Directories to put on the container's sys.path so modules named by reference import there too."""
    roots: list[str] = []
    for obj in objs:
        fn = getattr(obj, "fn", obj)
        module = sys.modules.get(getattr(fn, "__module__", None) or "")
        path = getattr(module, "__file__", None)
        if not path:
            continue
        root = os.path.dirname(os.path.abspath(path))
        name = module.__name__
        if name == "__main__":
            name = os.path.splitext(os.path.basename(path))[0]
        depth = name.count(".") + (1 if os.path.basename(path) == "__init__.py" else 0)
        for _ in range(depth):
            root = os.path.dirname(root)
        if root not in roots:
            roots.append(root)
    return roots


def _culprit(task: Any, call: dict[str, Any]) -> str:
    import cloudpickle

    def fails(obj: Any) -> bool:
        try:
            cloudpickle.dumps(obj)
        except Exception:  # noqa: BLE001 - any failure marks the culprit
            return True
        return False

    if fails(task):
        return f"the task function {getattr(task.fn, '__qualname__', task.fn)!r} (or a global it uses)"
    for name, value in (call.get("parameters") or {}).items():
        if fails(value):
            return f"parameter {name!r} ({type(value).__name__})"
    context = call.get("context") or {}
    flow = (context.get("flow_run_context") or {}).get("flow")
    if flow is not None and fails(flow):
        return f"the flow {getattr(flow, 'name', flow)!r} (a global its function uses, or its task runner)"
    for key in ("wait_for", "dependencies", "context"):
        if fails(call.get(key)):
            return f"its {key.replace('_', ' ')}"
    return "an object it refers to"


def pack(task: Any, call: dict[str, Any], *, by_value: bool = True) -> bytes:
    """Pickle one task run's call (task, parameters, states, context) for the container.

    Modules of user code (the task's and the flow's) are pickled by value so a worker without
    the caller's files can run them. Raises TaskNotPicklableError naming the culprit.
    """
    import cloudpickle

    modules: list[ModuleType] = []
    if by_value:
        flow = ((call.get("context") or {}).get("flow_run_context") or {}).get("flow")
        for obj in (task, flow):
            module = _user_module(obj) if obj is not None else None
            if module is not None and module not in modules:
                modules.append(module)
    with _pickle_lock:
        registered = []
        for module in modules:
            try:
                cloudpickle.register_pickle_by_value(module)
                registered.append(module)
            except ValueError:
                pass  # already registered by its owner
        try:
            return cloudpickle.dumps(call)
        except Exception as exc:  # noqa: BLE001 - pickling raises many kinds
            what = _culprit(task, call)
            raise TaskNotPicklableError(
                f"task {getattr(task, 'name', task)!r} cannot be sent to gpu-fabric: {what} cannot be pickled "
                f"({type(exc).__name__}: {exc}). Pass values that cloudpickle can serialize, and create "
                "clients, locks, files and sockets inside the task."
            ) from exc
        finally:
            for module in registered:
                cloudpickle.unregister_pickle_by_value(module)
