"""GpuFunctionSensor: waits for a call already started on the fabric (e.g. by `Function.spawn`)."""
from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseSensorOperator, PokeReturnValue

import core_executor as fabric

from . import _calls
from .exceptions import CallFailedError, GpuFabricAirflowError
from .hook import GpuFabricHook
from .links import GpuFabricCallLink
from .trigger import GpuFunctionCallTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["GpuFunctionSensor"]


class GpuFunctionSensor(BaseSensorOperator):
    """Waits until the fabric call ``call_id`` finishes; its result goes to XCom.

    A failed call fails the sensor with the remote exception; a cancelled one with CallFailedError.

    :param call_id: the call's id (templated), e.g.
        ``"{{ ti.xcom_pull(task_ids='start', key='gpu_fabric_call_id') }}"`` or a saved
        ``FunctionCall.object_id``.
    :param deferrable: wait in the triggerer (the default) instead of poking from a worker.
    :param poll_interval: the trigger's longest wait per request, seconds (``poke_interval`` is
        used when not deferrable).
    :param gpu_fabric_conn_id: the Airflow connection of the fabric.
    """

    template_fields: Sequence[str] = ("call_id",)
    operator_extra_links = (GpuFabricCallLink(),)
    ui_color = "#76b900"

    def __init__(self, *, call_id: str, gpu_fabric_conn_id: str = GpuFabricHook.default_conn_name,
                 deferrable: bool = True, poll_interval: float = 10.0, unreachable_timeout: float = 300.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.call_id = call_id
        self.gpu_fabric_conn_id = gpu_fabric_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.unreachable_timeout = unreachable_timeout
        self._hook: GpuFabricHook | None = None

    @property
    def hook(self) -> GpuFabricHook:
        """The fabric hook of this task."""
        if self._hook is None:
            self._hook = GpuFabricHook(gpu_fabric_conn_id=self.gpu_fabric_conn_id)
        return self._hook

    def _check_call_id(self) -> str:
        call_id = str(self.call_id or "").strip()
        if not call_id or call_id == "None":
            raise GpuFabricAirflowError(f"{self.task_id}: call_id rendered empty; give the id of a spawned call")
        return call_id

    def _result(self, call_id: str) -> Any:
        return fabric.FunctionCall.from_id(call_id, client=self.hook.get_conn()).get()

    def execute(self, context: Context) -> Any:
        call_id = self._check_call_id()
        GpuFabricCallLink.persist(context, self.hook.call_url(call_id))
        if not self.deferrable:
            return super().execute(context)
        self.defer(
            trigger=GpuFunctionCallTrigger(call_id=call_id, gpu_fabric_conn_id=self.gpu_fabric_conn_id,
                                           poll_interval=self.poll_interval,
                                           unreachable_timeout=self.unreachable_timeout),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) if self.timeout else None,
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        call_id = self._check_call_id()
        status = _calls.call_status(self.hook.get_conn(), call_id)
        if not status.finished:
            self.log.info("Call %s: %d of %d inputs done", call_id, status.num_done, status.num_inputs)
            return False
        if status.state in (_calls.CANCELLED, _calls.EXPIRED):
            raise CallFailedError(status.message)
        return PokeReturnValue(is_done=True, xcom_value=self._result(call_id))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Back from the trigger: the call's result (or its exception)."""
        event = event or {}
        call_id = event.get("call_id") or self._check_call_id()
        if event.get("status") == "error":
            raise GpuFabricAirflowError(event.get("message") or f"waiting for call {call_id} failed")
        if event.get("state") in (_calls.CANCELLED, _calls.EXPIRED):
            raise CallFailedError(event.get("message") or f"call {call_id} ended {event.get('state')}")
        return self._result(call_id)
