"""The container runtime loop: hello, load the function, exchange inputs and outputs."""
from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
import threading
import time
import types
from typing import Any, Callable, Mapping, Optional
from urllib.parse import urlparse

import grpc

from gpu_fabric.proto import client_pb2_grpc, common_pb2, worker_pb2, worker_pb2_grpc

from .._stream import StreamCaller
from . import _io, _preemption, _warm
from ._signals import call_on_signals
from ._blobs import BlobIO
from ._env import apply_secret_env
from ._inputs import POLL_TIMEOUT_S, InputRunner, Running, failure_result
from ._loader import init_failure_result, load_definition, python_version
from ._service import Service
from ._web import web_service

__all__ = ["ContainerRuntime", "main"]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Inputs this fast are cheaper to take in batches than one exchange each.
PREFETCH_INPUTS = 32
FAST_INPUT_S = 0.001
# While an input runs: logs and finished outputs go out at this pace; an empty exchange at
# KEEPALIVE_S lets the control plane tell us about cancellation.
FLUSH_INTERVAL_S = 0.1
KEEPALIVE_S = 1.0
# How long to keep retrying a control plane that is down (it may be restarting).
UNAVAILABLE_GIVE_UP_S = 600.0

_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class _Exit(Exception):
    """Ends the runtime with an exit code (the control plane forgot us, or an error)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(reason)
        self.code = code


def _target(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("grpc", "") or not parsed.hostname or not parsed.port:
        raise _Exit(1, f"GPUFABRIC_URL must look like grpc://HOST:PORT, got {url!r}")
    host = parsed.hostname
    return f"[{host}]:{parsed.port}" if ":" in host else f"{host}:{parsed.port}"


def _log_runtime(message: str) -> None:
    # The worker pumps fd 2 into the app log as STDERR, so runtime trouble is visible there.
    try:
        sys.__stderr__.write(f"[gpufabric runtime] {message}\n")
        sys.__stderr__.flush()
    except Exception:
        pass


class _StatusFile:
    """The file the worker reads to learn which input was running when we died."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644) if path else -1

    def set(self, input_id: str) -> None:
        if self._fd >= 0:
            data = input_id.encode()
            # Write first, truncate after: the file never reads as empty mid-update.
            os.pwrite(self._fd, data, 0)
            os.ftruncate(self._fd, len(data))

    def clear(self) -> None:
        if self._fd >= 0:
            os.ftruncate(self._fd, 0)


