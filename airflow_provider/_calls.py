"""What the provider asks the fabric about a call: status, logs, deployed functions, cancel.

Everything here goes through `core_executor.Client`, the SDK's public connection object (its
`call`/`stub`/`pb`), in one place, so the operator, trigger and sensor stay free of wire details.
"""
from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import core_executor as fabric
from core_executor.exception import NotFoundError

__all__ = [
    "CallStatus",
    "call_status",
    "wait_call",
    "cancel_call",
    "call_log_lines",
    "deployed_functions",
    "fabric_env",
]

# FunctionResult.status values and CallKind values of the fabric's protocol.
RESULT_SUCCESS = 1
CALL_KIND_MAP = 2
# Extra gRPC deadline over a server-side long-poll.
_RPC_SLACK_S = 30.0
# Statuses a call can be in, as the operator and trigger see it.
RUNNING, SUCCEEDED, FAILED, CANCELLED, EXPIRED = "running", "succeeded", "failed", "cancelled", "expired"


@dataclass(frozen=True)
class CallStatus:
    """Where a call stands: `state` is one of running, succeeded, failed, cancelled, expired."""

    call_id: str
    state: str
    num_inputs: int = 0
    num_done: int = 0
    function_name: str = ""
    app_id: str = ""
    message: str = ""
    is_map: bool = False

    @property
    def finished(self) -> bool:
        """True once the call will not change any more."""
        return self.state != RUNNING


def _info(client: fabric.Client, call_id: str) -> Any:
    return client.call("FunctionCallGetInfo", client.pb.FunctionCallGetInfoRequest(call_id=call_id), timeout=30.0)


def _outputs(client: fabric.Client, call_id: str, wait_s: float, max_items: int) -> Any:
    # cursor=0 acknowledges nothing: the outputs stay for the task that fetches the result.
    req = client.pb.FunctionGetOutputsRequest(call_id=call_id, cursor=0, timeout_s=wait_s, max_items=max_items)
    return client.call("FunctionGetOutputs", req, timeout=wait_s + _RPC_SLACK_S)


def call_status(client: fabric.Client, call_id: str) -> CallStatus:
    """The call's state now, without waiting (NotFoundError when the fabric has no such call)."""
    return wait_call(client, call_id, 0.0)


def wait_call(client: fabric.Client, call_id: str, wait_s: float) -> CallStatus:
    """Wait up to `wait_s` seconds for a one-input call to finish and say how it stands.

    A map call (many inputs) is not long-polled: its state is read once (callers poll it).
    Results are never decoded here: the trigger may not have the user's classes installed.
    """
    info = _info(client, call_id)
    common = dict(call_id=call_id, num_inputs=int(info.num_inputs), num_done=int(info.num_done),
                  function_name=info.function_name, app_id=info.app_id, is_map=info.kind == CALL_KIND_MAP)
    if info.cancelled:
        return CallStatus(state=CANCELLED, message=f"call {call_id} was cancelled on the fabric", **common)
    if info.kind == CALL_KIND_MAP:
        done = info.closed and info.num_done >= info.num_inputs
        if not done:
            return CallStatus(state=RUNNING, **common)
        resp = _outputs(client, call_id, 0.0, max(1, int(info.num_inputs)))
        return _judge(resp, common, many=True)
    resp = _outputs(client, call_id, wait_s, 1)
    return _judge(resp, common, many=False)


def _judge(resp: Any, common: dict, *, many: bool) -> CallStatus:
    call_id = common["call_id"]
    if resp.outputs:
        if many and len(resp.outputs) < common["num_inputs"]:
            return CallStatus(state=EXPIRED, message=f"some outputs of call {call_id} were already collected", **common)
        failed = [o for o in resp.outputs if o.result.status != RESULT_SUCCESS]
        if failed:
            text = failed[0].result.exception or "the remote function failed"
            return CallStatus(state=FAILED, message=text, **{**common, "num_done": max(common["num_done"], 1)})
        return CallStatus(state=SUCCEEDED, **common)
    if resp.cancelled:
        return CallStatus(state=CANCELLED, message=f"call {call_id} was cancelled on the fabric", **common)
    if resp.closed and resp.num_inputs and resp.num_done >= resp.num_inputs:
        return CallStatus(state=EXPIRED, message=f"the output of call {call_id} was already collected or expired", **common)
    return CallStatus(state=RUNNING, **common)


