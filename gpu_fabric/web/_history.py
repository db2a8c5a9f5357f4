"""Recent calls and finished-input counters, fed by the engine as inputs finish."""
from __future__ import annotations

import collections
from dataclasses import asdict, dataclass, field

from gpu_fabric.proto import client_pb2, common_pb2

STATUS_NAMES = {
    common_pb2.RESULT_STATUS_SUCCESS: "success", common_pb2.RESULT_STATUS_FAILURE: "failure",
    common_pb2.RESULT_STATUS_TIMEOUT: "timeout", common_pb2.RESULT_STATUS_INIT_FAILURE: "init_failure",
    common_pb2.RESULT_STATUS_TERMINATED: "cancelled", common_pb2.RESULT_STATUS_INTERNAL_FAILURE: "internal_failure",
}
KIND_NAMES = {client_pb2.CALL_KIND_REMOTE: "remote", client_pb2.CALL_KIND_MAP: "map", client_pb2.CALL_KIND_SPAWN: "spawn",
              client_pb2.CALL_KIND_SCHEDULED: "scheduled"}


@dataclass
class CallSummary:
    """What the dashboard shows of one call."""

    call_id: str
    app_id: str
    app: str
    function: str
    kind: str
    created_at: float
    finished_at: float = 0.0
    status: str = "running"
    num_inputs: int = 0
    num_done: int = 0
    retries: int = 0
    error: str = ""
    by_status: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["duration_s"] = (self.finished_at - self.created_at) if self.finished_at else None
        return data


class CallHistory:
    """The last `keep` calls that finished an input, and counters by status since the start."""

    def __init__(self, engine, keep: int = 500):
        self.engine = engine
        self.calls: collections.OrderedDict[str, CallSummary] = collections.OrderedDict()
        self.keep = keep
        self.inputs_by_status: collections.Counter = collections.Counter()
        self.calls_by_status: collections.Counter = collections.Counter()
        engine.finish_observers.append(self.input_finished)

    def input_finished(self, rec, result, call) -> None:
        """Engine observer: one input of `call` ended with `result`."""
        status = STATUS_NAMES.get(result.status, "unknown")
        self.inputs_by_status[status] += 1
        summary = self.calls.get(call.call_id)
        if summary is None:
            fn = self.engine.functions.get(call.function_id)
            app = self.engine.apps.get(fn.app_id) if fn else None
            summary = CallSummary(call.call_id, fn.app_id if fn else "", app.name if app else "", fn.name if fn else "",
                                  KIND_NAMES.get(call.kind, "?"), call.created_at)
            self.calls[call.call_id] = summary
            while len(self.calls) > self.keep:
                self.calls.popitem(last=False)
        summary.num_inputs, summary.num_done = call.num_inputs, call.num_done
        summary.retries += max(0, rec.attempts - 1)
        summary.by_status[status] = summary.by_status.get(status, 0) + 1
        if status != "success" and not summary.error:
            summary.error = (result.exception or status).strip().splitlines()[-1][:300] if (result.exception or status).strip() else status
        if call.closed and call.num_done >= call.num_inputs:
            summary.finished_at = self.engine.clock()
            summary.status = "success" if set(summary.by_status) == {"success"} else next(s for s in summary.by_status if s != "success")
            self.calls_by_status[summary.status] += 1

    def recent(self, limit: int = 200) -> list[dict]:
        """Calls newest first: those still running (from the engine), then finished ones."""
        out = {}
        for call in self.engine.calls.values():
            if call.pending and call.call_id not in self.calls:
                fn = self.engine.functions.get(call.function_id)
                app = self.engine.apps.get(fn.app_id) if fn else None
                running = any(self.engine.inputs.get(i) is not None and self.engine.inputs[i].container_id for i in call.pending)
                out[call.call_id] = CallSummary(call.call_id, fn.app_id if fn else "", app.name if app else "",
                                                fn.name if fn else "", KIND_NAMES.get(call.kind, "?"), call.created_at,
                                                status="running" if running else "queued", num_inputs=call.num_inputs,
                                                num_done=call.num_done).as_dict()
        for summary in self.calls.values():
            out[summary.call_id] = summary.as_dict()
        return sorted(out.values(), key=lambda c: -c["created_at"])[:limit]
