"""Running inputs in a container: one at a time, a batch in one call, or several at once (@concurrent)."""
from __future__ import annotations

import asyncio
import inspect
import threading
import time
from typing import Any, Optional

from gpu_fabric.proto import common_pb2, worker_pb2

from .._stream import StreamCaller
from ._service import Service, assemble_batch, split_batch

__all__ = ["Running", "InputRunner", "failure_result"]

INLINE_LIMIT = 2 * 1024 * 1024
MAX_PAYLOAD = 8 * 1024 * 1024 * 1024
# Long-poll length for inputs; the server answers earlier when one arrives.
POLL_TIMEOUT_S = 20.0


def failure_result(exc: BaseException, status: Optional[int] = None, tb: Optional[str] = None) -> Any:
    """A failure FunctionResult for `exc`, even when the exception cannot be encoded."""
    from core_executor._serialization import encode_failure

    try:
        return encode_failure(exc, status, tb=tb)
    except BaseException as enc_exc:  # noqa: BLE001
        return common_pb2.FunctionResult(
            status=status or common_pb2.RESULT_STATUS_FAILURE, exception=repr(exc)[:10000],
            traceback=f"(could not encode the failure: {enc_exc!r})",
        )


class Running:
    """An input being run: when it started, its deadline, and its task when it is async."""

    __slots__ = ("inp", "started", "deadline", "future", "stopping")

    def __init__(self, inp: worker_pb2.ContainerInput, started: float) -> None:
        self.inp = inp
        self.started = started
        self.deadline = started + inp.timeout_s if inp.timeout_s > 0 else 0.0
        self.future: Any = None  # concurrent.futures.Future of an async input's task
        self.stopping = 0  # the status to report once the task is cancelled (timeout, cancel)


