"""Warm starts: the user code a fork-server zygote loaded (and set up) before forking this container."""
from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Optional

__all__ = ["HELLO_FILE_ENV", "START_KIND_ENV", "handed_hello", "prepare", "start_kind", "take"]

# Set by the worker in a forked container's environment: "fork_server", or "cold" for the one
# container that waited for the zygote's warm-up (it paid the whole import anyway).
START_KIND_ENV = "GPUFABRIC_START_KIND"
# Set by the worker when it fetched this container's ContainerHello already (while its zygote was
# made): a 0600 file the runtime reads and removes instead of asking the control plane again.
HELLO_FILE_ENV = "GPUFABRIC_HELLO_FILE"

_prepared: Optional[tuple[bytes, Any, Any]] = None  # (definition bytes, Service, module)


def _definition_key(definition: Any) -> bytes:
    return definition.SerializeToString(deterministic=True)


def prepare(hello_path: str) -> None:
    """In the zygote, before any fork: import the function's code, run its snap=True @enter methods.

    Opens no channel and starts no thread (forking a process with gRPC threads is unsafe); the
    ContainerHello it needs was fetched by the worker and handed over in `hello_path`.
    """
    global _prepared
    from gpu_fabric.proto import worker_pb2

    from . import _container  # noqa: F401 - the runtime's own imports (grpc, protos) are warmed too
    # grpc imports these on the first channel: 5-10 ms of every forked container otherwise. Importing
    # them starts no thread (a channel does, so the container opens its own after the fork).
    import grpc._channel  # noqa: F401
    import grpc.experimental  # noqa: F401
    from ._env import apply_secret_env
    from ._loader import load_definition
    from ._service import Service

    with open(hello_path, "rb") as f:
        hello = worker_pb2.ContainerHelloResponse.FromString(f.read())
    os.unlink(hello_path)  # it carries the secrets' values
    apply_secret_env(hello)  # as in a cold container: secrets are set before the user's module runs
    target, module = load_definition(hello.definition)
    service = Service(target, hello.definition, hello.spec)
    service.start(asyncio.run, snap_only=True)
    _prepared = (_definition_key(hello.definition), service, module)


def handed_hello(path: str) -> Optional[Any]:
    """The ContainerHello the worker handed over in `path` (see HELLO_FILE_ENV), removed once read;
    None when there is none or it cannot be read (the runtime then asks the control plane)."""
    if not path:
        return None
    from gpu_fabric.proto import worker_pb2

    try:
        with open(path, "rb") as f:
            data = f.read()
        os.unlink(path)  # it carries the secrets' values
        return worker_pb2.ContainerHelloResponse.FromString(data)
    except Exception as exc:  # noqa: BLE001 - asking again is always correct
        sys.__stderr__.write(f"[gpufabric runtime] cannot read the hello the worker handed over ({exc}); asking\n")
        return None


def take(hello: Any) -> Optional[tuple[Any, Any]]:
    """(Service, module) prepared by the zygote this process was forked from, if it is for the same
    code as `hello`; None otherwise (a cold load follows)."""
    global _prepared
    prepared, _prepared = _prepared, None
    if prepared is None:
        return None
    if prepared[0] != _definition_key(hello.definition):
        sys.__stderr__.write("[gpufabric runtime] the warm process holds other code (redeployed?); loading cold\n")
        return None
    return prepared[1], prepared[2]


def start_kind() -> str:
    """How this container started, for the metrics (valid after `take` returned a service)."""
    return os.environ.get(START_KIND_ENV, "fork_server")
