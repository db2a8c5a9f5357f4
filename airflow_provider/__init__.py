"""Airflow provider for gpu-fabric: GpuFunctionOperator, GpuFunctionSensor, GpuFabricHook,
GpuFunctionCallTrigger, GpuFabricCallLink and `@task.gpu_fabric`.

`get_provider_info` is the `apache_airflow_provider` entry point; the rest is imported on first
use, so Airflow can read the provider description without importing the SDK or the operators.
"""
from __future__ import annotations

from typing import Any

from ._provider_info import get_provider_info

__all__ = [
    "GpuFabricCallLink",
    "GpuFabricHook",
    "GpuFunctionCallTrigger",
    "GpuFunctionOperator",
    "GpuFunctionSensor",
    "gpu_fabric_task",
    "get_provider_info",
]

_LAZY = {
    "GpuFabricCallLink": ".links",
    "GpuFabricHook": ".hook",
    "GpuFunctionCallTrigger": ".trigger",
    "GpuFunctionOperator": ".operator",
    "GpuFunctionSensor": ".sensor",
    "gpu_fabric_task": ".decorator",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
