"""The container runtime loop: hello, load the function, exchange inputs and outputs."""
from __future__ import annotations

import asyncio
import collections
import inspect
import os
import sys
import threading
import time
import types
from typing import Any, Callable, Mapping, Optional
from urllib.parse import urlparse

import grpc

from gpu_fabric.proto import client_pb2_grpc, common_pb2, worker_pb2, worker_pb2_grpc

from .._stream import StreamCaller
from . import _io
from ._blobs import BlobIO
from ._loader import init_failure_result, load_definition, python_version

__all__ = ["ContainerRuntime", "main"]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
INLINE_LIMIT = 2 * 1024 * 1024
MAX_PAYLOAD = 8 * 1024 * 1024 * 1024
# Long-poll length for inputs; the server answers earlier when one arrives.
POLL_TIMEOUT_S = 20.0
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


class ContainerRuntime:
    """Runs one container's life: hello, load, then exchange until told to stop."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        container_id: str,
        status_file: str = "",
        channel: Optional[grpc.Channel] = None,
    ) -> None:
        self.container_id = container_id
        self._channel = channel or grpc.insecure_channel(
            _target(url),
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._metadata = (("authorization", f"Bearer {token}"),)
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
        # (input, monotonic start, monotonic deadline or 0); swapped atomically by the loop.
        self._running: Optional[tuple[worker_pb2.ContainerInput, float, float]] = None
        self._fn: Callable[..., Any] = lambda *a, **k: None
        self._is_generator = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None

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
        )
        return self._call_with_retry(self._stream, request, timeout_s + 30.0)

    def _exchange(self, **kwargs: Any) -> worker_pb2.ContainerExchangeResponse:
        with self._send_lock:
            return self._exchange_locked(**kwargs)

    def _note_response(self, response: worker_pb2.ContainerExchangeResponse) -> None:
        if response.shutdown:
            self._shutdown = True
        if response.cancelled_input_ids:
            running = self._running
            if running is not None and running[0].input_id in response.cancelled_input_ids:
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
        hello = self._call_with_retry(
            self._stub.ContainerHello,
            worker_pb2.ContainerHelloRequest(
                container_id=self.container_id, python_version=python_version()
            ),
            60.0,
        )
        self.logs.function_name = hello.spec.name
        self.logs.app_id = hello.app_id
        self._is_generator = hello.spec.is_generator
        try:
            self._fn, module = load_definition(hello.definition)
            self._hydrate_sdk(module, hello)
        except BaseException as exc:  # SystemExit at import is an init failure too
            return init_failure_result(exc)
        return None

    # -- running inputs ----------------------------------------------------------------------

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        # One loop for the container's life: async functions keep their clients across inputs.
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop

    def _emit_generator(self, inp: worker_pb2.ContainerInput, gen: Any, started: float) -> Any:
        index = 0
        if inspect.isasyncgen(gen):
            loop = self._event_loop()
            while True:
                try:
                    item = loop.run_until_complete(gen.__anext__())
                except StopAsyncIteration:
                    break
                self._emit_item(inp, item, index, started)
                index += 1
        else:
            for item in gen:
                self._emit_item(inp, item, index, started)
                index += 1
        return index

    def _emit_item(self, inp: worker_pb2.ContainerInput, item: Any, index: int, started: float) -> None:
        from core_executor._serialization import encode_success

        result = encode_success(item, blobs=self.blobs, inline_limit=INLINE_LIMIT, max_payload=MAX_PAYLOAD)
        result.gen_index = index
        self._flush_streams()
        self._put_output(worker_pb2.ContainerOutput(
            input_id=inp.input_id, result=result, duration_s=time.monotonic() - started))

    def _run_input(self, inp: worker_pb2.ContainerInput) -> float:
        from core_executor._serialization import decode_input, encode_failure, encode_success

        self._status.set(inp.input_id)
        self.logs.set_input(inp.input_id, inp.call_id)
        started = time.monotonic()
        self._running = (inp, started, started + inp.timeout_s if inp.timeout_s > 0 else 0.0)
        try:
            args, kwargs = decode_input(inp.input, blobs=self.blobs)
            value = self._fn(*args, **kwargs)
            if inspect.iscoroutine(value):
                value = self._event_loop().run_until_complete(value)
            if self._is_generator and (inspect.isgenerator(value) or inspect.isasyncgen(value)):
                count = self._emit_generator(inp, value, started)
                # The closing output carries no value: gen_done marks the end of the stream.
                result = encode_success(None, blobs=self.blobs)
                result.gen_index, result.gen_done = count, True
            else:
                result = encode_success(
                    value, blobs=self.blobs, inline_limit=INLINE_LIMIT, max_payload=MAX_PAYLOAD
                )
        except BaseException as exc:  # SystemExit/KeyboardInterrupt from user code fail the input
            try:
                result = encode_failure(exc)
            except BaseException as enc_exc:
                result = common_pb2.FunctionResult(
                    status=common_pb2.RESULT_STATUS_FAILURE, exception=repr(exc)[:10000],
                    traceback=f"(could not encode the failure: {enc_exc!r})",
                )
        duration = time.monotonic() - started
        self._flush_streams()
        self._running = None
        self.logs.set_input()
        self._status.clear()
        self._put_output(worker_pb2.ContainerOutput(input_id=inp.input_id, result=result, duration_s=duration))
        return duration

    def _on_timeout(self, inp: worker_pb2.ContainerInput, started: float) -> None:
        from core_executor._serialization import encode_failure
        from core_executor.exception import FunctionTimeoutError

        with self._send_lock:
            running = self._running
            if running is None or running[0] is not inp:
                return  # it finished meanwhile
            exc = FunctionTimeoutError(
                f"the input ran past its timeout of {inp.timeout_s:g}s and was stopped"
            )
            result = encode_failure(exc, common_pb2.RESULT_STATUS_TIMEOUT, tb="")
            self._flush_streams()
            output = worker_pb2.ContainerOutput(
                input_id=inp.input_id, result=result, duration_s=time.monotonic() - started
            )
            try:
                self._exchange_locked(max_inputs=0, timeout_s=0.0, extra_outputs=(output,))
                # Delivered: the exit that follows is not a crash of this input.
                self._status.clear()
            except _Exit:
                pass
            finally:
                os._exit(1)

    def _background(self) -> None:
        """Ships logs and outputs while an input runs, enforces timeouts, hears cancellations."""
        last_sent = time.monotonic()
        while True:
            time.sleep(FLUSH_INTERVAL_S)
            running = self._running
            if running is None:
                last_sent = time.monotonic()
                continue
            inp, started, deadline = running
            now = time.monotonic()
            if deadline and now > deadline:
                self._on_timeout(inp, started)
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