class InputRunner:
    """The input-running half of ContainerRuntime (a mixin: it uses the runtime's wire and buffers)."""

    _service: Service
    _is_generator: bool
    _running: dict[str, Running]
    _loop: Optional[asyncio.AbstractEventLoop]
    _loop_thread: Optional[threading.Thread]

    # -- coroutines ---------------------------------------------------------------------------

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        # One loop for the container's life: async functions keep their clients across inputs.
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop

    def _run_coro(self, coro: Any) -> Any:
        """Run a coroutine to its end on the container's loop, from any thread but the loop's."""
        if self._loop_thread is not None:
            return asyncio.run_coroutine_threadsafe(coro, self._event_loop()).result()
        return self._event_loop().run_until_complete(coro)

    # -- one input ----------------------------------------------------------------------------

    def _emit_item(self, inp: worker_pb2.ContainerInput, item: Any, index: int, started: float) -> None:
        from core_executor._serialization import encode_success

        result = encode_success(item, blobs=self.blobs, inline_limit=INLINE_LIMIT, max_payload=MAX_PAYLOAD)
        result.gen_index = index
        self._flush_streams()
        self._put_output(worker_pb2.ContainerOutput(input_id=inp.input_id, result=result, duration_s=time.monotonic() - started))
        self._wake.set()  # items go out as they are made, not at the next flush tick

    def _final(self, value: Any) -> Any:
        from core_executor._serialization import encode_success

        result = encode_success(value, blobs=self.blobs, inline_limit=INLINE_LIMIT, max_payload=MAX_PAYLOAD)
        # Under a class whose other methods are generators, a plain method's output ends its input.
        result.gen_done = self._is_generator
        return result

    def _call(self, inp: worker_pb2.ContainerInput, started: float) -> Any:
        """Run one input on this thread and return its FunctionResult."""
        from core_executor._serialization import decode_input, encode_success

        emitted = 0
        try:
            args, kwargs = decode_input(inp.input, blobs=self.blobs)
            value = self._service.resolve(inp.input.method_name)(*args, **kwargs)
            if inspect.isawaitable(value):
                value = self._run_coro(value)
            if not (self._is_generator and (inspect.isgenerator(value) or inspect.isasyncgen(value))):
                return self._final(value)
            if inspect.isasyncgen(value):
                while True:
                    try:
                        item = self._run_coro(value.__anext__())
                    except StopAsyncIteration:
                        break
                    self._emit_item(inp, item, emitted, started)
                    emitted += 1
            else:
                for item in value:
                    self._emit_item(inp, item, emitted, started)
                    emitted += 1
            # The closing output carries no value: gen_done marks the end of the stream.
            result = encode_success(None, blobs=self.blobs)
            result.gen_index, result.gen_done = emitted, True
            return result
        except BaseException as exc:  # SystemExit/KeyboardInterrupt from user code fail the input
            result = failure_result(exc)
            result.gen_index = emitted  # the caller gets the items made before the failure first
            return result

    async def _call_async(self, entry: Running) -> Any:
        """Run one async input as a task on the container's loop and return its FunctionResult."""
        from core_executor._serialization import decode_input, encode_success
        from core_executor.exception import FunctionTimeoutError, InputCancellation

        inp, emitted = entry.inp, 0
        try:
            args, kwargs = decode_input(inp.input, blobs=self.blobs)
            value = self._service.resolve(inp.input.method_name)(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
            if not (self._is_generator and inspect.isasyncgen(value)):
                return self._final(value)
            async for item in value:
                self._emit_item(inp, item, emitted, entry.started)
                emitted += 1
            result = encode_success(None, blobs=self.blobs)
            result.gen_index, result.gen_done = emitted, True
            return result
        except asyncio.CancelledError:
            if entry.stopping == common_pb2.RESULT_STATUS_TIMEOUT:
                exc: BaseException = FunctionTimeoutError(f"the input ran past its timeout of {inp.timeout_s:g}s and was stopped")
            else:
                exc = InputCancellation("the call was cancelled")
            return failure_result(exc, entry.stopping or common_pb2.RESULT_STATUS_TERMINATED, tb="")
        except BaseException as exc:  # noqa: BLE001
            result = failure_result(exc)
            result.gen_index = emitted
            return result

    def _run_input(self, inp: worker_pb2.ContainerInput) -> float:
        """Run one input on the main thread (a container taking one input at a time)."""
        self._status.set(inp.input_id)
        self.logs.set_input(inp.input_id, inp.call_id)
        started = time.monotonic()
        self._running[inp.input_id] = Running(inp, started)
        result = self._call(inp, started)
        duration = time.monotonic() - started
        self._flush_streams()
        # Gone from _running before the output is queued: a timeout firing now finds nothing.
        self._running.pop(inp.input_id, None)
        self.logs.set_input()
        self._status.clear()
        self._put_output(worker_pb2.ContainerOutput(input_id=inp.input_id, result=result, duration_s=duration))
        return duration

    # -- a batch (@batched) -------------------------------------------------------------------

    def _call_batch(self, inputs: list[worker_pb2.ContainerInput]) -> list[Any]:
        from core_executor._serialization import decode_input, encode_success

        results: list[Any] = [None] * len(inputs)
        calls, positions = [], []
        for i, inp in enumerate(inputs):
            try:
                calls.append(decode_input(inp.input, blobs=self.blobs))
                positions.append(i)
            except BaseException as exc:  # noqa: BLE001 - that input fails alone
                results[i] = failure_result(exc)
        if not calls:
            return results
        try:
            fn = self._service.resolve(inputs[positions[0]].input.method_name)
            args, kwargs = assemble_batch(fn, calls)
            value = fn(*args, **kwargs)
            if inspect.isawaitable(value):
                value = self._run_coro(value)
            for i, item in zip(positions, split_batch(value, len(calls), self._service.spec.name)):
                results[i] = encode_success(item, blobs=self.blobs, inline_limit=INLINE_LIMIT, max_payload=MAX_PAYLOAD)
        except BaseException as exc:  # one exception fails every input of the batch
            failure = failure_result(exc)
            for i in positions:
                results[i] = failure
        return results

    def _run_batch(self, inputs: list[worker_pb2.ContainerInput]) -> None:
        first = inputs[0]
        self._status.set(first.input_id)
        self.logs.set_input(first.input_id, first.call_id)
        started = time.monotonic()
        for inp in inputs:
            self._running[inp.input_id] = Running(inp, started)
        results = self._call_batch(inputs)
        duration = time.monotonic() - started
        self._flush_streams()
        for inp in inputs:
            self._running.pop(inp.input_id, None)
        self.logs.set_input()
        self._status.clear()
        for inp, result in zip(inputs, results):
            self._put_output(worker_pb2.ContainerOutput(input_id=inp.input_id, result=result, duration_s=duration))

    def _loop_batched(self, size: int) -> None:
        while True:
            if self._shutdown:
                self._stop_service()
                self._flush_streams()
                self._exchange(max_inputs=0, timeout_s=0.0)
                return
            response = self._exchange(max_inputs=size, timeout_s=POLL_TIMEOUT_S)
            self._note_response(response)
            inputs = [i for i in response.inputs if i.input_id not in self._cancelled]
            self._cancelled.difference_update(i.input_id for i in response.inputs)
            # A class serves one batched method, but group by method to be safe.
            groups: dict[str, list] = {}
            for inp in inputs:
                groups.setdefault(inp.input.method_name, []).append(inp)
            for group in groups.values():
                self._run_batch(group)

    # -- several at once (@concurrent) --------------------------------------------------------

    def _update_status(self) -> None:
        # The worker reads one id: the oldest running input stands for the container's work.
        ids = list(self._running)
        if ids:
            self._status.set(ids[0])
        else:
            self._status.clear()

    def _loop_concurrent(self, slots: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._concurrent = True
        pool = ThreadPoolExecutor(slots, thread_name_prefix="gpufabric-input")
        loop = self._event_loop()
        self._loop_thread = threading.Thread(target=loop.run_forever, name="gpufabric-loop", daemon=True)
        self._loop_thread.start()
        # Inputs arrive on a stream of their own, so a long poll never holds back outputs,
        # which the flusher sends on the main stream as soon as each input finishes.
        inputs_stream = StreamCaller(self._stub.ContainerStream)
        while True:
            with self._slots:
                while len(self._running) >= slots and not self._shutdown:
                    self._slots.wait(0.1)
            if self._shutdown:
                with self._slots:
                    while self._running:
                        self._slots.wait(0.1)
                self._stop_service()
                self._flush_streams()
                self._exchange(max_inputs=0, timeout_s=0.0)
                inputs_stream.close()
                return
            request = worker_pb2.ContainerExchangeRequest(
                container_id=self.container_id, max_inputs=slots - len(self._running),
                timeout_s=POLL_TIMEOUT_S, ready=True,
            )
            response = self._call_with_retry(inputs_stream, request, POLL_TIMEOUT_S + 30.0)
            self._note_response(response)
            for inp in response.inputs:
                if inp.input_id in self._cancelled:
                    self._cancelled.discard(inp.input_id)
                    continue
                self._start_concurrent(inp, pool)

    def _start_concurrent(self, inp: worker_pb2.ContainerInput, pool: Any) -> None:
        entry = Running(inp, time.monotonic())
        with self._slots:
            self._running[inp.input_id] = entry
            self._update_status()
        try:
            fn = self._service.resolve(inp.input.method_name)
            is_async = self._service.is_async(inp.input.method_name, fn)
        except BaseException as exc:  # noqa: BLE001 - an unknown method fails that input
            self._finish_concurrent(entry, failure_result(exc))
            return
        if is_async:
            entry.future = asyncio.run_coroutine_threadsafe(self._task_input(entry), self._event_loop())
        else:
            pool.submit(self._thread_input, entry)

    def _thread_input(self, entry: Running) -> None:
        self.logs.set_local_input(entry.inp.input_id, entry.inp.call_id)
        try:
            result = self._call(entry.inp, entry.started)
        finally:
            self.logs.set_local_input()
        self._finish_concurrent(entry, result)

    async def _task_input(self, entry: Running) -> None:
        self.logs.set_local_input(entry.inp.input_id, entry.inp.call_id)  # this task's context only
        result = await self._call_async(entry)
        self._finish_concurrent(entry, result)

    def _finish_concurrent(self, entry: Running, result: Any) -> None:
        output = worker_pb2.ContainerOutput(
            input_id=entry.inp.input_id, result=result, duration_s=time.monotonic() - entry.started
        )
        with self._slots:
            if self._running.get(entry.inp.input_id) is not entry:
                return  # already reported (timed out)
            del self._running[entry.inp.input_id]
            self._update_status()
            self._put_output(output)
            self._slots.notify_all()
        self._wake.set()
