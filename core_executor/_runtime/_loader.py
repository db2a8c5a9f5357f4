"""Loading the user function a container runs from its FunctionDefinition."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import tempfile
import traceback
import types
from typing import Any, Callable

from gpu_fabric.proto import common_pb2

__all__ = [
    "FunctionLoadError",
    "load_definition",
    "unwrap",
    "init_failure_result",
    "python_version",
]


class FunctionLoadError(Exception):
    """Raised when the container cannot load its function (wrong Python, missing name)."""


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def unwrap(obj: Any) -> Callable[..., Any]:
    """The raw user callable behind an SDK `Function` object (or the object itself).

    The single place that knows how the SDK wraps decorated functions and classes.
    """
    get_user_cls = getattr(obj, "_get_user_cls", None)
    if callable(get_user_cls) and not isinstance(obj, type):
        return get_user_cls()
    get_raw_f = getattr(obj, "get_raw_f", None)
    if callable(get_raw_f):
        return get_raw_f()
    return obj


def _import_file(module_name: str, path: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise FunctionLoadError(f"cannot import {module_name!r} from {path!r}")
    module = importlib.util.module_from_spec(spec)
    # Registered before exec so pickling by reference (classes, nested calls) resolves it.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _module_from_source(module_name: str, source_text: str) -> types.ModuleType:
    # The caller's file does not exist here: materialize its text so tracebacks show lines.
    # In the container's scratch directory (cwd), which the worker removes when it exits.
    cwd = os.getcwd()
    directory = tempfile.mkdtemp(prefix=".gpufabric-src-", dir=cwd if os.access(cwd, os.W_OK) else None)
    leaf = module_name.rpartition(".")[2] or "user_module"
    path = os.path.join(directory, leaf + ".py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(source_text)
    return _import_file(module_name, path)


def _resolve(module: types.ModuleType, qualname: str) -> Any:
    obj: Any = module
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise FunctionLoadError(
                f"{qualname!r} not found in module {module.__name__!r}"
            ) from None
    return obj


def load_definition(
    definition: common_pb2.FunctionDefinition,
) -> tuple[Callable[..., Any], types.ModuleType | None]:
    """Returns (raw callable, its module or None for serialized functions). Raises on failure."""
    if definition.python_version and definition.python_version != python_version():
        raise FunctionLoadError(
            f"the function was defined under Python {definition.python_version} but this "
            f"container runs Python {python_version()}; run the caller on the same Python "
            "minor version as the workers"
        )
    for entry in reversed(definition.sys_path):
        if entry and entry not in sys.path:
            sys.path.insert(0, entry)
    kind = definition.kind
    if kind == common_pb2.FunctionDefinition.KIND_SERIALIZED:
        import cloudpickle

        return unwrap(cloudpickle.loads(definition.pickled_function)), None
    if kind == common_pb2.FunctionDefinition.KIND_FILE:
        module_name = definition.module_name
        if not module_name or module_name == "__main__":
            # "__main__" is the runtime itself here; import the caller's script under its stem.
            stem = os.path.splitext(os.path.basename(definition.source_path))[0]
            module_name = stem or "user_module"
        if definition.source_path and os.path.exists(definition.source_path):
            module = _import_file(module_name, definition.source_path)
        elif definition.source_text:
            module = _module_from_source(module_name, definition.source_text)
        else:
            # No file and no text: the module may be installed or on sys_path.
            module = importlib.import_module(module_name)
        return unwrap(_resolve(module, definition.qualname)), module
    raise FunctionLoadError(f"unknown function definition kind {kind}")


def init_failure_result(exc: BaseException) -> common_pb2.FunctionResult:
    """A RESULT_STATUS_INIT_FAILURE result describing why loading failed."""
    try:
        from core_executor._serialization import encode_failure

        result = encode_failure(exc, status=common_pb2.RESULT_STATUS_INIT_FAILURE)
    except Exception:
        # Encoding must never stop the report: fall back to text only.
        result = common_pb2.FunctionResult(
            status=common_pb2.RESULT_STATUS_INIT_FAILURE,
            exception=repr(exc),
            traceback="".join(traceback.format_exception(exc)),
        )
    result.status = common_pb2.RESULT_STATUS_INIT_FAILURE
    if not result.exception:
        result.exception = repr(exc)
    if not result.traceback:
        result.traceback = "".join(traceback.format_exception(exc))
    return result
