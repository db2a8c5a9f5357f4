"""Warm starts on a worker: per-function fork-server zygotes that new containers are forked from."""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from checkpointing import Zygote, ZygoteError
from gpu_fabric.proto import worker_pb2, worker_pb2_grpc

logger = logging.getLogger(__name__)

__all__ = ["ForkedProcess", "WarmStarts", "fork_container"]

# Launch(zygote, kind): kind is "cold"/"fork_server" with a zygote; with None it says why not.
Launch = Callable[[Optional[Zygote], str], None]
# The warm-up imports the user's code and runs its snap=True @enter methods: as long as a cold start.
DEFAULT_WARMUP_TIMEOUT_S = 300.0


class ForkedProcess:
    """A container forked by a zygote, shaped like the subprocess.Popen the manager watches."""

    def __init__(self, child: Any, stdout: Any, stderr: Any, start_kind: str) -> None:
        self._child = child
        self.start_kind = start_kind
        self.pid = child.pid
        self.stdout, self.stderr = stdout, stderr

    @property
    def returncode(self) -> Optional[int]:
        return self._child.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        return self._child.wait(timeout)


@dataclass
class _Entry:
    zygote: Zygote
    state: str = "warming"  # -> "ready" | "failed"
    reason: str = ""
    waiters: list = field(default_factory=list)


class WarmStarts:
    """The zygotes of one worker, one per function that asked for memory snapshots.

    The first container of such a function fetches its ContainerHello (the agent may: it never
    forks), starts a zygote that imports the code and runs the snap=True @enter methods, and is
    forked from it once warm; later containers are forked at once (~ms). Zygotes hold no gRPC
    threads, so forking them is safe; they die with the agent. Any failure starts the container
    cold instead.
    """

    def __init__(self, *, url: str, python: str, directory: str) -> None:
        self._url = url
        self._python = python
        self._dir = os.path.join(directory, "zygotes")
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._channel: Any = None

    @staticmethod
    def wants(assignment: worker_pb2.ContainerAssignment) -> bool:
        """True for the containers this worker can fork: snapshot functions in the worker's own Python."""
        spec = assignment.spec
        return spec.enable_memory_snapshot and not spec.image.recipe_json and not spec.block_network

    def start(self, assignment: worker_pb2.ContainerAssignment, env: dict[str, str], launch: Launch) -> None:
        """Calls `launch` now or, while the function's zygote warms up, from another thread.

        Call from the agent's long-lived thread: a zygote started here dies when that thread does.
        """
        key = assignment.function_id
        with self._lock:
            entry = self._entries.get(key)
        kind = "fork_server"
        if entry is None:
            try:
                entry = _Entry(self._new_zygote(assignment, env))
            except Exception as exc:  # noqa: BLE001 - any trouble here means a cold start
                launch(None, f"cannot start a fork-server zygote: {exc}")
                return
            kind = "cold"  # this container waits for the warm-up: it pays the whole import
            with self._lock:
                self._entries[key] = entry
            threading.Thread(target=self._warm, args=(entry, assignment.spec.startup_timeout_s),
                             name=f"gpufabric-zygote-{key}", daemon=True).start()
        with self._lock:
            if entry.state == "warming":
                entry.waiters.append((launch, kind))
                return
        launch(entry.zygote, kind) if entry.state == "ready" else launch(None, entry.reason)

    def _new_zygote(self, assignment: worker_pb2.ContainerAssignment, env: dict[str, str]) -> Zygote:
        hello = self._hello(assignment)
        os.makedirs(self._dir, mode=0o700, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="hello-", dir=self._dir)  # 0600: it holds the secrets' values
        with os.fdopen(fd, "wb") as f:
            f.write(hello.SerializeToString())
        return Zygote(python=self._python, env=env, warmup=("core_executor._runtime._warm", "prepare", [path]),
                      parent_pid=os.getpid(), directory=self._dir, wait=False)

    def _hello(self, assignment: worker_pb2.ContainerAssignment) -> worker_pb2.ContainerHelloResponse:
        # Read-only on the control plane: the container's own hello after the fork gets the same.
        if self._channel is None:
            from core_executor._client import open_channel

            self._channel = open_channel(self._url, [("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        stub = worker_pb2_grpc.FabricContainerStub(self._channel)
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return stub.ContainerHello(
            worker_pb2.ContainerHelloRequest(container_id=assignment.container_id, python_version=version),
            metadata=(("authorization", f"Bearer {assignment.container_token}"),), timeout=30.0)

    def _warm(self, entry: _Entry, startup_timeout_s: float) -> None:
        try:
            entry.zygote.wait_ready(startup_timeout_s or DEFAULT_WARMUP_TIMEOUT_S)
            state, reason = "ready", ""
            logger.info("fork-server zygote %d warm in %.2fs", entry.zygote.pid, entry.zygote.warmup_s)
        except ZygoteError as exc:
            state, reason = "failed", f"the warm-up failed ({exc}; the worker's log has its error)"
        with self._lock:
            entry.state, entry.reason = state, reason
            waiters, entry.waiters = entry.waiters, []
        for launch, kind in waiters:
            launch(entry.zygote, kind) if state == "ready" else launch(None, reason)

    def close(self) -> None:
        """Stops every zygote (containers forked from them die with them)."""
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            entry.zygote.close()
        if self._channel is not None:
            self._channel.close()


def fork_container(zygote: Zygote, env: dict[str, str], cwd: str, kind: str) -> ForkedProcess:
    """Fork one container from `zygote`: its stdout/stderr are pipes, as for a cold Popen."""
    from core_executor._runtime._warm import START_KIND_ENV

    # The runtime dies with its parent, which is the zygote here (and the zygote with the agent).
    env = dict(env, GPUFABRIC_AGENT_PID=str(zygote.pid), **{START_KIND_ENV: kind})
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        child = zygote.spawn("core_executor._runtime", env=env, cwd=cwd, stdin=null, stdout=out_w, stderr=err_w)
    except BaseException:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        for fd in (out_w, err_w, null):
            os.close(fd)
    return ForkedProcess(child, os.fdopen(out_r, "rb"), os.fdopen(err_r, "rb"), kind)
