"""gpu-fabric SDK: `import core_executor as fabric`, then App, @app.function, .remote/.map/.spawn."""
from __future__ import annotations

from . import exception
from ._app import App, LocalEntrypoint, Stub
from ._client import CLIENT_VERSION as __version__
from ._client import Client
from ._calls import CallUsage
from ._functions import Function, FunctionCall
from ._functions import _hydrate_container  # noqa: F401 - called by the container runtime
from ._cls import Cls, Obj
from ._partial import batched, concurrent, enter, exit, method, parameter, web_endpoint
from ._objects import Dict, Queue
from ._resources import Cron, Image, Period, Retries, Secret, Volume
from ._runtime._preemption import current_input_attempt, on_preemption, preemption_requested
from ._web import asgi_app, fastapi_endpoint, web_server, wsgi_app
from .exception import Error

__all__ = [
    "App",
    "Client",
    "Cls",
    "Obj",
    "Stub",
    "batched",
    "concurrent",
    "enter",
    "exit",
    "method",
    "parameter",
    "web_endpoint",
    "asgi_app",
    "fastapi_endpoint",
    "web_server",
    "wsgi_app",
    "Cron",
    "Dict",
    "Error",
    "CallUsage",
    "Function",
    "FunctionCall",
    "Image",
    "LocalEntrypoint",
    "Period",
    "Queue",
    "Retries",
    "Secret",
    "Volume",
    "current_input_attempt",
    "on_preemption",
    "preemption_requested",
    "exception",
    "is_local",
    "__version__",
]


def is_local() -> bool:
    """True on the caller's machine, False inside a fabric container (Modal's `modal.is_local`)."""
    from .config import is_container

    return not is_container()
