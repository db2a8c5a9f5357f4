"""Web endpoints in a container: one HTTP request per input, its response streamed back as items.

The gateway sends each request as an input whose method name starts with WEB_PREFIX and whose
one argument is a dict (method, path, root_path, query_string, headers, body, client, server,
scheme, http_version). The handler yields, in order: {"type": "start", "status", "headers"},
body chunks (bytes, at most CHUNK bytes each), and {"type": "end"}. See docs/web.md.
"""
from __future__ import annotations

import asyncio
import http.client
import inspect
import json
import socket
import sys
import time
import traceback
from typing import Any, AsyncIterator, Iterator

__all__ = ["WEB_PREFIX", "web_service", "WebService"]

WEB_PREFIX = "__web__"
CHUNK = 1024 * 1024  # items stay under the inline payload limit
_HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"proxy-connection", b"te", b"trailer"}
_SERVER_ERROR = b"Internal Server Error"


def web_service(service: Any, spec: Any) -> Any:
    """`service` wrapped to answer web requests when the function is a web endpoint, else itself."""
    if not spec.webhook_config_json:
        return service
    config = json.loads(spec.webhook_config_json)
    methods = config.get("methods") or {"": config}
    return WebService(service, methods)


def _start(status: int, headers: list) -> dict:
    return {"type": "start", "status": int(status), "headers": [(bytes(k), bytes(v)) for k, v in headers]}


def _error_items() -> Iterator[Any]:
    yield _start(500, [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(_SERVER_ERROR)).encode())])
    yield _SERVER_ERROR


def _chunks(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), CHUNK):
        yield bytes(body[start:start + CHUNK])


def _log_exception(exc: BaseException) -> None:
    # Goes to the app's log (the runtime captures stderr); the client only sees a bare 500.
    print("web endpoint raised while handling a request:", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)


class WebService:
    """The container's Service, plus a request handler per web method (built on first use)."""

    def __init__(self, service: Any, configs: dict[str, dict]):
        self._service = service
        self._configs = configs
        self._handlers: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)

    def resolve(self, method_name: str) -> Any:
        """A web input's handler, or the plain callable for other inputs (`.remote()` still works)."""
        if not method_name.startswith(WEB_PREFIX):
            return self._service.resolve(method_name)
        name = method_name[len(WEB_PREFIX):]
        handler = self._handlers.get(name)
        if handler is None:
            config = self._configs.get(name) or (self._configs.get("") if not name else None)
            if config is None:
                raise KeyError(f"{name!r} is not a web endpoint of this function")
            target = self._service.resolve(name)
            handler = self._handlers[name] = _HANDLERS[config["type"]](target, config).handle
        return handler

    def is_async(self, method_name: str, fn: Any) -> bool:
        """True for async handlers (ASGI), which run on the container's event loop."""
        if method_name.startswith(WEB_PREFIX):
            return inspect.isasyncgenfunction(fn)
        return self._service.is_async(method_name, fn)


class _Asgi:
    """Runs an ASGI app: lifespan startup once, then one http scope per request."""

    def __init__(self, target: Any, config: dict):
        self._target = target
        self._config = config
        self._app: Any = None
        self._state: dict = {}

    def _make_app(self) -> Any:
        if self._config["type"] == "fastapi":
            from fastapi import FastAPI

            docs = bool(self._config.get("docs"))
            app = FastAPI(docs_url="/docs" if docs else None, redoc_url=None, openapi_url="/openapi.json" if docs else None)
            app.add_api_route("/", self._target, methods=[self._config.get("method", "GET")])
            return app
        return self._target()

    async def _ensure_app(self) -> Any:
        if self._app is None:
            app = self._make_app()
            if inspect.isawaitable(app):
                app = await app
            await self._lifespan_startup(app)
            self._app = app
        return self._app

    async def _lifespan_startup(self, app: Any) -> None:
        messages: asyncio.Queue = asyncio.Queue()
        messages.put_nowait({"type": "lifespan.startup"})
        started = asyncio.get_running_loop().create_future()

        async def send(message: dict) -> None:
            if message["type"] == "lifespan.startup.complete" and not started.done():
                started.set_result(None)
            elif message["type"] == "lifespan.startup.failed" and not started.done():
                started.set_exception(RuntimeError(message.get("message") or "ASGI lifespan startup failed"))

        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.3"}, "state": self._state}
        # Kept running for the container's life: it waits for a shutdown that never comes.
        self._lifespan_task = asyncio.ensure_future(app(scope, messages.get, send))
        await asyncio.wait({self._lifespan_task, started}, return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            started.result()  # a failed startup fails the request (and is logged)
        # Otherwise the app does not speak lifespan (it raised or returned): nothing to start.

    async def handle(self, request: dict) -> AsyncIterator[Any]:
        """Run one request through the app, yielding the response as it is sent."""
        try:
            app = await self._ensure_app()
        except Exception as exc:  # noqa: BLE001 - a broken app answers 500, the traceback goes to the logs
            _log_exception(exc)
            for item in _error_items():
                yield item
            yield {"type": "end"}
            return
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.get("http_version", "1.1"), "method": request["method"],
            "scheme": request.get("scheme", "http"), "path": request["path"],
            "raw_path": request["path"].encode(), "query_string": request.get("query_string", b""),
            "root_path": request.get("root_path", ""), "headers": [tuple(h) for h in request["headers"]],
            "client": tuple(request["client"]) if request.get("client") else None,
            "server": tuple(request["server"]) if request.get("server") else None,
            "state": dict(self._state),
        }
        sent: asyncio.Queue = asyncio.Queue()
        finished = asyncio.Event()
        body_taken = False

        async def receive() -> dict:
            nonlocal body_taken
            if not body_taken:
                body_taken = True
                return {"type": "http.request", "body": request.get("body", b""), "more_body": False}
            await finished.wait()
            return {"type": "http.disconnect"}

        task = asyncio.ensure_future(app(scope, receive, sent.put))
        task.add_done_callback(lambda _: sent.put_nowait(None))
        started = ended = False
        try:
            while not ended:
                message = await sent.get()
                if message is None:
                    break
                if message["type"] == "http.response.start" and not started:
                    started = True
                    yield _start(message["status"], message.get("headers", []))
                elif message["type"] == "http.response.body" and started:
                    for chunk in _chunks(message.get("body", b"")):
                        yield chunk
                    ended = not message.get("more_body", False)
        finally:
            finished.set()
        if ended:
            yield {"type": "end"}  # the client has its whole response before background work ends
            await asyncio.wait({task})
        exc = task.exception() if task.done() and not task.cancelled() else None
        if exc is not None:
            _log_exception(exc)
            if not started:
                for item in _error_items():
                    yield item
        elif not started:
            print("web endpoint returned without sending a response", file=sys.stderr)
            for item in _error_items():
                yield item
        if not ended:
            yield {"type": "end"}


