"""Web endpoint decorators (fastapi_endpoint, asgi_app, wsgi_app, web_server) and their URLs."""
from __future__ import annotations

import json
import re
from typing import Any, Callable

from .exception import InvalidError

__all__ = ["fastapi_endpoint", "asgi_app", "wsgi_app", "web_server", "web_config_json", "get_web_url", "get_web_token"]

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def _check_label(label: Any) -> str:
    if label is None:
        return ""
    if not isinstance(label, str) or not _LABEL.match(label):
        raise InvalidError(
            f"label {label!r} must be 1 to 63 lowercase letters, digits or dashes, starting and ending with a letter or digit"
        )
    return label


def _mark(kind: str, decorator: str, **config: Any) -> Callable[[Callable], Any]:
    from ._partial import PartialFunction, _mark as mark_partial

    config = {"type": kind, **config}

    def decorate(f: Any) -> Any:
        if isinstance(f, PartialFunction) and f.web_config:
            raise InvalidError(f"@fabric.{decorator}() on a function that is already a web endpoint; keep one")
        # "method" too: on a class, a web endpoint is one of the methods its containers serve.
        partial = mark_partial("web", f, decorator, web_config=config)
        return partial.merged({"method"})

    return decorate


def _no_bare(arg: Any, name: str) -> None:
    if arg is not None:
        raise InvalidError(f"use @fabric.{name}() with parentheses")


def fastapi_endpoint(_warn_parentheses_missing: Any = None, *, method: str = "GET", label: str | None = None,
                     docs: bool = False, requires_proxy_auth: bool = False, custom_domains: Any = None) -> Callable:
    """Serve the function as a FastAPI route at its endpoint's URL (below `@app.function()`).

    Query parameters and a JSON body become the function's arguments, as in FastAPI.
    method: the HTTP method of the route. label: the last part of the URL (default: app and
    function names). docs: also serve /docs and /openapi.json. requires_proxy_auth: requests must
    carry the endpoint's token (`Function.get_web_token()`), else they get 401.
    """
    _no_bare(_warn_parentheses_missing, "fastapi_endpoint")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        raise InvalidError(f"method must be one of {', '.join(_METHODS)}, got {method!r}")
    del custom_domains  # accepted for Modal code; the gateway serves paths, not domains
    return _mark("fastapi", "fastapi_endpoint", method=method.upper(), label=_check_label(label), docs=bool(docs),
                 requires_proxy_auth=bool(requires_proxy_auth))


def asgi_app(_warn_parentheses_missing: Any = None, *, label: str | None = None, requires_proxy_auth: bool = False,
             custom_domains: Any = None) -> Callable:
    """Serve the ASGI app the function returns (FastAPI, Starlette, ...) at its endpoint's URL.

    The function runs once per container; the app gets every request under the endpoint's URL.
    """
    _no_bare(_warn_parentheses_missing, "asgi_app")
    del custom_domains
    return _mark("asgi", "asgi_app", label=_check_label(label), requires_proxy_auth=bool(requires_proxy_auth))


def wsgi_app(_warn_parentheses_missing: Any = None, *, label: str | None = None, requires_proxy_auth: bool = False,
             custom_domains: Any = None) -> Callable:
    """Serve the WSGI app the function returns (Flask, Django, ...) at its endpoint's URL."""
    _no_bare(_warn_parentheses_missing, "wsgi_app")
    del custom_domains
    return _mark("wsgi", "wsgi_app", label=_check_label(label), requires_proxy_auth=bool(requires_proxy_auth))


def web_server(port: int, *, startup_timeout: float = 5.0, label: str | None = None, requires_proxy_auth: bool = False,
               custom_domains: Any = None) -> Callable:
    """Proxy the endpoint's URL to a server the function starts on `port` inside the container.

    The function must start the server (a thread or subprocess) and return; requests wait until
    the port accepts connections, for up to `startup_timeout` seconds.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise InvalidError(f"web_server needs the port its server listens on (1 to 65535), got {port!r}")
    if isinstance(startup_timeout, bool) or not isinstance(startup_timeout, (int, float)) or startup_timeout <= 0:
        raise InvalidError(f"startup_timeout must be a positive number of seconds, got {startup_timeout!r}")
    del custom_domains
    return _mark("web_server", "web_server", port=port, startup_timeout=float(startup_timeout),
                 label=_check_label(label), requires_proxy_auth=bool(requires_proxy_auth))


def web_config_json(config: dict | None = None, methods: dict[str, dict] | None = None) -> str:
    """FunctionSpec.webhook_config_json: one endpoint for a function, or {"methods": {...}} for a class."""
    if methods:
        return json.dumps({"methods": methods}, sort_keys=True)
    return json.dumps(config, sort_keys=True) if config else ""


def _info(function: Any) -> Any:
    from gpu_fabric.proto import web_pb2, web_pb2_grpc

    client = function._ready()
    stub = web_pb2_grpc.FabricWebStub(client.channel)
    request = web_pb2.WebEndpointInfoRequest(function_id=function._function_id, method_name=function._method_name)
    return client._retrying(lambda: stub.WebEndpointInfo(request, metadata=client.metadata, timeout=30.0), True)


def get_web_url(function: Any) -> str:
    """The URL the fabric's HTTP gateway serves `function`'s web endpoint at."""
    url = _info(function).url
    if not url:
        raise InvalidError(f"{function.tag!r} has no web URL: is it a web endpoint, and does the fabric serve HTTP (--http-port)?")
    return url


def get_web_token(function: Any) -> str:
    """The token requests to `function`'s endpoint must carry (requires_proxy_auth=True), else ""."""
    return _info(function).token


def endpoint_urls(app: Any) -> list[tuple[str, str]]:
    """(name, URL) of every web endpoint of a running app, for `gpufabric serve FILE` to print."""
    from gpu_fabric.proto import web_pb2, web_pb2_grpc

    out = []
    for tag, fn in app._service_functions().items():
        raw = fn.spec.webhook_config_json
        if not raw or not fn.object_id:
            continue
        methods = json.loads(raw).get("methods") or {"": {}}
        client = fn._ready()
        stub = web_pb2_grpc.FabricWebStub(client.channel)
        for method in methods:
            request = web_pb2.WebEndpointInfoRequest(function_id=fn.object_id, method_name=method)
            info = stub.WebEndpointInfo(request, metadata=client.metadata, timeout=30.0)
            out.append((f"{tag}.{method}" if method else tag, info.url or "(the fabric serves no HTTP)"))
    return out
