"""FunctionCall (a handle on a started call), its usage report, and the long-polling of a call's outputs."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from . import _client
from ._aio import blocking
from ._map import iter_outputs
from .config import is_container
from .exception import InputCancellation, InvalidError, OutputExpiredError

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["CallUsage", "CapacityUsage", "FunctionCall"]

POLL_WAIT_S = 25.0
# Extra gRPC deadline over a server-side wait.
RPC_SLACK_S = 30.0
# Longest wait for the log printer to catch up with an output's log_seq.
LOG_WAIT_S = 2.0

_CALL_KIND_MAP = 2


def _serialization() -> Any:
    from . import _serialization as ser

    return ser


def _get_outputs(client: "Client", call_id: str, cursor: int, wait: float, max_items: int = 1000) -> Any:
    req = client.pb.FunctionGetOutputsRequest(call_id=call_id, cursor=cursor, timeout_s=wait, max_items=max_items)
    return client.call("FunctionGetOutputs", req, timeout=wait + RPC_SLACK_S)


def _wait_output(client: "Client", call_id: str, timeout: float | None) -> Any:
    """The first output of a one-input call, long-polling up to `timeout` (None: forever)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait = POLL_WAIT_S if deadline is None else max(0.0, min(POLL_WAIT_S, deadline - time.monotonic()))
        resp = _get_outputs(client, call_id, 0, wait, max_items=1)
        if resp.outputs:
            return resp.outputs[0]
        if resp.cancelled:
            raise InputCancellation(f"call {call_id} was cancelled")
        if resp.closed and resp.num_inputs and resp.num_done >= resp.num_inputs:
            raise OutputExpiredError(f"the output of call {call_id} expired (outputs are kept for a limited time)")
        if deadline is not None and time.monotonic() >= deadline:
            raise OutputExpiredError(f"call {call_id} was not done after {timeout:g} s")


def _cancel_quietly(client: "Client", call_id: str) -> None:
    try:
        client.call("FunctionCallCancel", client.pb.FunctionCallCancelRequest(call_id=call_id), timeout=10.0)
    except Exception:  # noqa: BLE001 - best effort while already failing
        pass


def iter_generator(client: "Client", call_id: str, wait_logs: Callable[[int], Any]) -> Iterator[Any]:
    """Yield a generator call's items in order as they arrive; raise its failure where it happened.

    Items travel as outputs with increasing `gen_index`; a SUCCESS output with `gen_done` ends
    the stream. Leaving early (break, close) cancels the call.
    """
    ser = _serialization()
    cursor, next_index, pending, done = 0, 0, {}, False
    try:
        while True:
            resp = _get_outputs(client, call_id, cursor, POLL_WAIT_S)
            if not resp.outputs and resp.cancelled:
                raise InputCancellation(f"call {call_id} was cancelled")
            if not resp.outputs and resp.closed and resp.num_inputs and resp.num_done >= resp.num_inputs:
                done = True  # over without a closing item: a plain function's call
                raise InvalidError(f"call {call_id} is not a generator call (it ended without closing a stream); use .get()")
            failure = None
            for output in resp.outputs:
                cursor = max(cursor, output.seq)
                if output.log_seq:
                    wait_logs(output.log_seq)
                if output.result.status != 1:  # RESULT_STATUS_SUCCESS; a failure ends the stream
                    failure = output.result
                    break
                pending[output.result.gen_index] = output
            # Items made before the failure arrive before it: hand them over first.
            while next_index in pending:
                result = pending.pop(next_index).result
                if result.gen_done:
                    done = True
                    return
                yield ser.decode_result(result, blobs=client)
                next_index += 1
            if failure is not None:
                done = True
                raise ser.result_exception(failure)
    finally:
        if not done:
            _cancel_quietly(client, call_id)


@dataclass(frozen=True)
class CapacityUsage:
    """A call's time on one kind of capacity: one GPU type and count (or none) at one price."""

    gpu_type: str  # catalog GPU type ("T4", "A100-80GB"); "" for CPU-only containers
    gpu_count: int  # GPUs per container
    price_per_hour: float  # USD per hour of one such container (0 on a local worker)
    attempts: int
    seconds: float
    gpu_seconds: float
    usd: float


@dataclass(frozen=True)
class CallUsage:
    """What a call used on the fabric, as the control plane measured and priced it
    (`FunctionCall.get_usage()`).

    An attempt's time runs from the control plane handing the input to a container until the
    attempt ends (its output arrives, it times out, its container fails, the call is cancelled).
    Retries are attempts of their own and are counted. Attempts cut short because the fabric lost
    their container or worker (a preemption, a dead machine) re-run without spending the user's
    retries; they are reported apart (`lost_attempts`, `lost_seconds`) and left out of `seconds`,
    `gpu_seconds` and `usd`. `usd` prices each attempt at its container's share of its worker's
    price, as the fabric's billing ledger does; a local worker's GPUs are priced $0. Inputs that
    run together in one container (@batched, concurrent inputs) overlap, so their seconds can add
    up to more than the container ran. Usage is complete for an input once its output was read:
    after `.get()` returns, the call's usage is final.
    """

    call_id: str
    num_inputs: int  # inputs put on the call
    num_finished: int  # inputs finished, whatever their status
    num_running: int  # inputs on a container now (their running attempt is not counted yet)
    attempts: int  # charged attempts, retries included
    seconds: float  # container seconds of the charged attempts
    gpu_seconds: float  # seconds x GPUs per container
    usd: float
    gpu_type: str  # the GPU type that ran the most seconds ("" for CPU only or nothing yet)
    gpu_count: int  # GPUs per container of that capacity
    capacity: tuple[CapacityUsage, ...]  # one entry per kind of capacity the call ran on
    lost_attempts: int
    lost_seconds: float

    @classmethod
    def _from_proto(cls, msg: Any) -> "CallUsage":
        return cls(
            call_id=msg.call_id, num_inputs=int(msg.num_inputs), num_finished=int(msg.num_finished),
            num_running=int(msg.num_running), attempts=int(msg.attempts), seconds=msg.seconds,
            gpu_seconds=msg.gpu_seconds, usd=msg.usd, gpu_type=msg.gpu_type, gpu_count=int(msg.gpu_count),
            capacity=tuple(
                CapacityUsage(c.gpu_type, int(c.gpu_count), c.price_per_hour, int(c.attempts), c.seconds, c.gpu_seconds, c.usd)
                for c in msg.capacity
            ),
            lost_attempts=int(msg.lost_attempts), lost_seconds=msg.lost_seconds,
        )


