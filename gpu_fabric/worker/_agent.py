"""The worker agent: registration, heartbeats, the assignment stream and container exits."""
from __future__ import annotations

import logging
import queue
import shutil
import socket
import sys
import tempfile
import threading
import time
from typing import Callable, Optional
from urllib.parse import urlparse

import grpc

from gpu_fabric.proto import common_pb2, worker_pb2, worker_pb2_grpc

from ._containers import ContainerExit, ContainerManager, LogShipper

logger = logging.getLogger(__name__)

__all__ = ["WorkerAgent", "WorkerError", "grpc_target"]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_HEARTBEAT_INTERVAL_S = 5.0
# Grace for containers when the agent itself stops (SIGTERM, then SIGKILL).
SHUTDOWN_GRACE_S = 2.0
MAX_BACKOFF_S = 5.0
# Exit reports matter for retries: keep trying through a control plane restart.
EXIT_REPORT_GIVE_UP_S = 120.0
SHUTDOWN_REPORT_S = 3.0

_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class WorkerError(Exception):
    """Raised when the agent cannot work at all (bad URL, token refused); fix the flags."""


def grpc_target(url: str) -> str:
    """`grpc://HOST:PORT` -> `HOST:PORT` (brackets kept for IPv6)."""
    parsed = urlparse(url)
    if parsed.scheme != "grpc" or not parsed.hostname or not parsed.port:
        raise WorkerError(f"--url must look like grpc://HOST:PORT, got {url!r}")
    host = parsed.hostname
    return f"[{host}]:{parsed.port}" if ":" in host else f"{host}:{parsed.port}"


