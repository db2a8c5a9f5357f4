"""PrefectGpuFabricFuture: a Prefect future on one task run sent to gpu-fabric."""
from __future__ import annotations

import concurrent.futures
import threading
import uuid
from typing import TYPE_CHECKING, Any

from prefect.futures import PrefectConcurrentFuture
from typing_extensions import TypeVar

if TYPE_CHECKING:
    import core_executor as fabric

R = TypeVar("R")

__all__ = ["PrefectGpuFabricFuture"]


class PrefectGpuFabricFuture(PrefectConcurrentFuture[R]):
    """A Prefect future for a task run executing as a gpu-fabric function call.

    `wait()`, `result()`, `state` and `add_done_callback()` behave as for Prefect's own runners
    (the wrapped future resolves to the task run's final State). `function_call` is the fabric's
    `FunctionCall` once the call has been sent (None while upstream tasks are still running), and
    `cancel()` cancels the remote call.
    """

    def __init__(self, task_run_id: uuid.UUID, wrapped_future: concurrent.futures.Future[Any]):
        self._function_call: "fabric.FunctionCall | None" = None
        self._call_lock = threading.Lock()
        self._cancel_requested = False
        super().__init__(task_run_id=task_run_id, wrapped_future=wrapped_future)

    @property
    def function_call(self) -> "fabric.FunctionCall | None":
        """The fabric call running this task run (None until it is sent)."""
        return self._function_call

    @property
    def cancel_requested(self) -> bool:
        """True once `cancel()` was called."""
        return self._cancel_requested

    def _attach(self, call: "fabric.FunctionCall") -> bool:
        """Record the fabric call; False (and the call cancelled) when cancel() came first."""
        with self._call_lock:
            self._function_call = call
            cancelled = self._cancel_requested
        if cancelled:
            _cancel_call(call)
        return not cancelled

    def cancel(self) -> bool:
        """Cancel the task run: a call not yet sent never runs, a running one is stopped.

        The task run ends Cancelled. Returns False when it had already finished.
        """
        if self._wrapped_future.done():
            return False
        with self._call_lock:
            self._cancel_requested = True
            call = self._function_call
        if call is not None:
            _cancel_call(call)
        return True

    def __repr__(self) -> str:
        call = self._function_call.object_id if self._function_call is not None else None
        return f"PrefectGpuFabricFuture(task_run_id={self.task_run_id}, call={call!r})"


def _cancel_call(call: "fabric.FunctionCall") -> None:
    try:
        call.cancel(terminate_containers=True)
    except Exception:  # noqa: BLE001 - best effort: the call may have finished meanwhile
        pass