class ContainerRuntime(InputRunner):
    """Runs one container's life: hello, load (and @enter), then exchange until told to stop."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        container_id: str,
        status_file: str = "",
        channel: Optional[grpc.Channel] = None,
        hello_file: str = "",
    ) -> None:
        self.container_id = container_id
        self._hello_file = hello_file
        from .._client import open_channel  # grpcs:// with GPUFABRIC_CA_BUNDLE

        self._channel = channel or open_channel(
            url,
            [
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._metadata = (("authorization", f"Bearer {token}"),)
        if hello_file:  # no hello to ask for: connect while the code loads, for the first exchange
            grpc.channel_ready_future(self._channel)
        self._stub = worker_pb2_grpc.FabricContainerStub(self._channel)
        self._stream = StreamCaller(self._stub.ContainerStream)
        self.blobs = BlobIO(client_pb2_grpc.FabricClientStub(self._channel), self._metadata)
        self._status = _StatusFile(status_file)
        self.logs = _io.LogBuffer(container_id=container_id)
        self._streams: tuple[_io.CapturedStream, ...] = ()
        self._outputs: list[worker_pb2.ContainerOutput] = []
        self._outputs_lock = threading.Lock()
        # One exchange at a time, so a flush never overtakes an output it should precede.
        self._send_lock = threading.Lock()
        self._cancelled: set[str] = set()
        self._shutdown = False
        # Inputs being run by id; the flusher reads it for timeouts and cancellations.
        self._running: dict[str, Running] = {}
        # Guards _running for several inputs at once (@concurrent) and wakes the taker.
        self._slots = threading.Condition()
        self._concurrent = False
        # Set when an output should go out now rather than at the next flush tick.
        self._wake = threading.Event()
        self._service = Service(lambda *a, **k: None, common_pb2.FunctionDefinition(), common_pb2.FunctionSpec())
        self._spec = common_pb2.FunctionSpec()
        self._is_generator = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()
        self._started = False
        self._start_kind = "cold"

    # -- wire --------------------------------------------------------------------------------

    def _call_with_retry(self, rpc: Callable[..., Any], request: Any, timeout: float) -> Any:
        delay, give_up = 0.05, time.monotonic() + UNAVAILABLE_GIVE_UP_S
        while True:
            try:
                return rpc(request, metadata=self._metadata, timeout=timeout)
            except grpc.RpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.NOT_FOUND:
                    raise _Exit(0, "the control plane does not know this container") from None
                if code in _RETRYABLE and time.monotonic() < give_up:
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                raise _Exit(1, f"control plane call failed: {code}: {exc.details()}") from None

    def _take_outputs(self) -> list[worker_pb2.ContainerOutput]:
        with self._outputs_lock:
            outputs, self._outputs = self._outputs, []
        return outputs

    def _put_output(self, output: worker_pb2.ContainerOutput) -> None:
        with self._outputs_lock:
            self._outputs.append(output)

    def _exchange_locked(
        self,
        *,
        max_inputs: int,
        timeout_s: float,
        ready: bool = True,
        init_failure: Optional[common_pb2.FunctionResult] = None,
        extra_outputs: tuple[worker_pb2.ContainerOutput, ...] = (),
    ) -> worker_pb2.ContainerExchangeResponse:
        # Outputs before logs: any output taken here had its lines buffered before it,
        # so the logs taken next include them (the server stores logs before outputs).
        outputs = self._take_outputs() + list(extra_outputs)
        request = worker_pb2.ContainerExchangeRequest(
            container_id=self.container_id,
            outputs=outputs,
            logs=self.logs.drain(),
            max_inputs=max_inputs,
            timeout_s=timeout_s,
            ready=ready,
            init_failure=init_failure,
            start_kind=self._start_kind,
        )
        return self._call_with_retry(self._stream, request, timeout_s + 30.0)

    def _exchange(self, **kwargs: Any) -> worker_pb2.ContainerExchangeResponse:
        with self._send_lock:
            return self._exchange_locked(**kwargs)

    def _note_response(self, response: worker_pb2.ContainerExchangeResponse) -> None:
        if response.shutdown:
            self._shutdown = True
        if response.cancelled_input_ids:
            for input_id in response.cancelled_input_ids:
                entry = self._running.get(input_id)
                if entry is None:
                    continue
                if entry.future is not None:  # an async input: cancel its task, the rest go on
                    entry.stopping = common_pb2.RESULT_STATUS_TERMINATED
                    entry.future.cancel()
                    continue
                # Python cannot interrupt arbitrary user code: the process is the unit of stop.
                # An empty status file keeps the worker from reporting the input as crashed.
                self._status.clear()
                os._exit(1)
            self._cancelled.update(response.cancelled_input_ids)

    # -- startup -----------------------------------------------------------------------------

    def _flush_streams(self) -> None:
        for stream in self._streams:
            stream.flush()

    def _hydrate_sdk(self, module: Optional[types.ModuleType], hello: Any) -> None:
        """Lets the SDK bind App/Function objects so `.remote()` works from inside the container.

        The one place that calls into the SDK after loading; the hook is optional.
        """
        import core_executor

        hook = getattr(core_executor, "_hydrate_container", None)
        if callable(hook):
            hook(
                module=module,
                app_id=hello.app_id,
                function_id=hello.function_id,
                app_function_ids=dict(hello.app_function_ids),
            )

    def _load(self) -> Optional[common_pb2.FunctionResult]:
        # A container forked from a zygote may find its hello handed over by the worker.
        hello = _warm.handed_hello(self._hello_file) or self._call_with_retry(
            self._stub.ContainerHello,
            worker_pb2.ContainerHelloRequest(
                container_id=self.container_id, python_version=python_version()
            ),
            60.0,
        )
        self.logs.function_name = hello.spec.name
        self.logs.app_id = hello.app_id
        self._spec = hello.spec
        self._is_generator = hello.spec.is_generator
        apply_secret_env(hello)  # secrets reach os.environ before the user's module is imported
        _preemption.install(self, hello)  # volumes mounted, preemption notices watched (_preemption.py)
        timer = self._start_watchdog(hello.spec.startup_timeout_s)
        try:
            warm = _warm.take(hello)  # forked by a fork-server zygote: code imported, snap enters run
            if warm is None:
                target, module = load_definition(hello.definition)
                self._service = Service(target, hello.definition, hello.spec)
            else:
                (self._service, module), self._start_kind = warm, _warm.start_kind()
            self._hydrate_sdk(module, hello)
            self._service.start(self._run_coro)
            self._service = web_service(self._service, hello.spec)  # web endpoints: requests are inputs
        except BaseException as exc:  # SystemExit at import is an init failure too
            return init_failure_result(exc)
        finally:
            with self._start_lock:  # blocks while a firing watchdog reports and exits
                self._started = True
            if timer is not None:
                timer.cancel()
        return None

    def _start_watchdog(self, seconds: float) -> Optional[threading.Timer]:
        """Fail the container's start when import and @enter take longer than startup_timeout."""
        if seconds <= 0:
            return None
        timer = threading.Timer(seconds, self._on_startup_timeout, args=(seconds,))
        timer.daemon = True
        timer.start()
        return timer

    def _on_startup_timeout(self, seconds: float) -> None:
        from core_executor.exception import FunctionTimeoutError

        with self._start_lock:
            if self._started:
                return
            exc = FunctionTimeoutError(
                f"the container did not start within startup_timeout={seconds:g}s (importing the code and "
                "running @fabric.enter methods); raise startup_timeout or make startup faster"
            )
            failure = failure_result(exc, common_pb2.RESULT_STATUS_INIT_FAILURE, tb="")
            self._flush_streams()
            try:
                self._exchange(max_inputs=0, timeout_s=0.0, ready=False, init_failure=failure)
            except _Exit:
                pass
            finally:
                os._exit(1)

    def _stop_service(self) -> None:
        """Run the class's @exit methods (once)."""
        try:
            self._service.stop(self._run_coro)
        except BaseException as exc:  # noqa: BLE001 - shutting down regardless
            _log_runtime(f"exit methods failed: {exc!r}")

    def _on_sigterm(self) -> None:
        # The worker stops a container with SIGTERM (app stopped, scale-down): @exit runs first, on
        # the signal thread, while the main thread goes on with the input it was running.
        self._stop_service()
        self._flush_streams()
        # The unary RPC, not the stream: the main thread may be mid-exchange on it.
        request = worker_pb2.ContainerExchangeRequest(
            container_id=self.container_id, outputs=self._take_outputs(), logs=self.logs.drain(), ready=True
        )
        try:
            self._stub.ContainerExchange(request, metadata=self._metadata, timeout=5.0)
        except BaseException:  # noqa: BLE001 - exiting anyway
            pass
        os._exit(0)

    def _on_timeout(self, entries: list[Running]) -> None:
        from core_executor.exception import FunctionTimeoutError

        with self._send_lock:
            live = [e for e in entries if self._running.get(e.inp.input_id) is e]
            if not live:
                return  # they finished meanwhile
            now = time.monotonic()
            outputs = []
            for entry in live:
                exc = FunctionTimeoutError(
                    f"the input ran past its timeout of {entry.inp.timeout_s:g}s and was stopped"
                )
                result = failure_result(exc, common_pb2.RESULT_STATUS_TIMEOUT, tb="")
                outputs.append(worker_pb2.ContainerOutput(
                    input_id=entry.inp.input_id, result=result, duration_s=now - entry.started
                ))
            self._flush_streams()
            try:
                self._exchange_locked(max_inputs=0, timeout_s=0.0, extra_outputs=tuple(outputs))
                # Delivered: the exit that follows is not a crash of this input.
                self._status.clear()
            except _Exit:
                pass
            finally:
                # Python cannot stop a running thread: the process is the unit of stop.
                os._exit(1)

    def _background(self) -> None:
        """Ships logs and outputs while inputs run, enforces timeouts, hears cancellations."""
        last_sent = time.monotonic()
        while True:
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            running = list(self._running.values())
            now = time.monotonic()
            if not running and not (self._concurrent and self._outputs):
                last_sent = now
                continue
            expired = [r for r in running if r.deadline and now > r.deadline and not r.stopping]
            if expired:
                for entry in expired:
                    if entry.future is not None:  # an async input: cancel its task only
                        entry.stopping = common_pb2.RESULT_STATUS_TIMEOUT
                        entry.future.cancel()
                blocking = [e for e in expired if e.future is None]
                if blocking:
                    self._on_timeout(blocking)
                    continue
            if not (len(self.logs) or self._outputs or now - last_sent >= KEEPALIVE_S):
                continue
            if not self._send_lock.acquire(blocking=False):
                continue  # the loop is exchanging; it carries the logs
            try:
                response = self._exchange_locked(max_inputs=0, timeout_s=0.0)
            except _Exit as exc:
                _log_runtime(str(exc))
                os._exit(exc.code)
            finally:
                self._send_lock.release()
            last_sent = time.monotonic()
            self._note_response(response)

    def _loop_inputs(self) -> None:
        held: collections.deque[worker_pb2.ContainerInput] = collections.deque()
        want = 1
        slowest = 0.0
        while True:
            if not held:
                if self._shutdown:
                    self._stop_service()
                    self._flush_streams()
                    self._exchange(max_inputs=0, timeout_s=0.0)
                    return
                want = PREFETCH_INPUTS if 0 < slowest < FAST_INPUT_S else 1
                slowest = 0.0
                response = self._exchange(max_inputs=want, timeout_s=POLL_TIMEOUT_S)
                self._note_response(response)
                held.extend(response.inputs)
                continue
            inp = held.popleft()
            if inp.input_id in self._cancelled:
                self._cancelled.discard(inp.input_id)
                continue
            slowest = max(slowest, self._run_input(inp))

    def run(self) -> int:
        """Runs until shutdown; returns the exit code."""
        self._streams = _io.install(self.logs)
        try:
            failure = self._load()
            if failure is not None:
                self._flush_streams()
                self._exchange(max_inputs=0, timeout_s=0.0, ready=False, init_failure=failure)
                return 0
            threading.Thread(target=self._background, name="gpufabric-flusher", daemon=True).start()
            if self._service.has_exit and threading.current_thread() is threading.main_thread():
                call_on_signals(self._on_sigterm, (signal.SIGTERM,))
            if self._spec.batch_max_size > 0:
                self._loop_batched(self._spec.batch_max_size)
            elif self._spec.max_concurrent_inputs > 1:
                self._loop_concurrent(self._spec.max_concurrent_inputs)
            else:
                self._loop_inputs()
            return 0
        except _Exit as exc:
            if str(exc):
                _log_runtime(str(exc))
            return exc.code
        finally:
            _io.uninstall()


def main(environ: Mapping[str, str] = os.environ) -> None:
    """Entry point of `python -m core_executor._runtime`."""
    try:
        runtime = ContainerRuntime(
            url=environ["GPUFABRIC_URL"],
            token=environ.get("GPUFABRIC_TOKEN", ""),
            container_id=environ["GPUFABRIC_CONTAINER_ID"],
            status_file=environ.get("GPUFABRIC_STATUS_FILE", ""),
            hello_file=environ.get(_warm.HELLO_FILE_ENV, ""),
        )
        code = runtime.run()
    except KeyError as exc:
        _log_runtime(f"missing environment variable {exc.args[0]}; the worker agent sets it")
        code = 2
    except _Exit as exc:
        _log_runtime(str(exc))
        code = exc.code
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    # User threads (non-daemon) and gRPC threads must not keep a finished container alive.
    os._exit(code)
