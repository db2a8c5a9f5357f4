"""Container processes on a worker: starting, stopping, watching, and pumping their fd output."""
from __future__ import annotations

import collections
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Callable, Optional

from gpu_fabric.proto import common_pb2, worker_pb2

if TYPE_CHECKING:
    from ._images import ImageService
    from ._sandbox import Sandbox

logger = logging.getLogger(__name__)

__all__ = ["ContainerExit", "ContainerManager", "LogShipper", "STDERR_TAIL_BYTES"]

STDERR_TAIL_BYTES = 4096
# A line longer than this is shipped in pieces rather than held in memory.
MAX_LINE_BYTES = 64 * 1024
# How long an exit report waits for the output pumps (a grandchild may hold the pipes open).
PUMP_DRAIN_TIMEOUT_S = 2.0

@dataclass
class ContainerExit:
    """What the agent reports to the control plane when a container process ends."""

    container_id: str
    exit_code: int
    running_input_id: str
    stderr_tail: str
    requested: bool


class LogShipper:
    """Batches container fd output into WorkerPutLogs calls (every ~100 ms or 100 lines)."""

    def __init__(
        self,
        send: Callable[[list[common_pb2.LogEntry]], None],
        *,
        interval_s: float = 0.1,
        max_batch: int = 100,
    ) -> None:
        self._send = send
        self._interval_s = interval_s
        self._max_batch = max_batch
        self._cond = threading.Condition()
        self._pending: list[common_pb2.LogEntry] = []
        self._added = 0
        self._shipped = 0
        self._stopping = False
        self._flushing = False
        self._thread = threading.Thread(target=self._run, name="gpufabric-log-shipper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, entry: common_pb2.LogEntry) -> None:
        with self._cond:
            self._pending.append(entry)
            self._added += 1
            if len(self._pending) == 1 or len(self._pending) >= self._max_batch:
                self._cond.notify_all()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Waits until every entry added so far was handed to `send`."""
        with self._cond:
            target = self._added
            self._flushing = bool(self._pending)
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._shipped >= target, timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        self.flush(timeout_s)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stopping)
                if self._stopping and not self._pending:
                    return
                # Let a burst accumulate briefly: fewer, fuller RPCs.
                self._cond.wait_for(
                    lambda: len(self._pending) >= self._max_batch or self._stopping or self._flushing,
                    self._interval_s,
                )
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                if not self._pending:
                    self._flushing = False
            try:
                self._send(batch)
            except Exception:  # logs are best effort; never kill the shipper
                logger.warning("dropping %d container log lines", len(batch), exc_info=True)
            with self._cond:
                self._shipped += len(batch)
                self._cond.notify_all()


@dataclass
class _Container:
    assignment: worker_pb2.ContainerAssignment
    proc: subprocess.Popen
    directory: str
    status_path: str
    stderr_tail: collections.deque = field(default_factory=collections.deque)
    stderr_tail_len: int = 0
    requested: bool = False
    pumps: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Set for containers of an image (see _images.py / _sandbox.py); None for the worker's own Python.
    sandbox: Optional["Sandbox"] = None
    image_digest: str = ""
    relay: Any = None  # block_network=True: the container's way to the fabric (_relay.py)


class ContainerManager:
    """Starts containers as child processes and reports their exits."""

    def __init__(
        self,
        *,
        url: str,
        runtime_dir: str,
        shipper: LogShipper,
        on_exit: Callable[[ContainerExit], None],
        python: str = sys.executable,
        extra_env: Optional[dict[str, str]] = None,
        images: Optional["ImageService"] = None,
        run_on_main: Optional[Callable[[Callable[[], None]], None]] = None,
    ) -> None:
        self._url = url
        self._runtime_dir = runtime_dir
        self._shipper = shipper
        self._on_exit = on_exit
        self._python = python
        self._extra_env = dict(extra_env or {})
        self._lock = threading.Lock()
        self._containers: dict[str, _Container] = {}
        self._idle = threading.Condition(self._lock)
        # -- images: built and mounted off the main thread, started back on it --------------
        self._images = images
        self._run_on_main = run_on_main or (lambda fn: fn())
        self._preparing: dict[str, threading.Event] = {}  # container id -> "stop requested"
        from ._warm import WarmStarts  # -- warm starts: forked from a per-function zygote (_warm.py)

        # Snapshots of warm zygotes (CRIU, where it works) are kept in the image store.
        self._warm = WarmStarts(url=url, python=python, directory=runtime_dir,
                                store=images.store if images is not None else None)

    # -- queries ----------------------------------------------------------------------------

    def running_ids(self) -> list[str]:
        with self._lock:
            return list(self._containers) + list(self._preparing)

    def statuses(self) -> list[worker_pb2.ContainerStatus]:
        with self._lock:
            containers = list(self._containers.items())
        statuses = []
        for container_id, container in containers:
            statuses.append(
                worker_pb2.ContainerStatus(
                    container_id=container_id,
                    active_inputs=1 if _read_status(container.status_path) else 0,
                )
            )
        return statuses

    # -- lifecycle ---------------------------------------------------------------------------

    def _env(self, assignment: worker_pb2.ContainerAssignment, status_path: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self._extra_env)
        env.update(assignment.spec.env)
        # The fabric's variables win over the function's own env.
        env.update(
            GPUFABRIC_URL=self._url,
            GPUFABRIC_TOKEN=assignment.container_token,
            GPUFABRIC_CONTAINER_ID=assignment.container_id,
            GPUFABRIC_STATUS_FILE=status_path,
            GPUFABRIC_IS_CONTAINER="1",
            CUDA_VISIBLE_DEVICES=",".join(str(i) for i in assignment.gpu_indices),
            # The indices are NVML's (PCI bus order); CUDA's default order is fastest-first.
            CUDA_DEVICE_ORDER="PCI_BUS_ID",
            # Raw fd output reaches the pumps as it is written, not at exit.
            PYTHONUNBUFFERED="1",
            # The runtime sets PR_SET_PDEATHSIG itself and exits if its parent is not this pid
            # (the agent died before that): dying with the agent without a preexec_fn.
            GPUFABRIC_AGENT_PID=str(os.getpid()),
        )
        return env

    def start(self, assignment: worker_pb2.ContainerAssignment) -> None:
        """Starts one container; call from a thread that lives as long as the agent.

        PR_SET_PDEATHSIG fires when the *thread* that spawned the child ends, not the process.
        """
        container_id = assignment.container_id
        with self._lock:
            if container_id in self._containers or container_id in self._preparing:
                logger.info("container %s already running; ignoring repeated start", container_id)
                return
            if assignment.spec.image.recipe_json and self._images is not None:
                self._preparing[container_id] = threading.Event()
                threading.Thread(target=self._prepare_image, args=(assignment,),
                                 name=f"gpufabric-image-{container_id}", daemon=True).start()
                return
            warm = self._warm.wants(assignment)
            if warm:
                self._preparing[container_id] = threading.Event()
        if warm:
            self._start_warm(assignment)
            return
        self._spawn(assignment)

    def _spawn(self, assignment: worker_pb2.ContainerAssignment, image: Optional[tuple] = None,
               zygote: Optional[tuple] = None) -> None:
        """Starts the container process; `image` is (BuiltImage, MountedImage) for image containers,
        `zygote` (Zygote, start kind) forks it from a warm process instead of a fresh interpreter."""
        container_id = assignment.container_id
        directory = os.path.join(self._runtime_dir, container_id)
        scratch = os.path.join(directory, "work")
        status_path = os.path.join(directory, "status")
        sandbox = relay = None
        try:
            os.makedirs(scratch, exist_ok=True)
            open(status_path, "w").close()
            argv = [self._python, "-m", "core_executor._runtime"]
            env, cwd = self._env(assignment, status_path), scratch
            if image is not None:
                from ._sandbox import Sandbox

                built, mounted = image
                sandbox = Sandbox(container_id, image_root=mounted.path, directory=directory,
                                  memory_mb=assignment.spec.memory_mb, cpu=assignment.spec.cpu,
                                  gpu_indices=list(assignment.gpu_indices), workdir=built.workdir)
                from ._volumes import volume_binds  # volumes: bound at their mount paths (_volumes.py)

                sandbox.volume_binds = volume_binds(directory, assignment.spec)
                sandbox.block_network = assignment.spec.block_network
                argv = sandbox.argv(["python3", "-m", "core_executor._runtime"])
                env, cwd = sandbox.env(env, built.env), directory
            if assignment.spec.block_network:  # no network; the fabric through a unix socket (_relay.py)
                from ._relay import without_network

                relay, argv, env = without_network(directory, self._url, argv, env, sandboxed=sandbox is not None)
            proc = self._fork(assignment, zygote, env, cwd) if zygote is not None else None
            proc = proc or subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # No preexec_fn: Python code between fork and exec in a process with gRPC
                # threads crashes now and then (SIGSEGV in the child); without one,
                # CPython uses vfork, which also runs no fork handlers.
                start_new_session=True,
                close_fds=True,
            )
        except (OSError, RuntimeError, ValueError) as exc:
            logger.error("cannot start container %s: %s", container_id, exc)
            if relay is not None:
                relay.close()
            if sandbox is not None:
                sandbox.cleanup()
            if image is not None and self._images is not None:
                self._images.release(image[0].manifest_digest)
            shutil.rmtree(directory, ignore_errors=True)
            self._on_exit(ContainerExit(container_id, 127, "", f"cannot start container: {exc}", False))
            return
        container = _Container(assignment, proc, directory, status_path, sandbox=sandbox,
                               image_digest=image[0].manifest_digest if image else "", relay=relay)
        with self._lock:
            self._containers[container_id] = container
        for pipe, stream in (
            (proc.stdout, common_pb2.LOG_STREAM_STDOUT),
            (proc.stderr, common_pb2.LOG_STREAM_STDERR),
        ):
            pump = threading.Thread(
                target=self._pump, args=(container, pipe, stream),
                name=f"gpufabric-pump-{container_id}", daemon=True,
            )
            pump.start()
            container.pumps.append(pump)
        threading.Thread(
            target=self._wait, args=(container,), name=f"gpufabric-wait-{container_id}", daemon=True
        ).start()
        logger.info("started container %s (pid %d, gpus %s, %s start)", container_id, proc.pid,
                    list(assignment.gpu_indices), getattr(proc, "start_kind", "cold"))

    def stop(self, container_id: str, grace_s: float) -> bool:
        """SIGTERM the container's process group, SIGKILL after `grace_s`. False if unknown."""
        with self._lock:
            container = self._containers.get(container_id)
            preparing = self._preparing.get(container_id)
        if preparing is not None:
            preparing.set()  # the build goes on (and is cached); the container is not started
            return True
        if container is None:
            return False
        container.requested = True
        _signal_group(container.proc, signal.SIGTERM)
        timer = threading.Timer(max(grace_s, 0.0), _kill_if_running, (container.proc,))
        timer.daemon = True
        timer.start()
        return True

    def stop_all(self, grace_s: float, wait_s: float) -> bool:
        """Stops every container and waits up to `wait_s` for their exits to be reported."""
        for container_id in self.running_ids():
            self.stop(container_id, grace_s)
        with self._idle:
            done = self._idle.wait_for(lambda: not self._containers and not self._preparing, wait_s)
        self._warm.close()
        return done

    # -- warm starts (gpu_fabric/worker/_warm.py) ---------------------------------------------

    def _start_warm(self, assignment: worker_pb2.ContainerAssignment) -> None:
        container_id = assignment.container_id
        status_path = os.path.join(self._runtime_dir, container_id, "status")

        def launch(zygote, kind: str) -> None:
            def start_on_main() -> None:
                if self._finish_preparing(container_id, None, report_cancel=True):
                    if zygote is None:
                        logger.info("container %s: warm start unavailable: %s", container_id, kind)
                        self._system_log(assignment, f"warm start unavailable: {kind}; starting cold\n")
                    self._spawn(assignment, zygote=(zygote, kind) if zygote is not None else None)

            self._run_on_main(start_on_main)

        self._warm.start(assignment, self._env(assignment, status_path), launch,
                         note=lambda text: self._system_log(assignment, text))

    def _fork(self, assignment: worker_pb2.ContainerAssignment, zygote: tuple, env: dict, cwd: str) -> Any:
        """The forked container process, or None (and a log line) to start it cold."""
        from checkpointing import ZygoteError

        from ._warm import fork_container

        try:
            return fork_container(zygote[0], env, cwd, zygote[1], hello=self._warm.take_hello(assignment),
                                  hello_path=os.path.join(self._runtime_dir, assignment.container_id, "hello"))
        except (ZygoteError, OSError) as exc:
            logger.warning("container %s: warm start failed: %s; starting cold", assignment.container_id, exc)
            self._system_log(assignment, f"warm start failed: {exc}; starting cold\n")
            return None

    # -- per-container threads ---------------------------------------------------------------

    def _pump(self, container: _Container, pipe: IO[bytes], stream: int) -> None:
        assignment = container.assignment
        try:
            for raw in iter(lambda: pipe.readline(MAX_LINE_BYTES), b""):
                if stream == common_pb2.LOG_STREAM_STDERR:
                    with container.lock:
                        container.stderr_tail.append(raw)
                        container.stderr_tail_len += len(raw)
                        while container.stderr_tail_len - len(container.stderr_tail[0]) >= STDERR_TAIL_BYTES:
                            container.stderr_tail_len -= len(container.stderr_tail.popleft())
                self._shipper.add(
                    common_pb2.LogEntry(
                        timestamp=time.time(), stream=stream,
                        data=raw.decode("utf-8", errors="replace"),
                        function_name=assignment.spec.name, container_id=assignment.container_id,
                        app_id=assignment.app_id,
                    )
                )
        except (OSError, ValueError):
            pass  # pipe closed under us at shutdown
        finally:
            try:
                pipe.close()
            except OSError:
                pass

    def _wait(self, container: _Container) -> None:
        proc = container.proc
        exit_code = proc.wait()
        # Whatever the container left behind in its session goes with it.
        _signal_group(proc, signal.SIGKILL)
        for pump in container.pumps:
            pump.join(PUMP_DRAIN_TIMEOUT_S)
        # Lines pumped so far reach the log before the exit report (which quotes the tail).
        self._shipper.flush(timeout_s=2.0)
        if container.relay is not None:
            container.relay.close()
        with container.lock:
            tail = b"".join(container.stderr_tail)[-STDERR_TAIL_BYTES:]
        if container.sandbox is not None:
            note = container.sandbox.exit_note()
            if note:
                self._system_log(container.assignment, note)
                tail = (tail + note.encode())[-STDERR_TAIL_BYTES:]
            container.sandbox.cleanup()
            if self._images is not None:
                self._images.release(container.image_digest)
        report = ContainerExit(
            container_id=container.assignment.container_id,
            exit_code=exit_code,
            running_input_id=_read_status(container.status_path),
            stderr_tail=tail.decode("utf-8", errors="replace"),
            requested=container.requested,
        )
        shutil.rmtree(container.directory, ignore_errors=True)
        logger.info("container %s exited with %d", report.container_id, exit_code)
        try:
            self._on_exit(report)
        except Exception:
            logger.exception("reporting the exit of container %s failed", report.container_id)
        with self._idle:
            self._containers.pop(report.container_id, None)
            self._idle.notify_all()

    # -- images (gpu_fabric/worker/_images.py builds and mounts; _sandbox.py isolates) --------

    def _system_log(self, assignment: worker_pb2.ContainerAssignment, text: str) -> None:
        self._shipper.add(common_pb2.LogEntry(
            timestamp=time.time(), stream=common_pb2.LOG_STREAM_SYSTEM, data=text,
            function_name=assignment.spec.name, container_id=assignment.container_id, app_id=assignment.app_id))

    def _prepare_image(self, assignment: worker_pb2.ContainerAssignment) -> None:
        """Builds (or finds) and mounts the image off the main thread, then starts the container on it."""
        container_id = assignment.container_id
        assert self._images is not None
        try:
            built = self._images.build(assignment.spec.image.recipe_json,
                                       log=lambda line: self._system_log(assignment, line))
            mounted = self._images.acquire(built.manifest_digest)
        except Exception as exc:
            detail = getattr(exc, "log", "")
            from fs_lazy import MountError  # e.g. ImageTooLargeError: the disk cannot hold an eager copy

            what = "image mount failed" if isinstance(exc, MountError) else "image build failed"
            message = f"{what}: {exc}\n{detail[-STDERR_TAIL_BYTES // 2:]}"
            self._system_log(assignment, message)
            self._finish_preparing(container_id, None)
            self._on_exit(ContainerExit(container_id, 1, "", message[-STDERR_TAIL_BYTES:], False))
            return

        def start_on_main() -> None:
            if self._finish_preparing(container_id, (built, mounted)):
                self._spawn(assignment, (built, mounted))

        self._run_on_main(start_on_main)

    def _finish_preparing(self, container_id: str, image: Optional[tuple], report_cancel: bool = False) -> bool:
        """Ends the preparing state; False (and an exit report) when a stop came meanwhile."""
        with self._idle:
            cancelled = self._preparing.pop(container_id, threading.Event()).is_set()
            self._idle.notify_all()
        if cancelled and (image is not None or report_cancel):
            if image is not None:
                assert self._images is not None
                self._images.release(image[0].manifest_digest)
            self._on_exit(ContainerExit(container_id, 0, "", "", True))
        return not cancelled


def _read_status(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(4096).decode("utf-8", errors="replace").strip()
    except OSError:
        return ""


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    # start_new_session made the container its own process group leader.
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_if_running(proc: subprocess.Popen) -> None:
    # Once reaped, the pid (and group id) may belong to someone else.
    if proc.returncode is None:
        _signal_group(proc, signal.SIGKILL)