def python_version(executable: str = sys.executable) -> str:
    if executable == sys.executable:
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    import subprocess

    out = subprocess.run(
        [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=True, timeout=30,
    )
    return out.stdout.strip()


class WorkerAgent:
    """One machine's agent: keeps a registration alive and runs the containers it is assigned."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        resources: worker_pb2.WorkerResources,
        heartbeat_interval_s: Optional[float] = None,
        hostname: Optional[str] = None,
        python: str = sys.executable,
        runtime_dir: Optional[str] = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        from core_executor._client import open_channel  # grpcs:// with GPUFABRIC_CA_BUNDLE

        self._channel = open_channel(
            url,
            [
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._stub = worker_pb2_grpc.FabricWorkerStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),)
        self.resources = resources
        self.hostname = hostname or socket.gethostname()
        self._python = python
        self._python_version = python_version(python)
        self._heartbeat_override = heartbeat_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s or DEFAULT_HEARTBEAT_INTERVAL_S
        self._sleep = sleep
        self.worker_id = ""
        self._registered = threading.Event()
        self._register_wanted = threading.Event()
        self._stop = threading.Event()
        self._stopped_at = 0.0
        self._commands: "queue.Queue[worker_pb2.WorkerAssignment | Callable[[], None]]" = queue.Queue()
        self._stream_call: Optional[grpc.Future] = None
        self._own_runtime_dir = runtime_dir is None
        self.runtime_dir = runtime_dir or tempfile.mkdtemp(prefix="gpufabric-worker-")
        self._shipper = LogShipper(self._send_logs)
        # Images: built and mounted by _images.py; their containers start back on the main thread.
        from ._images import ImageService

        self.images = ImageService()
        self.containers = ContainerManager(
            url=url, runtime_dir=self.runtime_dir, shipper=self._shipper,
            on_exit=self._report_exit, python=python,
            images=self.images, run_on_main=self._commands.put,
        )

    # -- registration ------------------------------------------------------------------------

    def _register_once(self) -> None:
        request = worker_pb2.WorkerRegisterRequest(
            hostname=self.hostname,
            resources=self.resources,
            python_version=self._python_version,
            provider="local",
            worker_id=self.worker_id,
            running_container_ids=self.containers.running_ids(),
        )
        response = self._stub.WorkerRegister(request, metadata=self._metadata, timeout=10.0)
        changed = bool(self.worker_id) and response.worker_id != self.worker_id
        if changed:
            logger.warning("control plane gave a new worker id %s (was %s)",
                           response.worker_id, self.worker_id)
        self.worker_id = response.worker_id
        if changed and self._stream_call is not None:
            self._stream_call.cancel()  # the stream under the old id would stay silent
        if self._heartbeat_override is None and response.heartbeat_interval_s > 0:
            self.heartbeat_interval_s = response.heartbeat_interval_s
        self._register_wanted.clear()
        self._registered.set()
        logger.info("registered as worker %s (heartbeat every %.1fs)", self.worker_id,
                    self.heartbeat_interval_s)

    def _register_until_done(self) -> bool:
        """Registers, retrying while the control plane is unreachable. False if stopping."""
        delay = 0.1
        while not self._stop.is_set():
            try:
                self._register_once()
                return True
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    raise WorkerError("the control plane refused the worker token (--token)") from None
                if exc.code() not in _TRANSIENT:
                    logger.warning("register failed: %s: %s", exc.code(), exc.details())
                else:
                    logger.debug("control plane unreachable, retrying in %.1fs", delay)
            self._stop.wait(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
        return False

    def _want_register(self) -> None:
        self._registered.clear()
        self._register_wanted.set()

    # -- background threads ------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        while not self._stop.is_set():
            self._register_wanted.wait(self.heartbeat_interval_s)
            if self._stop.is_set():
                return
            if self._register_wanted.is_set():
                try:
                    if not self._register_until_done():
                        return
                except WorkerError as exc:
                    logger.error("%s", exc)
                    self._stop.set()
                    return
                continue
            request = worker_pb2.WorkerHeartbeatRequest(
                worker_id=self.worker_id, containers=self.containers.statuses()
            )
            try:
                response = self._stub.WorkerHeartbeat(
                    request, metadata=self._metadata, timeout=max(self.heartbeat_interval_s, 5.0)
                )
            except grpc.RpcError as exc:
                if exc.code() in _TRANSIENT:
                    # It may come back as a fresh process: register again (same id) when it does.
                    logger.warning("heartbeat failed (%s); re-registering", exc.code())
                    self._want_register()
                else:
                    logger.warning("heartbeat failed: %s: %s", exc.code(), exc.details())
                continue
            if not response.known:
                logger.warning("control plane does not know worker %s; re-registering", self.worker_id)
                self._want_register()

    def _assignment_loop(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            if not self._registered.wait(0.5):
                continue
            call = self._stub.WorkerGetAssignments(
                worker_pb2.WorkerGetAssignmentsRequest(worker_id=self.worker_id),
                metadata=self._metadata,
            )
            self._stream_call = call
            if self._stop.is_set():
                call.cancel()
                return
            try:
                for assignment in call:
                    delay = 0.1
                    self._commands.put(assignment)
                logger.info("assignment stream ended; reconnecting")
            except grpc.RpcError as exc:
                if self._stop.is_set():
                    return
                code = exc.code()
                if code in _TRANSIENT or code == grpc.StatusCode.NOT_FOUND:
                    self._want_register()
                logger.warning("assignment stream broke (%s); reconnecting", code)
            self._stop.wait(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    # -- RPCs used by the containers ---------------------------------------------------------

    def _send_logs(self, entries: list[common_pb2.LogEntry]) -> None:
        request = worker_pb2.WorkerPutLogsRequest(worker_id=self.worker_id, entries=entries)
        self._stub.WorkerPutLogs(request, metadata=self._metadata, timeout=10.0)

    def _report_exit(self, exit: ContainerExit) -> None:
        delay, give_up = 0.1, time.monotonic() + EXIT_REPORT_GIVE_UP_S
        while True:
            request = worker_pb2.WorkerContainerExitedRequest(
                worker_id=self.worker_id, container_id=exit.container_id,
                exit_code=exit.exit_code, running_input_id=exit.running_input_id,
                stderr_tail=exit.stderr_tail, requested=exit.requested,
            )
            try:
                self._stub.WorkerContainerExited(request, metadata=self._metadata, timeout=10.0)
                return
            except grpc.RpcError as exc:
                # While the agent stops, a missing control plane must not hold up the exit.
                limit = min(give_up, self._stopped_at + SHUTDOWN_REPORT_S) if self._stop.is_set() else give_up
                if exc.code() not in _TRANSIENT or time.monotonic() > limit:
                    logger.warning("exit report for %s dropped: %s", exit.container_id, exc.code())
                    return
            self._sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    # -- main loop ---------------------------------------------------------------------------

    def _handle(self, assignment: worker_pb2.WorkerAssignment) -> None:
        if callable(assignment):  # work handed back to this thread (an image container ready to start)
            assignment()
            return
        kind = assignment.WhichOneof("kind")
        if kind == "start":
            self.containers.start(assignment.start)
        elif kind == "stop_container_id":
            container_id = assignment.stop_container_id
            if not self.containers.stop(container_id, assignment.stop_grace_s):
                # Unknown here (already gone): tell the control plane so it stops waiting.
                self._report_exit(ContainerExit(container_id, 0, "", "", True))

    def stop(self) -> None:
        """Asks `run` to stop its containers and return (safe from signal handlers)."""
        if not self._stop.is_set():
            self._stopped_at = time.monotonic()
        self._stop.set()

    def run(self) -> None:
        """Runs until `stop()`. Containers are forked from this thread, so it must outlive them."""
        threads = []
        try:
            if not self._register_until_done():
                return
            self._shipper.start()
            from ._preemption import PreemptionWatcher  # preemption: notices -> drain (_preemption.py)

            PreemptionWatcher(self).start()
            for target, name in ((self._heartbeat_loop, "heartbeat"), (self._assignment_loop, "assignments")):
                thread = threading.Thread(target=target, name=f"gpufabric-{name}", daemon=True)
                thread.start()
                threads.append(thread)
            while not self._stop.is_set():
                try:
                    assignment = self._commands.get(timeout=0.2)
                except queue.Empty:
                    continue
                try:
                    self._handle(assignment)
                except Exception:
                    logger.exception("handling assignment failed")
        finally:
            self.stop()
            self._shutdown(threads)

    def _shutdown(self, threads: list[threading.Thread]) -> None:
        if self.containers.running_ids():
            logger.info("stopping %d container(s)", len(self.containers.running_ids()))
        self.containers.stop_all(SHUTDOWN_GRACE_S, wait_s=SHUTDOWN_GRACE_S + 10.0)
        call = self._stream_call
        if call is not None:
            call.cancel()
        self._register_wanted.set()  # wakes the heartbeat thread so it sees the stop
        for thread in threads:
            thread.join(2.0)
        self._shipper.stop(timeout_s=2.0)
        self.images.close()
        self._channel.close()
        if self._own_runtime_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
