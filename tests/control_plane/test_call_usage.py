"""FunctionCallGetUsage against a real control plane: seconds, GPUs and price per call, lost attempts, workspaces."""
from __future__ import annotations

import threading
import time

import grpc
import pytest

from core_executor import _serialization as ser
from gpu_fabric.control_plane._shared import open_token_table
from gpu_fabric.control_plane._store import SQLiteStore, StoredCall
from gpu_fabric.control_plane._usage import CallUsage, Rate
from gpu_fabric.proto import client_pb2, common_pb2, worker_pb2
from tests.pg_server import pg_url  # noqa: F401 - fixture

from .conftest import RunningPlane
from .test_protocol import _app_and_function, _crash_running_input, _input, _next_assignment

# A machine of two T4s at $3.60 an hour: a one-GPU container is charged half, $1.80 an hour.
WORKER_PRICE = 3.6
T4 = common_pb2.GpuRequest(type="T4", count=1)


def _register_priced_worker(plane, metadata=None):
    req = worker_pb2.WorkerRegisterRequest(
        hostname="priced", python_version="3.11", provider="local", price_per_hour=WORKER_PRICE,
        resources=worker_pb2.WorkerResources(cpu=4, memory_mb=8192, gpus=[
            common_pb2.GpuInfo(index=0, type="T4"), common_pb2.GpuInfo(index=1, type="T4")]),
    )
    return plane.worker.WorkerRegister(req, metadata=metadata or plane.md).worker_id


class SlowContainer(threading.Thread):
    """Speaks the container protocol: sleeps `delay` seconds per input, then squares it (negative
    inputs fail, so retries can be counted)."""

    def __init__(self, plane, container_id, delay: float):
        super().__init__(daemon=True)
        self.plane, self.container_id, self.delay = plane, container_id, delay
        self.stop = threading.Event()

    def run(self):
        outputs, ready = [], True
        while not self.stop.is_set():
            resp = self.plane.container.ContainerExchange(worker_pb2.ContainerExchangeRequest(
                container_id=self.container_id, outputs=outputs, max_inputs=1, timeout_s=0.5, ready=ready), metadata=self.plane.md)
            outputs, ready = [], False
            for inp in resp.inputs:
                time.sleep(self.delay)
                (x,), _ = ser.decode_input(inp.input, blobs=None)
                result = ser.encode_failure(ValueError(f"negative {x}")) if x < 0 else ser.encode_success(x * x, blobs=None)
                outputs.append(worker_pb2.ContainerOutput(input_id=inp.input_id, result=result, duration_s=self.delay))
            if resp.shutdown:
                break


def _usage(plane, call_id, metadata=None):
    return plane.client.FunctionCallGetUsage(client_pb2.FunctionCallGetUsageRequest(call_id=call_id), metadata=metadata or plane.md)


def _spawn(plane, fid, x, metadata=None):
    return plane.client.FunctionMap(client_pb2.FunctionMapRequest(
        function_id=fid, kind=client_pb2.CALL_KIND_SPAWN, inputs=[_input(x)], closed=True), metadata=metadata or plane.md).call_id


def _wait_output(plane, call_id, metadata=None):
    got = plane.client.FunctionGetOutputs(client_pb2.FunctionGetOutputsRequest(call_id=call_id, timeout_s=15),
                                          metadata=metadata or plane.md)
    assert got.outputs, "no output"
    return got.outputs[0]


def test_usage_of_a_gpu_call_with_retries_is_its_attempts_on_the_gpu_at_its_price(plane):
    wid = _register_priced_worker(plane)
    _, fid = _app_and_function(plane, retries=1, gpus=[T4])
    ok = _spawn(plane, fid, 4)
    before = _usage(plane, ok)
    assert (before.num_inputs, before.num_finished, before.attempts, before.seconds) == (1, 0, 0, 0)
    container = SlowContainer(plane, _next_assignment(plane, wid).start.container_id, delay=0.3)
    container.start()
    try:
        assert ser.decode_result(_wait_output(plane, ok).result, blobs=None) == 16
        usage = _usage(plane, ok)  # complete as soon as the output is readable
        assert (usage.call_id, usage.num_inputs, usage.num_finished, usage.num_running) == (ok, 1, 1, 0)
        assert usage.attempts == 1 and usage.gpu_type == "T4" and usage.gpu_count == 1
        assert 0.3 <= usage.seconds < 3.0
        assert usage.gpu_seconds == pytest.approx(usage.seconds)
        assert usage.usd == pytest.approx(usage.seconds * 1.8 / 3600)
        (row,) = usage.capacity
        assert (row.gpu_type, row.gpu_count, row.price_per_hour, row.attempts) == ("T4", 1, pytest.approx(1.8), 1)
        assert usage.lost_attempts == 0

        failing = _spawn(plane, fid, -2)  # fails, is retried once, fails again: two charged attempts
        output = _wait_output(plane, failing)
        assert output.result.status == common_pb2.RESULT_STATUS_FAILURE and output.attempts == 2
        usage = _usage(plane, failing)
        assert usage.attempts == 2 and usage.capacity[0].attempts == 2 and usage.num_finished == 1
        assert 0.6 <= usage.seconds < 6.0
    finally:
        container.stop.set()
        container.join(5)


