"""The exceptions of the Dagster integration."""
from __future__ import annotations

__all__ = ["DagsterGpuFabricError", "PipesSessionNotOpenedError"]


class DagsterGpuFabricError(Exception):
    """Base of the errors raised by `dagster_resource`."""


class PipesSessionNotOpenedError(DagsterGpuFabricError):
    """Raised when a Pipes call ended without the remote code opening a Dagster Pipes session.

    The remote function (or command) must call `open_dagster_pipes()` (as a `with` block); check
    the call's output in the step's compute logs for an earlier error.
    """
