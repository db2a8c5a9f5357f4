"""A small in-process FabricClient servicer that speaks the real protocol (a test seam for the SDK).

It runs functions in this process on a thread pool: KIND_SERIALIZED definitions are unpickled,
KIND_FILE ones imported by module name (falling back to the source file).
"""
from __future__ import annotations

import importlib
import importlib.util
import itertools
import sys
import threading
import time
import traceback
from concurrent import futures
from typing import Any

import cloudpickle
import grpc

from core_executor import _serialization as ser
from gpu_fabric.proto import client_pb2 as pb
from gpu_fabric.proto import client_pb2_grpc, common_pb2

TOKEN = "test-token"


def _load(definition: Any) -> Any:
    if definition.kind == common_pb2.FunctionDefinition.KIND_SERIALIZED:
        return cloudpickle.loads(definition.pickled_function)
    module = sys.modules.get(definition.module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(definition.module_name, definition.source_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    obj = module
    for part in definition.qualname.split("."):
        obj = getattr(obj, part)
    return obj.get_raw_f() if hasattr(obj, "get_raw_f") else obj


class _Call:
    def __init__(self, call_id: str, function_id: str, kind: int):
        self.call_id = call_id
        self.function_id = function_id
        self.kind = kind
        self.num_inputs = 0
        self.outputs: list[Any] = []  # FunctionOutput, seq = position + 1
        self.closed = False
        self.cancelled = False


class FakeFabric(client_pb2_grpc.FabricClientServicer):
    """State and behaviour of the fake; knobs are plain attributes tests may change."""

    def __init__(self) -> None:
        self.inline_limit = 2 * 1024 * 1024
        self.max_payload = 1 << 30
        self.max_inputs_per_batch = 1000
        self.container_python_version = ser.python_version()
        self.heartbeat_timeout_s = 30.0
        self.reject_put_inputs = 0  # answer RESOURCE_EXHAUSTED this many times
        self.unavailable_hellos = 0  # answer UNAVAILABLE this many times
        self.unavailable_puts = 0  # FunctionPutInputs: UNAVAILABLE, nothing stored, this many times
        self.lost_put_replies = 0  # FunctionPutInputs: batch stored, then UNAVAILABLE, this many times
        self.invoke_wait_cap_s = 25.0
        self.print_per_input = False  # add "ran <args>" log entries for each input
        self.requests: list[tuple[str, Any]] = []
        self.apps: dict[str, Any] = {}
        self.functions: dict[str, dict[str, Any]] = {}
        self.calls: dict[str, _Call] = {}
        self.blobs: dict[str, bytes] = {}
        self.logs: dict[str, list[Any]] = {}
        self.cond = threading.Condition()
        self.ids = itertools.count(1)
        self.pool = futures.ThreadPoolExecutor(max_workers=8)

    # ---- helpers ----

    def _check(self, context: Any, name: str, request: Any) -> None:
        self.requests.append((name, request))
        md = dict(context.invocation_metadata())
        if md.get("authorization") != f"Bearer {TOKEN}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "")

    def names(self) -> list[str]:
        return [name for name, _ in self.requests]

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self.ids)}"

    def add_log(self, app_id: str, data: str, function_name: str = "", stream: int = common_pb2.LOG_STREAM_STDOUT) -> int:
        with self.cond:
            entries = self.logs.setdefault(app_id, [])
            seq = len(entries) + 1
            entries.append(common_pb2.LogEntry(seq=seq, data=data, function_name=function_name, stream=stream, app_id=app_id))
            self.cond.notify_all()
            return seq

    def _run_input(self, call: _Call, idx: int, inp: Any) -> None:
        fn = self.functions[call.function_id]
        log_seq = 0
        try:
            args, kwargs = ser.decode_input(inp, blobs=self)
            if self.print_per_input:
                log_seq = self.add_log(fn["app_id"], f"ran {args}", fn["spec"].name)
            value = fn["callable"](*args, **kwargs)
            if fn["spec"].is_generator:
                count = 0
                for count, item in enumerate(value, 1):
                    item_result = ser.encode_success(item, blobs=self)
                    item_result.gen_index = count - 1
                    self._output(call, idx, item_result, log_seq)
                result = ser.encode_success(None, blobs=self)
                result.gen_index, result.gen_done = count, True
            else:
                result = ser.encode_success(value, blobs=self, inline_limit=self.inline_limit)
        except BaseException as exc:  # noqa: BLE001
            result = ser.encode_failure(exc)
        self._output(call, idx, result, log_seq)

    def _output(self, call: _Call, idx: int, result: Any, log_seq: int) -> None:
        with self.cond:
            if call.cancelled:
                return
            seq = len(call.outputs) + 1
            call.outputs.append(pb.FunctionOutput(input_id=f"{call.call_id}:{idx}", idx=idx, result=result,
                                                  attempts=1, log_seq=log_seq, seq=seq))
            self.cond.notify_all()

    def _put(self, call: _Call, inputs: Any) -> list[str]:
        ids = []
        for inp in inputs:
            idx = call.num_inputs
            call.num_inputs += 1
            ids.append(f"{call.call_id}:{idx}")
            self.pool.submit(self._run_input, call, idx, inp)
        return ids

    # BlobIO for the serialization helpers
    def put(self, data: bytes) -> str:
        blob_id = self._new_id("blob")
        self.blobs[blob_id] = bytes(data)
        return blob_id

    def get(self, blob_id: str) -> bytes:
        return self.blobs[blob_id]

    # ---- RPCs ----

    def Hello(self, request, context):
        self._check(context, "Hello", request)
        if self.unavailable_hellos > 0:
            self.unavailable_hellos -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "starting")
        return pb.HelloResponse(server_version="fake", default_python_version=ser.python_version(),
                                inline_limit_bytes=self.inline_limit, max_payload_bytes=self.max_payload,
                                max_inputs_per_batch=self.max_inputs_per_batch, workspace="test")

    def AppCreate(self, request, context):
        self._check(context, "AppCreate", request)
        app_id = self._new_id("ap")
        state = pb.APP_STATE_DEPLOYED if request.kind == pb.APP_KIND_DEPLOYED else pb.APP_STATE_RUNNING
        self.apps[app_id] = pb.AppInfo(app_id=app_id, name=request.name, kind=request.kind, state=state,
                                       created_at=time.time())
        return pb.AppCreateResponse(app_id=app_id, heartbeat_timeout_s=self.heartbeat_timeout_s)

    def AppHeartbeat(self, request, context):
        self._check(context, "AppHeartbeat", request)
        return pb.Empty()

    def AppStop(self, request, context):
        self._check(context, "AppStop", request)
        app = self.apps.get(request.app_id)
        if app is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no app {request.app_id}")
        with self.cond:
            app.state = pb.APP_STATE_STOPPED
            self.cond.notify_all()
        return pb.Empty()

    def AppList(self, request, context):
        self._check(context, "AppList", request)
        apps = [a for a in self.apps.values() if request.include_stopped or a.state != pb.APP_STATE_STOPPED]
        return pb.AppListResponse(apps=apps)

    def AppGetLogs(self, request, context):
        self._check(context, "AppGetLogs", request)
        cursor = request.cursor
        while context.is_active():
            with self.cond:
                entries = [e for e in self.logs.get(request.app_id, []) if e.seq > cursor]
                done = self.apps[request.app_id].state == pb.APP_STATE_STOPPED
                if not entries and not done and request.follow:
                    self.cond.wait(0.2)
                    continue
            if entries:
                cursor = entries[-1].seq
            yield pb.LogBatch(entries=entries, app_done=done)
            if done or not request.follow:
                return

    def FunctionCreate(self, request, context):
        self._check(context, "FunctionCreate", request)
        function_id = self._new_id("fu")
        self.functions[function_id] = {"spec": request.spec, "definition": request.definition,
                                       "callable": _load(request.definition), "app_id": request.app_id}
        self.apps[request.app_id].function_names.append(request.spec.name)
        return pb.FunctionCreateResponse(function_id=function_id, container_python_version=self.container_python_version)

    def FunctionLookup(self, request, context):
        self._check(context, "FunctionLookup", request)
        for function_id, fn in reversed(list(self.functions.items())):
            app = self.apps[fn["app_id"]]
            if app.name == request.app_name and app.kind == pb.APP_KIND_DEPLOYED and fn["spec"].name == request.function_name:
                return pb.FunctionLookupResponse(function_id=function_id, spec=fn["spec"], app_id=app.app_id,
                                                 container_python_version=self.container_python_version)
        context.abort(grpc.StatusCode.NOT_FOUND, f"no function {request.app_name}.{request.function_name}")

    def FunctionMap(self, request, context):
        self._check(context, "FunctionMap", request)
        call = _Call(self._new_id("fc"), request.function_id, request.kind)
        with self.cond:
            self.calls[call.call_id] = call
            ids = self._put(call, request.inputs)
            call.closed = request.closed
        return pb.FunctionMapResponse(call_id=call.call_id, input_ids=ids)

    def FunctionPutInputs(self, request, context):
        self._check(context, "FunctionPutInputs", request)
        if self.reject_put_inputs > 0:
            self.reject_put_inputs -= 1
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full")
        if self.unavailable_puts > 0:
            self.unavailable_puts -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        call = self.calls[request.call_id]
        with self.cond:
            ids = self._put(call, request.inputs)
            call.closed = request.closed
            self.cond.notify_all()
        if self.lost_put_replies > 0:  # the fabric stored the batch, then the connection dropped
            self.lost_put_replies -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "connection dropped")
        return pb.FunctionPutInputsResponse(input_ids=ids)

    def FunctionInvoke(self, request, context):
        self._check(context, "FunctionInvoke", request)
        call = _Call(self._new_id("fc"), request.function_id, pb.CALL_KIND_REMOTE)
        with self.cond:
            self.calls[call.call_id] = call
            self._put(call, [request.input])
            call.closed = True
            self.cond.wait_for(lambda: call.outputs, timeout=min(request.timeout_s, self.invoke_wait_cap_s))
            if call.outputs:
                return pb.FunctionInvokeResponse(call_id=call.call_id, output=call.outputs[0])
        return pb.FunctionInvokeResponse(call_id=call.call_id)

    def FunctionInvokeStream(self, request_iterator, context):
        for request in request_iterator:
            yield self.FunctionInvoke(request, context)

    def FunctionGetOutputs(self, request, context):
        self._check(context, "FunctionGetOutputs", request)
        call = self.calls.get(request.call_id)
        if call is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no call {request.call_id}")
        with self.cond:
            self.cond.wait_for(
                lambda: len(call.outputs) > request.cursor or call.cancelled
                or (call.closed and request.cursor >= call.num_inputs),
                timeout=request.timeout_s,
            )
            outputs = call.outputs[request.cursor : request.cursor + (request.max_items or 1000)]
            return pb.FunctionGetOutputsResponse(outputs=outputs, num_inputs=call.num_inputs,
                                                 num_done=len(call.outputs), closed=call.closed,
                                                 cancelled=call.cancelled)

    def FunctionCallCancel(self, request, context):
        self._check(context, "FunctionCallCancel", request)
        with self.cond:
            call = self.calls[request.call_id]
            call.cancelled = True
            self.cond.notify_all()
        return pb.Empty()

    def FunctionCallGetInfo(self, request, context):
        self._check(context, "FunctionCallGetInfo", request)
        call = self.calls.get(request.call_id)
        if call is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no call {request.call_id}")
        return pb.FunctionCallInfo(call_id=call.call_id, function_id=call.function_id, kind=call.kind,
                                   num_inputs=call.num_inputs, num_done=len(call.outputs), closed=call.closed,
                                   cancelled=call.cancelled)

    def BlobPut(self, request_iterator, context):
        self._check(context, "BlobPut", None)
        chunks = list(request_iterator)
        data = b"".join(c.data for c in chunks)
        if chunks and chunks[0].total_size != len(data):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "size mismatch")
        return pb.BlobPutResponse(blob_id=self.put(data))

    def BlobGet(self, request, context):
        self._check(context, "BlobGet", request)
        data = self.blobs[request.blob_id]
        for offset in range(0, max(len(data), 1), 1024 * 1024):
            yield pb.BlobChunk(data=data[offset : offset + 1024 * 1024], total_size=len(data) if offset == 0 else 0)


class FakeServer:
    """A real gRPC server on loopback serving a FakeFabric."""

    def __init__(self) -> None:
        self.fabric = FakeFabric()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        client_pb2_grpc.add_FabricClientServicer_to_server(self.fabric, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.url = f"grpc://127.0.0.1:{port}"
        self.token = TOKEN
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)
        self.fabric.pool.shutdown(wait=False, cancel_futures=True)


def format_exc() -> str:
    return traceback.format_exc()
