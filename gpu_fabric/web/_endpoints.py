"""Web endpoints on the gateway: which label is which function, and one request as one input."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import pickle
import re
import time
import uuid
from dataclasses import dataclass

from gpu_fabric.proto import client_pb2, common_pb2

from ..control_plane._outcomes import FabricError

log = logging.getLogger("gpu_fabric.web")

# Must match core_executor._runtime._web.WEB_PREFIX (the gateway never imports the runtime).
WEB_PREFIX = "__web__"
PATH_PREFIX = "/ep/"
INLINE_LIMIT = 2 * 1024 * 1024
# How long a request may wait for its container to start, on top of the function's timeout.
START_GRACE_S = 300.0
# How much of a body over the limit is read and dropped before the 413 (see read_body).
DISCARD_BYTES = 64 * 1024 * 1024
DISCARD_S = 10.0


@dataclass
class Endpoint:
    """One served web endpoint."""

    label: str
    function_id: str
    method_name: str  # "" for a function, the method's name for a class
    config: dict
    app_name: str
    function_name: str
    created_at: float

    @property
    def requires_token(self) -> bool:
        return bool(self.config.get("requires_proxy_auth"))


def slug(text: str) -> str:
    """A URL label from names: lowercase letters, digits and single dashes, at most 63."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", text.lower())).strip("-")[:63].rstrip("-") or "endpoint"


class EndpointIndex:
    """Labels of the web endpoints of live apps; ephemeral apps' labels end in -dev (as Modal's)."""

    def __init__(self, engine, token: str):
        self.engine = engine
        self._key = hashlib.sha256(("web-endpoint-tokens:" + token).encode()).digest()
        self._parsed: dict[str, tuple[str, dict]] = {}

    def _config(self, fn) -> dict:
        raw = fn.spec.webhook_config_json
        cached = self._parsed.get(fn.function_id)
        if cached is None or cached[0] != raw:
            try:
                cached = (raw, json.loads(raw))
            except ValueError:
                cached = (raw, {})
            self._parsed[fn.function_id] = cached
        return cached[1]

    def endpoints(self) -> dict[str, Endpoint]:
        """Every served endpoint by label; when two apps claim a label the newest app wins."""
        out: dict[str, Endpoint] = {}
        for fn in self.engine.functions.values():
            if not fn.spec.webhook_config_json or fn.bound:
                continue
            app = self.engine.apps.get(fn.app_id)
            if app is None or app.state == client_pb2.APP_STATE_STOPPED or app.function_ids.get(fn.name) != fn.function_id:
                continue
            config = self._config(fn)
            methods = config.get("methods") or {"": config}
            for method, cfg in methods.items():
                if not isinstance(cfg, dict):
                    continue
                label = cfg.get("label") or slug(f"{app.name}-{fn.name}" + (f"-{method}" if method else ""))
                if app.kind == client_pb2.APP_KIND_EPHEMERAL:
                    label = slug(label[:59]) + "-dev"
                ep = Endpoint(label, fn.function_id, method, cfg, app.name, fn.name, app.created_at)
                if label not in out or out[label].created_at <= ep.created_at:
                    out[label] = ep
        return out

    def find(self, label: str) -> Endpoint | None:
        return self.endpoints().get(label)

    def for_function(self, function_id: str, method_name: str = "") -> Endpoint | None:
        """The endpoint a function (or one method of a class) serves."""
        found = [ep for ep in self.endpoints().values() if ep.function_id == function_id]
        for ep in found:
            if ep.method_name == method_name:
                return ep
        return found[0] if len(found) == 1 and not method_name else None

    def token_for(self, label: str) -> str:
        """The endpoint's token: derived from the fabric's, so it is stable across restarts."""
        return hmac.new(self._key, label.encode(), hashlib.sha256).hexdigest()[:40]

    def token_ok(self, ep: Endpoint, headers: dict[bytes, bytes], fabric_token: str) -> bool:
        given = headers.get(b"x-fabric-token", b"").decode("latin-1")
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return bool(given) and (hmac.compare_digest(given, self.token_for(ep.label)) or hmac.compare_digest(given, fabric_token))


def _decode(result, blob_dir: str):
    data = result.data
    if result.data_blob_id:
        with open(os.path.join(blob_dir, result.data_blob_id), "rb") as f:
            data = f.read()
    return pickle.loads(data) if data else None


async def _send_text(send, status: int, text: str, headers: list | None = None) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    """The request body is over the gateway's limit."""


async def read_body(scope, receive, limit: int) -> bytes:
    """The whole request body; BodyTooLarge once it is known to be over `limit`.

    A body over the limit is still read and dropped, up to DISCARD_BYTES more, before BodyTooLarge:
    a client that writes its whole request before reading the answer (urllib, requests) then gets
    the 413 instead of a broken pipe from a connection closed under it (nginx's lingering close).
    """
    for name, value in scope.get("headers", []):
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            if int(value) <= limit + DISCARD_BYTES:
                await _discard_body(receive, DISCARD_BYTES)
            raise BodyTooLarge()
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            if message.get("more_body", False):
                await _discard_body(receive, limit + DISCARD_BYTES - size)
            raise BodyTooLarge()
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def _discard_body(receive, budget: int) -> None:
    """Reads and drops the rest of the request body: at most `budget` bytes, for DISCARD_S seconds."""
    async def drain(budget: int) -> None:
        while budget >= 0:
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                return
            budget -= len(message.get("body", b""))

    try:
        await asyncio.wait_for(drain(budget), DISCARD_S)
    except asyncio.TimeoutError:
        pass


