"""A tiny in-process control plane speaking the real worker, container and blob gRPC APIs."""
from __future__ import annotations

import itertools
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from concurrent import futures
from typing import Optional

import cloudpickle
import grpc

from gpu_fabric.proto import (
    client_pb2,
    client_pb2_grpc,
    common_pb2,
    worker_pb2,
    worker_pb2_grpc,
)

TOKEN = "test-token"
_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def serialized_definition(fn) -> common_pb2.FunctionDefinition:
    return common_pb2.FunctionDefinition(
        kind=common_pb2.FunctionDefinition.KIND_SERIALIZED,
        pickled_function=cloudpickle.dumps(fn),
        python_version=python_version(),
    )


def make_input(*args, input_id: str = "", timeout_s: float = 0.0, **kwargs) -> worker_pb2.ContainerInput:
    return worker_pb2.ContainerInput(
        input_id=input_id or f"in-{uuid.uuid4().hex[:8]}",
        call_id="call-1",
        input=common_pb2.FunctionInput(args=cloudpickle.dumps((args, kwargs)), python_version=python_version()),
        attempt=1,
        timeout_s=timeout_s,
    )


class FakeFabric(
    worker_pb2_grpc.FabricWorkerServicer,
    worker_pb2_grpc.FabricContainerServicer,
    client_pb2_grpc.FabricClientServicer,
):
    """Records what workers and containers send; tests feed assignments and inputs."""

    def __init__(self, *, poll_s: float = 0.3, port: int = 0) -> None:
        self.poll_s = poll_s
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=_OPTIONS)
        worker_pb2_grpc.add_FabricWorkerServicer_to_server(self, self.server)
        worker_pb2_grpc.add_FabricContainerServicer_to_server(self, self.server)
        client_pb2_grpc.add_FabricClientServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.url = f"grpc://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.registrations: list[worker_pb2.WorkerRegisterRequest] = []
        self.heartbeats: list[worker_pb2.WorkerHeartbeatRequest] = []
        self.known = True
        self.assignments: "queue.Queue[worker_pb2.WorkerAssignment]" = queue.Queue()
        self.streams_opened = 0
        self.exits: "queue.Queue[worker_pb2.WorkerContainerExitedRequest]" = queue.Queue()
        self.worker_logs: list[common_pb2.LogEntry] = []
        self.hellos: dict[str, worker_pb2.ContainerHelloResponse] = {}
        self.hello_seen: "queue.Queue[str]" = queue.Queue()
        self.inputs: dict[str, "queue.Queue[worker_pb2.ContainerInput]"] = {}
        self.exchanges: list[worker_pb2.ContainerExchangeRequest] = []
        self.outputs: "queue.Queue[worker_pb2.ContainerOutput]" = queue.Queue()
        self.container_logs: list[common_pb2.LogEntry] = []
        self.init_failures: "queue.Queue[common_pb2.FunctionResult]" = queue.Queue()
        self.shutdown_ids: set[str] = set()
        self.cancel: dict[str, list[str]] = {}
        self.unavailable_exchanges = 0
        self.forget_containers = False
        self.blobs: dict[str, bytes] = {}
        self._ids = itertools.count(1)

    def start(self) -> "FakeFabric":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=None)

    # -- helpers for tests -------------------------------------------------------------------

    def add_container(self, container_id: str, definition: common_pb2.FunctionDefinition,
                      *, name: str = "fn", is_generator: bool = False) -> None:
        self.hellos[container_id] = worker_pb2.ContainerHelloResponse(
            function_id="fn-1", app_id="app-1", definition=definition,
            spec=common_pb2.FunctionSpec(name=name, is_generator=is_generator),
        )
        self.inputs.setdefault(container_id, queue.Queue())

    def put_input(self, container_id: str, inp: worker_pb2.ContainerInput) -> None:
        self.inputs.setdefault(container_id, queue.Queue()).put(inp)

    def container_env(self, container_id: str, status_file: str = "") -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            GPUFABRIC_URL=self.url, GPUFABRIC_TOKEN=TOKEN, GPUFABRIC_CONTAINER_ID=container_id,
            GPUFABRIC_STATUS_FILE=status_file, GPUFABRIC_IS_CONTAINER="1", CUDA_VISIBLE_DEVICES="",
        )
        return env

    def spawn_container(self, container_id: str, cwd: str, status_file: str = "") -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "core_executor._runtime"],
            env=self.container_env(container_id, status_file), cwd=cwd,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )

    def wait_output(self, timeout: float = 30.0) -> worker_pb2.ContainerOutput:
        return self.outputs.get(timeout=timeout)

    # -- auth --------------------------------------------------------------------------------

    def _auth(self, context: grpc.ServicerContext) -> None:
        metadata = dict(context.invocation_metadata())
        if metadata.get("authorization") not in (f"Bearer {TOKEN}", "Bearer container-token"):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "")

    # -- FabricWorker ------------------------------------------------------------------------

    def WorkerRegister(self, request, context):
        self._auth(context)
        with self.lock:
            self.registrations.append(request)
            self.known = True
        return worker_pb2.WorkerRegisterResponse(
            worker_id=request.worker_id or f"w-{next(self._ids)}",
            heartbeat_interval_s=0.2, heartbeat_timeout_s=2.0,
        )

    def WorkerHeartbeat(self, request, context):
        self._auth(context)
        with self.lock:
            self.heartbeats.append(request)
            return worker_pb2.WorkerHeartbeatResponse(known=self.known)

    def WorkerGetAssignments(self, request, context):
        self._auth(context)
        with self.lock:
            self.streams_opened += 1
        while context.is_active():
            try:
                yield self.assignments.get(timeout=0.1)
            except queue.Empty:
                continue

    def WorkerContainerExited(self, request, context):
        self._auth(context)
        self.exits.put(request)
        return client_pb2.Empty()

    def WorkerPutLogs(self, request, context):
        self._auth(context)
        with self.lock:
            self.worker_logs.extend(request.entries)
        return client_pb2.Empty()

    # -- FabricContainer ---------------------------------------------------------------------

    def ContainerHello(self, request, context):
        self._auth(context)
        hello = self.hellos.get(request.container_id)
        if hello is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown container")
        self.hello_seen.put(request.container_id)
        return hello

    def ContainerStream(self, request_iterator, context):
        for request in request_iterator:
            yield self.ContainerExchange(request, context)

    def ContainerExchange(self, request, context):
        self._auth(context)
        with self.lock:
            if self.unavailable_exchanges > 0:
                self.unavailable_exchanges -= 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
            if self.forget_containers:
                context.abort(grpc.StatusCode.NOT_FOUND, "unknown container")
            self.exchanges.append(request)
            self.container_logs.extend(request.logs)
        for output in request.outputs:
            self.outputs.put(output)
        if request.init_failure.status:
            self.init_failures.put(request.init_failure)
        cid = request.container_id
        response = worker_pb2.ContainerExchangeResponse()
        with self.lock:
            response.cancelled_input_ids.extend(self.cancel.pop(cid, []))
        if request.max_inputs > 0:
            inputs = self.inputs.setdefault(cid, queue.Queue())
            deadline = time.monotonic() + min(request.timeout_s, self.poll_s)
            while cid not in self.shutdown_ids:
                try:
                    response.inputs.append(inputs.get(timeout=0.02))
                    break
                except queue.Empty:
                    if time.monotonic() > deadline:
                        break
            while len(response.inputs) < request.max_inputs:
                try:
                    response.inputs.append(inputs.get_nowait())
                except queue.Empty:
                    break
        response.shutdown = cid in self.shutdown_ids
        return response

    # -- blobs -------------------------------------------------------------------------------

    def BlobPut(self, request_iterator, context):
        self._auth(context)
        data = b"".join(chunk.data for chunk in request_iterator)
        blob_id = f"blob-{next(self._ids)}"
        self.blobs[blob_id] = data
        return client_pb2.BlobPutResponse(blob_id=blob_id)

    def BlobGet(self, request, context):
        self._auth(context)
        data = self.blobs.get(request.blob_id)
        if data is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no blob")
        for start in range(0, max(len(data), 1), 1024 * 1024):
            yield client_pb2.BlobChunk(data=data[start : start + 1024 * 1024])


def decode_value(output: worker_pb2.ContainerOutput, fabric: Optional[FakeFabric] = None):
    result = output.result
    assert result.status == common_pb2.RESULT_STATUS_SUCCESS, (result.exception, result.traceback)
    data = result.data
    if result.data_blob_id:
        assert fabric is not None
        data = fabric.blobs[result.data_blob_id]
    return cloudpickle.loads(data)
