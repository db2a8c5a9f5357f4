"""GpuFunctionCallTrigger: waits in the triggerer for a call on the fabric to finish."""
from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

from airflow.triggers.base import BaseTrigger, TriggerEvent

import core_executor as fabric

from . import _calls
from .hook import GpuFabricHook

__all__ = ["GpuFunctionCallTrigger"]


class GpuFunctionCallTrigger(BaseTrigger):
    """Fires once the fabric call `call_id` is finished (success, failure or cancellation).

    The event is `{"status": "done", "state": ..., "call_id": ...}` for a finished call (the task
    fetches the result or the remote exception itself: the triggerer need not import the user's
    classes), or `{"status": "error", "message": ..., "call_id": ...}` when the fabric stayed
    unreachable for `unreachable_timeout` seconds or does not know the call.

    A user killing the task (mark failed/success, clear) cancels the call (`on_kill`); a triggerer
    restart does not: the trigger is picked up again and goes on waiting.

    :param call_id: the fabric's call id (from `Function.spawn`).
    :param gpu_fabric_conn_id: the Airflow connection of the fabric.
    :param poll_interval: the longest wait per request (one-input calls are long-polled; map calls
        are asked this often).
    :param unreachable_timeout: how long to keep retrying while the fabric cannot be reached.
    """

    def __init__(self, call_id: str, gpu_fabric_conn_id: str = GpuFabricHook.default_conn_name, *,
                 poll_interval: float = 10.0, unreachable_timeout: float = 300.0) -> None:
        super().__init__()
        self.call_id = call_id
        self.gpu_fabric_conn_id = gpu_fabric_conn_id
        self.poll_interval = float(poll_interval)
        self.unreachable_timeout = float(unreachable_timeout)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "call_id": self.call_id,
                "gpu_fabric_conn_id": self.gpu_fabric_conn_id,
                "poll_interval": self.poll_interval,
                "unreachable_timeout": self.unreachable_timeout,
            },
        )

    def _hook(self) -> GpuFabricHook:
        return GpuFabricHook(gpu_fabric_conn_id=self.gpu_fabric_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self._hook()
        try:
            await hook.aget_credentials()
        except Exception as exc:  # noqa: BLE001 - reported to the task, which fails with it
            yield TriggerEvent({"status": "error", "call_id": self.call_id, "message": str(exc)})
            return
        client = hook.get_conn()
        unreachable_since: float | None = None
        delay = 1.0
        try:
            while True:
                try:
                    status = await asyncio.to_thread(_calls.wait_call, client, self.call_id, self.poll_interval)
                except fabric.exception.NotFoundError as exc:
                    yield TriggerEvent({"status": "error", "call_id": self.call_id,
                                        "message": f"the fabric at {client.url} has no call {self.call_id}: {exc}"})
                    return
                except fabric.exception.ConnectionError as exc:
                    now = time.monotonic()
                    unreachable_since = unreachable_since or now
                    if now - unreachable_since >= self.unreachable_timeout:
                        yield TriggerEvent({
                            "status": "error", "call_id": self.call_id,
                            "message": (f"the fabric at {client.url} was unreachable for {self.unreachable_timeout:g} s "
                                        f"while waiting for call {self.call_id} ({exc}); the call may still be "
                                        f"running: retry the task to reconnect to it"),
                        })
                        return
                    self.log.warning("fabric unreachable, retrying in %.0f s: %s", delay, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                except fabric.Error as exc:
                    yield TriggerEvent({"status": "error", "call_id": self.call_id, "message": str(exc)})
                    return
                unreachable_since, delay = None, 1.0
                if status.finished:
                    yield TriggerEvent({"status": "done", "state": status.state, "call_id": self.call_id,
                                        "message": status.message})
                    return
                if status.is_map:
                    await asyncio.sleep(max(self.poll_interval, 0.5))
        finally:
            hook.close()

    async def on_kill(self) -> None:
        """The user killed the task: cancel the call on the fabric."""
        hook = self._hook()
        await hook.aget_credentials()
        try:
            await asyncio.wait_for(asyncio.to_thread(_calls.cancel_call, hook.get_conn(), self.call_id), 30.0)
            self.log.info("cancelled call %s on the fabric", self.call_id)
        finally:
            hook.close()
