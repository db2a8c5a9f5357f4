"""What runs in the fabric's container: one Prefect task run, through Prefect's own task engine.

The fabric imports this file in its containers (a top-level function of a module file), so it
imports nothing heavy at the top.
"""
from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["run_prefect_task"]

# Seconds to wait for the task's logs and events to reach the Prefect API after it finishes.
FLUSH_TIMEOUT_S = 10.0


def run_prefect_task(sys_path: list[str], env: dict[str, str], payload: bytes) -> Any:
    """Run one task run and return its final Prefect State (never raises for the task's own errors).

    sys_path: import roots of the caller's modules; env: the caller's PREFECT_* settings, applied
    for this run only; payload: the pickled call (task, task_run_id, parameters with upstream
    futures as their final states, wait_for states, dependencies, serialized Prefect context).
    """
    for entry in reversed(sys_path):
        if entry and entry not in sys.path and os.path.isdir(entry):
            sys.path.insert(0, entry)
    saved = os.environ.copy()
    os.environ.update(env)
    try:
        import cloudpickle

        call = cloudpickle.loads(payload)
        return _run(call)
    finally:
        # Secrets in `env` (PREFECT_API_KEY...) do not outlive the run in this warm container.
        os.environ.clear()
        os.environ.update(saved)


def _crashed(exc: BaseException) -> Any:
    from prefect.states import Crashed

    kind = type(exc).__name__
    if isinstance(exc, KeyboardInterrupt):
        message = "Execution was aborted by an interrupt signal."
    elif isinstance(exc, SystemExit):
        message = "Execution was aborted by Python system exit call."
    else:
        message = f"Execution was interrupted by an unexpected exception: {kind}: {exc}"
    return Crashed(message=message, data=exc if isinstance(exc, Exception) else RuntimeError(f"{kind}: {exc}"))


def _run(call: dict[str, Any]) -> Any:
    from prefect.context import hydrated_context
    from prefect.task_engine import run_task_async, run_task_sync

    task = call["task"]
    kwargs = dict(
        task=task,
        task_run_id=call["task_run_id"],
        parameters=call["parameters"],
        wait_for=call["wait_for"],
        return_type="state",
        dependencies=call["dependencies"],
    )
    try:
        with hydrated_context(call["context"]):
            try:
                if task.isasync:
                    import asyncio

                    return asyncio.run(run_task_async(**kwargs))
                return run_task_sync(**kwargs)
            except BaseException as exc:  # noqa: BLE001 - the engine already recorded the crash
                return _crashed(exc)
            finally:
                _flush()
    except BaseException as exc:  # noqa: BLE001 - hydrating the context failed: still a state
        return _crashed(exc)


def _flush() -> None:
    """Send the task's logs and events to the Prefect API before the container takes its next input."""
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        # Events first, without stopping their worker (as Prefect's process pool does), and only
        # when the task emitted some; then the logs, as APILogHandler.flush() does at the end of
        # a flow run (drain_all stops the services, which start again on the next task run).
        with EventsWorker._instance_lock:
            has_events = bool(EventsWorker._instances)
        if has_events:
            EventsWorker.instance().wait_until_empty()
        APILogWorker.drain_all(timeout=FLUSH_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - losing a log line must not fail the task
        pass
