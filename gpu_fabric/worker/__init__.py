"""The worker agent: registers a machine, runs the containers the control plane assigns it."""
from typing import Any

from ._agent import WorkerAgent, WorkerError
from ._gpus import catalog_type, discover_gpus

__all__ = ["WorkerAgent", "WorkerError", "catalog_type", "discover_gpus", "run_worker", "worker_command"]


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m gpu_fabric.worker._main` does not import _main twice.
    if name in ("run_worker", "worker_command"):
        from . import _main

        return getattr(_main, name)
    raise AttributeError(name)
