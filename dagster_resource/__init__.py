"""Dagster integration: GpuFabricResource, PipesGpuFabricClient and gpu_fabric_executor."""
from __future__ import annotations

from ._executor import STEP_TAG_PREFIX, GpuFabricStepHandler, gpu_fabric_executor
from ._pipes import PipesGpuFabricClient, PipesGpuFabricMessageReader
from ._resource import GpuFabricCaller, GpuFabricResource
from .exceptions import DagsterGpuFabricError, PipesSessionNotOpenedError

__all__ = [
    "STEP_TAG_PREFIX",
    "DagsterGpuFabricError",
    "GpuFabricCaller",
    "GpuFabricResource",
    "GpuFabricStepHandler",
    "PipesGpuFabricClient",
    "PipesGpuFabricMessageReader",
    "PipesSessionNotOpenedError",
    "gpu_fabric_executor",
]
