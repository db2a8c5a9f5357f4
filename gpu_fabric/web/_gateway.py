"""The HTTP gateway: one ASGI app (uvicorn, on the control plane's event loop) for endpoints, dashboard and metrics."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import json
import logging
import os
import socket
from urllib.parse import parse_qs, quote

from gpu_fabric.proto import web_pb2, web_pb2_grpc

from ._dashboard import Dashboard
from ._endpoints import PATH_PREFIX, EndpointIndex, EndpointProxy, read_body, BodyTooLarge
from ._history import CallHistory
from ._metrics import render
from ._page import DASHBOARD_PAGE, LOGIN_PAGE

log = logging.getLogger("gpu_fabric.web")

COOKIE = "gpufabric_token"
DEFAULT_MAX_BODY = 64 * 1024 * 1024


class WebGateway:
    """Serves web endpoints at {url}/ep/LABEL, the dashboard at {url}/ and metrics at {url}/metrics.

    `plane`: the ControlPlane (its engine, token and data dir). `port` 0 picks a free one.
    `public_url`: the base URL to hand out when clients reach the gateway through a proxy.
    """

    def __init__(self, plane, *, host: str = "127.0.0.1", port: int = 0, max_body_bytes: int = DEFAULT_MAX_BODY,
                 public_url: str | None = None):
        self.engine = plane.engine
        self.token = plane.token
        # The same certificate as the gRPC API (`serve --tls-cert/--tls-key`): HTTPS then.
        self.tls_paths = getattr(plane, "tls_paths", None)
        self.host, self.port = host, port
        self.public_url = public_url.rstrip("/") if public_url else None
        self.history = CallHistory(self.engine)
        self.index = EndpointIndex(self.engine, self.token)
        self.responses: collections.Counter = collections.Counter()
        self.proxy = EndpointProxy(self.engine, self.index, fabric_token=self.token, blob_dir=os.path.join(plane.data_dir, "blobs"),
                                   max_body_bytes=max_body_bytes, stats=self.responses)
        self.dashboard = Dashboard(self.engine, self.history, self.index, self.endpoint_url)
        self._server = None
        self._task: asyncio.Task | None = None
        self._token_digest = hashlib.sha256(self.token.encode()).digest()

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """The gateway's base URL (no trailing slash)."""
        if self.public_url:
            return self.public_url
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"{'https' if self.tls_paths else 'http'}://{host}:{self.port}"

    def endpoint_url(self, label: str) -> str:
        return f"{self.url}{PATH_PREFIX}{label}"

    def add_to_server(self, grpc_server) -> None:
        """Register the FabricWeb gRPC service (endpoint URLs for the SDK's get_web_url)."""
        web_pb2_grpc.add_FabricWebServicer_to_server(_WebServicer(self), grpc_server)

    async def start(self) -> None:
        import uvicorn

        class _Server(uvicorn.Server):
            def capture_signals(self):  # the control plane owns SIGTERM/SIGINT
                return contextlib.nullcontext()

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OSError(f"the web gateway cannot listen on {self.host}:{self.port} ({exc.strerror}); pick another --http-port") from None
        sock.listen(1024)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        tls = {"ssl_certfile": self.tls_paths[0], "ssl_keyfile": self.tls_paths[1]} if self.tls_paths else {}
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="off", interface="asgi3",
                                timeout_graceful_shutdown=2, log_level="warning", **tls)
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError("the web gateway stopped while starting")
            await asyncio.sleep(0.01)
        log.info("web gateway listening at %s", self.url)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(self._task, 5.0)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - stopping regardless
                self._task.cancel()

    # ------------------------------------------------------------------ auth
    def _token_ok(self, value: str) -> bool:
        return bool(value) and hmac.compare_digest(hashlib.sha256(value.encode()).digest(), self._token_digest)

    def authorized(self, scope) -> bool:
        """The fabric token as a bearer header, or the cookie the login page sets."""
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer " and self._token_ok(value[7:].decode("latin-1").strip()):
                return True
            if name == b"cookie":
                for part in value.decode("latin-1").split(";"):
                    key, _, token = part.strip().partition("=")
                    if key == COOKIE and self._token_ok(token):
                        return True
        return False

    # ------------------------------------------------------------------ routing
    async def app(self, scope, receive, send) -> None:
        """The ASGI app: /ep/LABEL/... endpoints, / dashboard, /login, /api/*, /metrics, /healthz."""
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path.startswith(PATH_PREFIX):
            label = path[len(PATH_PREFIX):].split("/", 1)[0]
            await self.proxy(scope, receive, send, label)
            return
        if path == "/healthz":
            await _respond(send, 200, b"ok\n", "text/plain")
            return
        if path == "/login":
            await self._login(scope, receive, send)
            return
        if path == "/logout":
            await _respond(send, 303, b"", "text/plain", [(b"location", b"/login"), (b"set-cookie", f"{COOKIE}=; Max-Age=0; Path=/".encode())])
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if path == "/" and self._token_ok((query.get("token") or [""])[0]):
            # A link with ?token= signs in once, then the token leaves the address bar.
            await _respond(send, 303, b"", "text/plain", [(b"location", b"/"), _cookie(self.token)])
            return
        if not self.authorized(scope):
            if path.startswith("/api/") or path == "/metrics":
                await _respond(send, 401, b'{"error": "missing or invalid token"}', "application/json", [(b"www-authenticate", b"Bearer")])
            else:
                await _respond(send, 200, LOGIN_PAGE.replace("{error}", "").encode(), "text/html; charset=utf-8")
            return
        if path == "/":
            await _respond(send, 200, DASHBOARD_PAGE.encode(), "text/html; charset=utf-8")
        elif path == "/metrics":
            await _respond(send, 200, render(self.engine, self.history, self.responses).encode(), "text/plain; version=0.0.4")
        elif path == "/api/state":
            await _json(send, self.dashboard.state())
        elif path.startswith("/api/calls/") and path.endswith("/logs"):
            logs = self.dashboard.call_logs(path[len("/api/calls/"):-len("/logs")])
            await (_json(send, logs) if logs is not None else _json(send, {"error": "unknown call"}, 404))
        else:
            await _respond(send, 404, b"not found\n", "text/plain")

    async def _login(self, scope, receive, send) -> None:
        if scope["method"] != "POST":
            await _respond(send, 200, LOGIN_PAGE.replace("{error}", "").encode(), "text/html; charset=utf-8")
            return
        try:
            form = parse_qs((await read_body(scope, receive, 64 * 1024)).decode("latin-1"))
        except (BodyTooLarge, ConnectionResetError):
            await _respond(send, 413, b"", "text/plain")
            return
        token = (form.get("token") or [""])[0].strip()
        if not self._token_ok(token):
            await _respond(send, 401, LOGIN_PAGE.replace("{error}", "<p style='color:#c0262d'>That is not this fabric's token.</p>").encode(), "text/html; charset=utf-8")
            return
        await _respond(send, 303, b"", "text/plain", [(b"location", b"/"), _cookie(token)])


def _cookie(token: str) -> tuple[bytes, bytes]:
    return (b"set-cookie", f"{COOKIE}={quote(token)}; Path=/; HttpOnly; SameSite=Strict".encode())


async def _respond(send, status: int, body: bytes, content_type: str, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def _json(send, data, status: int = 200) -> None:
    await _respond(send, status, json.dumps(data).encode(), "application/json")


class _WebServicer(web_pb2_grpc.FabricWebServicer):
    """FabricWeb: where an endpoint is served (and its token, to callers holding the fabric's)."""

    def __init__(self, gateway: WebGateway):
        self.gateway = gateway

    async def WebEndpointInfo(self, request, context):
        ep = self.gateway.index.for_function(request.function_id, request.method_name)
        if ep is None:
            return web_pb2.WebEndpointInfoResponse()
        token = self.gateway.index.token_for(ep.label) if ep.requires_token else ""
        return web_pb2.WebEndpointInfoResponse(url=self.gateway.endpoint_url(ep.label), label=ep.label, token=token)
