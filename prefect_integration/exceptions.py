"""The exceptions of the Prefect integration."""
from __future__ import annotations

__all__ = ["PrefectIntegrationError", "TaskNotPicklableError"]


class PrefectIntegrationError(Exception):
    """Base of the errors raised by `prefect_integration`."""


class TaskNotPicklableError(PrefectIntegrationError, TypeError):
    """Raised when a task, or one of its parameters, cannot be pickled to travel to the fabric.

    The message names the task and the object that failed. Define the task at the top level of a
    module, and pass parameters that cloudpickle can serialize (open files, locks, sockets and
    live clients cannot travel: create them inside the task instead).
    """