class _Wsgi:
    """Runs a WSGI app on the input's thread, streaming what its iterable yields."""

    def __init__(self, target: Any, config: dict):
        self._target = target
        self._app: Any = None

    def handle(self, request: dict) -> Iterator[Any]:
        """Run one request through the WSGI app."""
        import io

        if self._app is None:
            self._app = self._target()
        root = request.get("root_path", "")
        path = request["path"]
        environ = {
            "REQUEST_METHOD": request["method"], "SCRIPT_NAME": root,
            "PATH_INFO": path[len(root):] if path.startswith(root) else path,
            "QUERY_STRING": request.get("query_string", b"").decode("latin-1"),
            "SERVER_NAME": (request.get("server") or ("localhost", 80))[0],
            "SERVER_PORT": str((request.get("server") or ("localhost", 80))[1]),
            "SERVER_PROTOCOL": f"HTTP/{request.get('http_version', '1.1')}",
            "REMOTE_ADDR": (request.get("client") or ("", 0))[0],
            "wsgi.version": (1, 0), "wsgi.url_scheme": request.get("scheme", "http"),
            "wsgi.input": io.BytesIO(request.get("body", b"")), "wsgi.errors": sys.stderr,
            "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        }
        for name, value in request["headers"]:
            key = name.decode("latin-1").upper().replace("-", "_")
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[key] = value.decode("latin-1")
            else:
                key = "HTTP_" + key
                environ[key] = environ[key] + "," + value.decode("latin-1") if key in environ else value.decode("latin-1")
        head: list = []

        def start_response(status: str, headers: list, exc_info: Any = None) -> Any:
            head[:] = [int(status.split()[0]), [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]]
            return pending.append

        pending: list = []
        started = False
        try:
            result = self._app(environ, start_response)
            try:
                for chunk in result:
                    if not started and head:
                        started = True
                        yield _start(*head)
                    for data in pending + [chunk]:
                        yield from _chunks(data)
                    pending.clear()
                if not started:
                    started = True
                    yield _start(*(head or [500, []]))
                    for data in pending:
                        yield from _chunks(data)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception as exc:  # noqa: BLE001 - 500 to the client, traceback to the logs
            _log_exception(exc)
            if not started:
                yield from _error_items()
        yield {"type": "end"}


class _WebServer:
    """Starts the user's server once, then forwards each request to it over loopback HTTP."""

    def __init__(self, target: Any, config: dict):
        self._target = target
        self._port = int(config["port"])
        self._startup_timeout = float(config.get("startup_timeout", 5.0))
        self._started = False

    def _start(self) -> None:
        self._target()
        deadline = time.monotonic() + self._startup_timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self._port), timeout=1.0).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"nothing listens on port {self._port} {self._startup_timeout:g}s after the web_server function returned") from None
                time.sleep(0.05)
        self._started = True

    def handle(self, request: dict) -> Iterator[Any]:
        """Forward one request to the server and stream its response back."""
        try:
            if not self._started:
                self._start()
            root, path = request.get("root_path", ""), request["path"]
            target = (path[len(root):] if path.startswith(root) else path) or "/"
            query = request.get("query_string", b"").decode("latin-1")
            conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=300)
            conn.putrequest(request["method"], target + ("?" + query if query else ""), skip_host=True, skip_accept_encoding=True)
            for name, value in request["headers"]:
                if name.lower() not in _HOP_BY_HOP and name.lower() != b"content-length":
                    conn.putheader(name.decode("latin-1"), value.decode("latin-1"))
            conn.putheader("X-Forwarded-Prefix", root)
            body = request.get("body", b"")
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
        except Exception as exc:  # noqa: BLE001
            _log_exception(exc)
            yield from _error_items()
            yield {"type": "end"}
            return
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.getheaders() if k.lower().encode() not in _HOP_BY_HOP]
        yield _start(response.status, headers)
        try:
            while True:
                data = response.read1(CHUNK)
                if not data:
                    break
                yield data
        finally:
            conn.close()
        yield {"type": "end"}


_HANDLERS = {"fastapi": _Asgi, "asgi": _Asgi, "wsgi": _Wsgi, "web_server": _WebServer}