def test_a_lost_attempt_is_reported_apart_and_not_charged(plane):
    wid = _register_priced_worker(plane)
    _, fid = _app_and_function(plane, retries=0, gpus=[T4])
    # A SIGKILL from outside the user's code: the input is re-queued for free.
    call_id = _crash_running_input(plane, wid, fid, -9, "").call_id
    usage = _usage(plane, call_id)
    assert usage.lost_attempts == 1 and usage.attempts == 0 and usage.seconds == 0 and usage.usd == 0
    container = SlowContainer(plane, _next_assignment(plane, wid).start.container_id, delay=0.05)
    container.start()
    try:
        assert ser.decode_result(_wait_output(plane, call_id).result, blobs=None) == 9
        usage = _usage(plane, call_id)
        assert usage.attempts == 1 and usage.lost_attempts == 1 and usage.gpu_type == "T4"
    finally:
        container.stop.set()
        container.join(5)


def test_usage_of_a_cpu_call_on_a_free_worker(plane):
    req = worker_pb2.WorkerRegisterRequest(hostname="cpu", python_version="3.11", provider="local",
                                           resources=worker_pb2.WorkerResources(cpu=2, memory_mb=4096))
    wid = plane.worker.WorkerRegister(req, metadata=plane.md).worker_id
    _, fid = _app_and_function(plane)
    call_id = _spawn(plane, fid, 3)
    container = SlowContainer(plane, _next_assignment(plane, wid).start.container_id, delay=0.05)
    container.start()
    try:
        _wait_output(plane, call_id)
        usage = _usage(plane, call_id)
        assert usage.attempts == 1 and usage.seconds >= 0.05
        assert (usage.gpu_type, usage.gpu_count, usage.gpu_seconds, usage.usd) == ("", 0, 0, 0)
    finally:
        container.stop.set()
        container.join(5)


def test_unknown_call_is_not_found(plane):
    with pytest.raises(grpc.RpcError) as err:
        _usage(plane, "fc-nope")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_call_of_another_workspace_is_not_found(tmp_path):
    data_dir = str(tmp_path / "fabric")
    table = open_token_table(data_dir)
    a, b = table.create("a", "invoke")[1], table.create("b", "admin")[1]
    a_deploy = table.create("a", "deploy")[1]
    table.close()
    plane = RunningPlane(data_dir, heartbeat_timeout_s=5.0)
    try:
        md = lambda token: (("authorization", f"Bearer {token}"),)  # noqa: E731
        app_id = plane.client.AppCreate(client_pb2.AppCreateRequest(name="u", kind=client_pb2.APP_KIND_DEPLOYED), metadata=md(a_deploy)).app_id
        fid = plane.client.FunctionCreate(client_pb2.FunctionCreateRequest(
            app_id=app_id, spec=common_pb2.FunctionSpec(name="f"),
            definition=common_pb2.FunctionDefinition(kind=common_pb2.FunctionDefinition.KIND_SERIALIZED, pickled_function=b"x")),
            metadata=md(a_deploy)).function_id
        call_id = _spawn(plane, fid, 1, metadata=md(a))
        assert _usage(plane, call_id, metadata=md(a)).num_inputs == 1
        with pytest.raises(grpc.RpcError) as err:
            _usage(plane, call_id, metadata=md(b))  # even an admin of workspace b
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        plane.stop()


def test_usage_survives_a_restart(tmp_path):
    data = str(tmp_path / "f")
    plane = RunningPlane(data)
    try:
        wid = _register_priced_worker(plane)
        _, fid = _app_and_function(plane, gpus=[T4])
        call_id = _spawn(plane, fid, 5)
        container = SlowContainer(plane, _next_assignment(plane, wid).start.container_id, delay=0.1)
        container.start()
        _wait_output(plane, call_id)
        before = _usage(plane, call_id)
        container.stop.set()
        container.join(5)
    finally:
        plane.stop()
    plane = RunningPlane(data)
    try:
        after = _usage(plane, call_id)
        assert after == before and after.gpu_type == "T4" and after.seconds >= 0.1
    finally:
        plane.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def state_store(request, tmp_path):
    if request.param == "sqlite":
        store = SQLiteStore(str(tmp_path / "state.sqlite3"))
    else:
        from gpu_fabric.control_plane._store_pg import PostgresStore

        store = PostgresStore(request.getfixturevalue("pg_url"), serve_lock=False)
    yield store
    store.close()


def test_stores_keep_a_calls_usage(state_store):
    usage = CallUsage()
    usage.charge(Rate("A100-80GB", 2, 7.5), 12.0)
    usage.lose(3.0)
    state_store.write_batch(calls=[StoredCall("fc-1", "fu-1", 2, 1, 1, True, False, 5.0, 2, usage.encode()),
                                   StoredCall("fc-2", "fu-1", 2, 1, 0, True, False, 6.0)])
    stored = {c.call_id: c for c in state_store.calls()}
    back = CallUsage.decode(stored["fc-1"].usage).to_proto()
    assert back == usage.to_proto() and back.gpu_seconds == 24.0 and back.usd == pytest.approx(12.0 * 7.5 / 3600)
    assert stored["fc-2"].usage == b"" and CallUsage.decode(stored["fc-2"].usage) is None