def cancel_call(client: fabric.Client, call_id: str) -> None:
    """Cancel the call and stop the containers running its inputs."""
    fabric.FunctionCall.from_id(call_id, client=client).cancel(terminate_containers=True)


def call_log_lines(client: fabric.Client, call_id: str, app_id: str = "", *, limit: int = 10_000) -> list[str]:
    """The lines the call's inputs printed, `[function] line` (the last `limit` lines)."""
    if not app_id:
        app_id = _info(client, call_id).app_id
    req = client.pb.AppGetLogsRequest(app_id=app_id, cursor=0, follow=False)
    lines: list[str] = []
    for batch in client.stub.AppGetLogs(req, metadata=client.metadata, timeout=60.0):
        for entry in batch.entries:
            if entry.call_id != call_id or not entry.data:
                continue
            prefix = f"[{entry.function_name}] " if entry.function_name else "[fabric] "
            lines.extend(prefix + line for line in entry.data.splitlines())
        if len(lines) > 2 * limit:
            del lines[:-limit]
        if batch.app_done:
            break
    return lines[-limit:]


def deployed_functions(client: fabric.Client) -> dict[str, list[str]]:
    """The fabric's deployed apps and the names of their functions."""
    resp = client.call("AppList", client.pb.AppListRequest(include_stopped=False), timeout=30.0)
    deployed = {}
    for app in resp.apps:
        if app.kind == 2:  # APP_KIND_DEPLOYED
            deployed[app.name] = sorted(app.function_names)
    return deployed


def not_deployed_message(client: fabric.Client, app_name: str, function_name: str) -> str:
    """Why `Function.from_name(app_name, function_name)` failed, listing what is deployed."""
    try:
        deployed = deployed_functions(client)
    except fabric.Error:
        deployed = None
    if deployed is None:
        return f"no deployed function {function_name!r} in app {app_name!r} on the fabric at {client.url}"
    if app_name in deployed:
        names = ", ".join(deployed[app_name]) or "none"
        return (f"app {app_name!r} has no function {function_name!r}; its deployed functions are: {names}")
    apps = ", ".join(sorted(deployed)) or "none"
    return (f"app {app_name!r} is not deployed on the fabric at {client.url} (deployed apps: {apps}); "
            f"deploy it with `gpufabric deploy FILE`")


_env_lock = threading.Lock()


@contextlib.contextmanager
def fabric_env(url: str, token: str) -> Iterator[None]:
    """Point the SDK's process-wide settings (GPUFABRIC_URL/TOKEN) at one fabric for a moment.

    `Function.from_name(...).hydrate()` looks the function up on the fabric those settings name;
    the SDK has no `client=` argument there yet.
    """
    with _env_lock:
        saved = {key: os.environ.get(key) for key in ("GPUFABRIC_URL", "GPUFABRIC_TOKEN")}
        os.environ["GPUFABRIC_URL"], os.environ["GPUFABRIC_TOKEN"] = url, token
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def lookup_function(client: fabric.Client, app_name: str, function_name: str) -> fabric.Function:
    """The deployed function, hydrated against `client`'s fabric (NotFoundError lists what is there)."""
    fn = fabric.Function.from_name(app_name, function_name)
    try:
        with fabric_env(client.url, client.token):
            fn.hydrate()
    except NotFoundError as exc:
        raise NotFoundError(not_deployed_message(client, app_name, function_name)) from exc
    return fn