class FunctionCall:
    """A handle on a started call (from `spawn`/`spawn_map`, or `FunctionCall.from_id`)."""

    def __init__(self, call_id: str, *, client: "Client | None" = None, kind: int = 0, printer: Any = None):
        self.object_id = call_id
        self._client = client
        self._kind = kind
        self._printer = printer

    @classmethod
    def from_id(cls, call_id: str, client: "Client | None" = None) -> "FunctionCall":
        """A handle on the call with this id (e.g. saved from `spawn().object_id`)."""
        if not call_id:
            raise InvalidError("FunctionCall.from_id needs a call id")
        return cls(call_id, client=client)

    def _client_now(self) -> "Client":
        if self._client is None:
            from ._functions import _container

            self._client = _container.client if is_container() and _container.client else _client.get_client()
        return _client.current(self._client)

    def _call_kind(self, client: "Client") -> int:
        if not self._kind:
            info = client.call("FunctionCallGetInfo", client.pb.FunctionCallGetInfoRequest(call_id=self.object_id))
            self._kind = info.kind
        return self._kind

    @blocking
    def get(self, timeout: float | None = None) -> Any:
        """Wait for the result (a list in input order for a `spawn_map` call).

        Raises OutputExpiredError when it is not done within `timeout` seconds, and the
        function's own exception when it failed.
        """
        client = self._client_now()
        ser = _serialization()
        if self._call_kind(client) == _CALL_KIND_MAP:
            return self._get_map(client, ser, timeout)
        output = _wait_output(client, self.object_id, timeout)
        if self._printer is not None and output.log_seq:
            self._printer.wait_for(output.log_seq, LOG_WAIT_S)
        return ser.decode_result(output.result, blobs=client)

    def _get_map(self, client: "Client", ser: Any, timeout: float | None) -> list[Any]:
        deadline = None if timeout is None else time.monotonic() + timeout

        def get_outputs(cursor: int, wait: float) -> Any:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise OutputExpiredError(f"call {self.object_id} was not done after {timeout:g} s")
                wait = min(wait, left)
            return _get_outputs(client, self.object_id, cursor, wait)

        wait_logs = (lambda seq: self._printer.wait_for(seq, LOG_WAIT_S)) if self._printer is not None else None
        outputs = iter_outputs(get_outputs, feeder=None, total=None, ordered=True, wait_logs=wait_logs)
        return [ser.decode_result(o.result, blobs=client) for o in outputs]

    @blocking(iterator=True)
    def get_gen(self) -> Iterator[Any]:
        """Yield the items of a spawned generator call as they arrive (a failure is raised after
        the items produced before it); leaving early cancels the call."""
        client = self._client_now()
        printer = self._printer
        wait_logs = (lambda seq: printer.wait_for(seq, LOG_WAIT_S)) if printer is not None else (lambda seq: None)
        return iter_generator(client, self.object_id, wait_logs)

    @blocking
    def get_usage(self) -> CallUsage:
        """What the call used so far: container seconds, GPU type and count, GPU-seconds and USD.

        Final once `.get()` has returned (see CallUsage). Raises NotFoundError for an unknown
        call, one of another workspace, or one whose outputs expired.
        """
        client = self._client_now()
        usage = client.call("FunctionCallGetUsage", client.pb.FunctionCallGetUsageRequest(call_id=self.object_id))
        return CallUsage._from_proto(usage)

    @blocking
    def cancel(self, terminate_containers: bool = False) -> None:
        """Cancel the call: inputs not started never run; running ones are stopped where possible."""
        client = self._client_now()
        req = client.pb.FunctionCallCancelRequest(call_id=self.object_id, terminate_containers=terminate_containers)
        client.call("FunctionCallCancel", req, timeout=30.0)

    @blocking(static=True, name="FunctionCall.gather")
    def gather(*function_calls: "FunctionCall") -> list[Any]:
        """Wait for every call and return their results in order; if one fails, cancel the rest."""
        results = []
        try:
            for call in function_calls:
                results.append(FunctionCall.get._fn(call))
        except BaseException:
            for call in function_calls[len(results) + 1 :]:
                try:
                    FunctionCall.cancel._fn(call)
                except Exception:  # noqa: BLE001
                    pass
            raise
        return results

    def __reduce__(self):
        return (FunctionCall, (self.object_id,), {"_kind": self._kind})

    def __repr__(self) -> str:
        return f"FunctionCall({self.object_id!r})"
