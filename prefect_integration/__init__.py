"""Prefect 3 integration: `GpuFabricTaskRunner` runs a flow's tasks as gpu-fabric function calls.

    from prefect import flow, task
    from prefect_integration import GpuFabricTaskRunner, remote_options

    @flow(task_runner=GpuFabricTaskRunner(gpu="A100"))
    def train_all(): ...
"""
from __future__ import annotations

from ._futures import PrefectGpuFabricFuture
from ._options import RemoteOptions, remote_options
from ._runner import GpuFabricTaskRunner
from .exceptions import PrefectIntegrationError, TaskNotPicklableError

__all__ = [
    "GpuFabricTaskRunner",
    "PrefectGpuFabricFuture",
    "PrefectIntegrationError",
    "RemoteOptions",
    "TaskNotPicklableError",
    "remote_options",
]