class EndpointProxy:
    """Turns one HTTP request into one input of the endpoint's function and streams its items back."""

    def __init__(self, engine, index: EndpointIndex, *, fabric_token: str, blob_dir: str, max_body_bytes: int, stats):
        self.engine = engine
        self.index = index
        self.fabric_token = fabric_token
        self.blob_dir = blob_dir
        self.max_body_bytes = max_body_bytes
        self.stats = stats  # collections.Counter of responses by status code (metrics)

    async def __call__(self, scope, receive, send, label: str) -> None:
        status = await self._serve(scope, receive, send, label)
        self.stats[status] += 1

    async def _serve(self, scope, receive, send, label: str) -> int:
        ep = self.index.find(label)
        if ep is None:
            await _send_text(send, 404, f"no web endpoint {label!r} is served here\n")
            return 404
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if ep.requires_token and not self.index.token_ok(ep, headers, self.fabric_token):
            await _send_text(send, 401, "this endpoint needs its token: Authorization: Bearer TOKEN\n", [(b"www-authenticate", b"Bearer")])
            return 401
        try:
            body = await read_body(scope, receive, self.max_body_bytes)
        except BodyTooLarge:
            await _send_text(send, 413, f"request body is over the {self.max_body_bytes:,}-byte limit\n")
            return 413
        except ConnectionResetError:
            return 499
        root = PATH_PREFIX + label
        # The endpoint's URL without a trailing slash is the app's "/" (no redirect round trip).
        path = scope["path"] + "/" if scope["path"] == root else scope["path"]
        request = {
            "method": scope["method"], "path": path, "root_path": root if path.startswith(root + "/") else "",
            "query_string": scope.get("query_string", b""), "http_version": scope.get("http_version", "1.1"),
            "scheme": scope.get("scheme", "http"), "client": scope.get("client"), "server": scope.get("server"),
            "headers": [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"x-fabric-token"], "body": body,
        }
        try:
            call = self._submit(ep, request)
        except FabricError as exc:
            await _send_text(send, 503, f"the endpoint cannot take requests now: {exc}\n")
            return 503
        return await self._stream(ep, call, receive, send)

    def _submit(self, ep: Endpoint, request: dict):
        data = pickle.dumps(((request,), {}), protocol=5)
        inp = common_pb2.FunctionInput(method_name=WEB_PREFIX + ep.method_name)
        if len(data) > INLINE_LIMIT:
            blob_id = "bl-" + uuid.uuid4().hex
            with open(os.path.join(self.blob_dir, blob_id), "wb") as f:
                f.write(data)
            inp.args_blob_id = blob_id
        else:
            inp.args = data
        call = self.engine.create_call(ep.function_id, client_pb2.CALL_KIND_REMOTE)
        self.engine.put_inputs(call, [inp], True, new_call=True)
        return call

    async def _stream(self, ep: Endpoint, call, receive, send) -> int:
        fn = self.engine.functions[ep.function_id]
        deadline = time.monotonic() + (fn.spec.timeout_s or self.engine.default_timeout_s) + START_GRACE_S
        disconnected = asyncio.ensure_future(receive())  # resolves with http.disconnect when the client leaves
        cursor, status, done = 0, 0, False
        try:
            while not done:
                outputs = self.engine.outputs_after(call, cursor, 256)
                if not outputs:
                    if disconnected.done() or time.monotonic() > deadline:
                        if not status and not disconnected.done():
                            await _send_text(send, 504, "the endpoint did not answer in time\n")
                            status = 504
                        break
                    await call.notifier.wait(min(1.0, deadline - time.monotonic()))
                    continue
                for output in outputs:
                    cursor = output.seq
                    result = output.result
                    if result.status != common_pb2.RESULT_STATUS_SUCCESS:
                        self._log_failure(fn, call, result)
                        if not status:
                            await _send_text(send, 500, "Internal Server Error")
                            status = 500
                        else:
                            await send({"type": "http.response.body", "body": b""})
                        done = True
                        break
                    item = _decode(result, self.blob_dir)
                    if isinstance(item, dict) and item.get("type") == "start" and not status:
                        status = item["status"]
                        await send({"type": "http.response.start", "status": status, "headers": item["headers"]})
                    elif isinstance(item, (bytes, bytearray)) and status:
                        await send({"type": "http.response.body", "body": bytes(item), "more_body": True})
                    elif (isinstance(item, dict) and item.get("type") == "end") or result.gen_done:
                        if not status:
                            self.engine.system_log(fn.app_id, f"{fn.name}: web endpoint ended without a response", fn.name)
                            await _send_text(send, 500, "Internal Server Error")
                            status = 500
                        else:
                            await send({"type": "http.response.body", "body": b""})
                        done = True
                        break
                self.engine.ack_outputs(call, cursor)
        finally:
            disconnected.cancel()
            if call.pending and not done:
                self.engine.cancel_call(call, terminate_containers=False)  # the client went away
            self.engine.mark_read(call)
        return status or 499

    def _log_failure(self, fn, call, result) -> None:
        # The client gets a bare 500; the app's log (under the request's call) gets what happened.
        detail = (result.traceback or "").rstrip() or result.exception
        entry = common_pb2.LogEntry(stream=common_pb2.LOG_STREAM_SYSTEM, function_name=fn.name, call_id=call.call_id,
                                    data=f"{fn.name}: web request failed: {result.exception}\n{detail}\n")
        self.engine.append_logs(fn.app_id, [entry])
