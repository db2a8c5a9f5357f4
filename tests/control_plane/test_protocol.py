"""The control plane over real gRPC, driven by raw protocol calls (client, worker and container roles)."""
from __future__ import annotations

import hashlib
import threading
import time

import grpc
import pytest

from core_executor import _serialization as ser
from gpu_fabric.proto import client_pb2, common_pb2, worker_pb2

from .conftest import RunningPlane


def _register_worker(plane, cpu=2.0, gpus=()):
    req = worker_pb2.WorkerRegisterRequest(
        hostname="test", python_version="3.11", provider="local",
        resources=worker_pb2.WorkerResources(cpu=cpu, memory_mb=4096, gpus=list(gpus)),
    )
    return plane.worker.WorkerRegister(req, metadata=plane.md).worker_id


def _app_and_function(plane, retries=0, name="square", **spec_fields):
    app_id = plane.client.AppCreate(client_pb2.AppCreateRequest(name="t", kind=client_pb2.APP_KIND_EPHEMERAL), metadata=plane.md).app_id
    spec = common_pb2.FunctionSpec(name=name, retries=common_pb2.RetryPolicy(max_retries=retries), **spec_fields)
    definition = common_pb2.FunctionDefinition(kind=common_pb2.FunctionDefinition.KIND_SERIALIZED, pickled_function=b"x")
    fid = plane.client.FunctionCreate(client_pb2.FunctionCreateRequest(app_id=app_id, spec=spec, definition=definition), metadata=plane.md).function_id
    return app_id, fid


def _next_assignment(plane, worker_id, timeout=5.0):
    stream = plane.worker.WorkerGetAssignments(worker_pb2.WorkerGetAssignmentsRequest(worker_id=worker_id), metadata=plane.md, timeout=timeout)
    try:
        return next(iter(stream))
    finally:
        stream.cancel()


class FakeContainer:
    """Speaks the container protocol: squares its integer argument, or raises for negative ones."""

    def __init__(self, plane, container_id):
        self.plane, self.container_id = plane, container_id
        self.stop = threading.Event()
        self.seen = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        outputs = []
        ready = True
        while not self.stop.is_set():
            resp = self.plane.container.ContainerExchange(
                worker_pb2.ContainerExchangeRequest(container_id=self.container_id, outputs=outputs, max_inputs=4, timeout_s=0.5, ready=ready),
                metadata=self.plane.md,
            )
            outputs = []
            for inp in resp.inputs:
                self.seen.append(inp.input_id)
                args, _ = ser.decode_input(inp.input, blobs=None)
                x = args[0] if args else 0  # a scheduled run has no arguments
                if x < 0:
                    result = ser.encode_failure(ValueError(f"negative {x}"))
                else:
                    result = ser.encode_success(x * x, blobs=None)
                outputs.append(worker_pb2.ContainerOutput(input_id=inp.input_id, result=result, duration_s=0.0001))
            if resp.shutdown:
                break
        if outputs:
            self.plane.container.ContainerExchange(worker_pb2.ContainerExchangeRequest(container_id=self.container_id, outputs=outputs), metadata=self.plane.md)


def _input(x):
    return ser.encode_input((x,), {}, blobs=None)


def test_every_rpc_needs_the_token(plane):
    with pytest.raises(grpc.RpcError) as err:
        plane.client.Hello(client_pb2.HelloRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:
        plane.client.Hello(client_pb2.HelloRequest(), metadata=(("authorization", "Bearer wrong"),))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "secret" not in err.value.details()
    stream = plane.client.AppGetLogs(client_pb2.AppGetLogsRequest(app_id="x"), metadata=(("authorization", "nope"),))
    with pytest.raises(grpc.RpcError) as err:
        list(stream)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    hello = plane.client.Hello(client_pb2.HelloRequest(), metadata=plane.md)
    assert hello.inline_limit_bytes == 2 * 1024 * 1024


def test_malformed_and_missing(plane):
    with pytest.raises(grpc.RpcError) as err:
        plane.client.AppCreate(client_pb2.AppCreateRequest(name="", kind=client_pb2.APP_KIND_EPHEMERAL), metadata=plane.md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        plane.client.FunctionInvoke(client_pb2.FunctionInvokeRequest(function_id="fu-nope", input=_input(1)), metadata=plane.md)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    _, fid = _app_and_function(plane)
    with pytest.raises(grpc.RpcError) as err:
        plane.client.FunctionMap(client_pb2.FunctionMapRequest(function_id=fid, kind=client_pb2.CALL_KIND_MAP, inputs=[common_pb2.FunctionInput()]), metadata=plane.md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        plane.client.FunctionLookup(client_pb2.FunctionLookupRequest(app_name="nope", function_name="f"), metadata=plane.md)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "gpufabric deploy" in err.value.details()


def test_invoke_starts_a_container_and_returns_the_output(plane):
    wid = _register_worker(plane)
    _, fid = _app_and_function(plane)
    result = {}
    t = threading.Thread(target=lambda: result.update(resp=plane.client.FunctionInvoke(
        client_pb2.FunctionInvokeRequest(function_id=fid, input=_input(7), timeout_s=10), metadata=plane.md)))
    t.start()
    assignment = _next_assignment(plane, wid)
    assert assignment.start.function_id == fid
    # The assignment names the code the container will load (workers key warm-start snapshots by it).
    hello = plane.container.ContainerHello(
        worker_pb2.ContainerHelloRequest(container_id=assignment.start.container_id), metadata=plane.md)
    assert assignment.start.definition_digest == hashlib.sha256(
        hello.definition.SerializeToString(deterministic=True)).hexdigest()
    container = FakeContainer(plane, assignment.start.container_id)
    container.thread.start()
    t.join(10)
    output = result["resp"].output
    assert ser.decode_result(output.result, blobs=None) == 49
    assert output.attempts == 1
    container.stop.set()
    container.thread.join(5)


def test_the_definition_digest_follows_a_redeploy(plane):
    """Same function, new code: its next container's assignment names the new definition."""
    wid = _register_worker(plane)
    app_id, fid = _app_and_function(plane)
    spec = common_pb2.FunctionSpec(name="square")
    digests = []
    for code in (b"x", b"y"):
        definition = common_pb2.FunctionDefinition(kind=common_pb2.FunctionDefinition.KIND_SERIALIZED,
                                                   pickled_function=code)
        assert plane.client.FunctionCreate(client_pb2.FunctionCreateRequest(app_id=app_id, spec=spec, definition=definition),
                                           metadata=plane.md).function_id == fid
        plane.client.FunctionMap(client_pb2.FunctionMapRequest(function_id=fid, kind=client_pb2.CALL_KIND_MAP,
                                                               inputs=[_input(2)]), metadata=plane.md)
        start = _next_assignment(plane, wid).start
        hello = plane.container.ContainerHello(worker_pb2.ContainerHelloRequest(container_id=start.container_id),
                                               metadata=plane.md)
        assert hello.definition.pickled_function == code
        assert start.definition_digest == hashlib.sha256(
            hello.definition.SerializeToString(deterministic=True)).hexdigest()
        digests.append(start.definition_digest)
        container = FakeContainer(plane, start.container_id)  # runs the input, so none is left to re-queue
        container.thread.start()
        deadline = time.monotonic() + 10
        while not container.seen and time.monotonic() < deadline:
            time.sleep(0.02)
        container.stop.set()
        container.thread.join(5)
        plane.worker.WorkerContainerExited(worker_pb2.WorkerContainerExitedRequest(
            worker_id=wid, container_id=start.container_id, exit_code=0), metadata=plane.md)
    assert digests[0] != digests[1]


def test_map_outputs_by_cursor_and_retries(plane):
    wid = _register_worker(plane)
    _, fid = _app_and_function(plane, retries=2)
    resp = plane.client.FunctionMap(
        client_pb2.FunctionMapRequest(function_id=fid, kind=client_pb2.CALL_KIND_MAP, inputs=[_input(i) for i in range(50)]),
        metadata=plane.md,
    )
    plane.client.FunctionPutInputs(client_pb2.FunctionPutInputsRequest(call_id=resp.call_id, inputs=[_input(-1)], closed=True), metadata=plane.md)
    container = FakeContainer(plane, _next_assignment(plane, wid).start.container_id)
    container.thread.start()
    cursor, outputs = 0, []
    deadline = time.time() + 20
    while time.time() < deadline:
        got = plane.client.FunctionGetOutputs(client_pb2.FunctionGetOutputsRequest(call_id=resp.call_id, cursor=cursor, timeout_s=2), metadata=plane.md)
        outputs += got.outputs
        if got.outputs:
            cursor = got.outputs[-1].seq
        if got.closed and got.num_done == got.num_inputs == 51:
            break
    assert sorted(o.idx for o in outputs) == list(range(51))
    values = {o.idx: o for o in outputs}
    assert ser.decode_result(values[10].result, blobs=None) == 100
    failed = values[50]
    assert failed.attempts == 3  # first try + 2 retries
    with pytest.raises(ValueError, match="negative -1"):
        ser.decode_result(failed.result, blobs=None)
    # Passing the cursor acknowledged everything: nothing is kept.
    plane.client.FunctionGetOutputs(client_pb2.FunctionGetOutputsRequest(call_id=resp.call_id, cursor=cursor, timeout_s=0), metadata=plane.md)
    assert plane.run_in_loop(lambda: len(plane.engine.calls[resp.call_id].outputs)) == 0
    container.stop.set()
    container.thread.join(5)


def test_lost_worker_requeues_without_spending_retries(plane):
    wid = _register_worker(plane)
    _, fid = _app_and_function(plane, retries=0)
    call = plane.client.FunctionMap(client_pb2.FunctionMapRequest(function_id=fid, kind=client_pb2.CALL_KIND_SPAWN, inputs=[_input(3)], closed=True), metadata=plane.md)
    cid = _next_assignment(plane, wid).start.container_id
    # The container takes the input and then its worker goes silent.
    resp = plane.container.ContainerExchange(worker_pb2.ContainerExchangeRequest(container_id=cid, max_inputs=1, timeout_s=2, ready=True), metadata=plane.md)
    assert len(resp.inputs) == 1
    wid2 = _register_worker(plane)
    deadline = time.time() + 10
    assignment = None
    while time.time() < deadline and assignment is None:
        plane.worker.WorkerHeartbeat(worker_pb2.WorkerHeartbeatRequest(worker_id=wid2), metadata=plane.md)
        try:
            assignment = _next_assignment(plane, wid2, timeout=0.5)
        except grpc.RpcError:
            pass
    assert assignment is not None, "the lost worker's input was not re-placed"
    container = FakeContainer(plane, assignment.start.container_id)
    container.thread.start()
    got = plane.client.FunctionGetOutputs(client_pb2.FunctionGetOutputsRequest(call_id=call.call_id, timeout_s=10), metadata=plane.md)
    assert ser.decode_result(got.outputs[0].result, blobs=None) == 9
    container.stop.set()
    container.thread.join(5)


def _crash_running_input(plane, wid, fid, exit_code, stderr_tail):
    call = plane.client.FunctionMap(client_pb2.FunctionMapRequest(function_id=fid, kind=client_pb2.CALL_KIND_SPAWN, inputs=[_input(3)], closed=True), metadata=plane.md)
    cid = _next_assignment(plane, wid).start.container_id
    resp = plane.container.ContainerExchange(worker_pb2.ContainerExchangeRequest(container_id=cid, max_inputs=1, timeout_s=2, ready=True), metadata=plane.md)
    plane.worker.WorkerContainerExited(worker_pb2.WorkerContainerExitedRequest(
        worker_id=wid, container_id=cid, exit_code=exit_code, running_input_id=resp.inputs[0].input_id, stderr_tail=stderr_tail), metadata=plane.md)
    return call


def test_container_crash_spends_a_retry_and_names_the_exit(plane):
    wid = _register_worker(plane)
    _, fid = _app_and_function(plane, retries=0)
    call = _crash_running_input(plane, wid, fid, -11, "Fatal Python error: Segmentation fault\n")
    got = plane.client.FunctionGetOutputs(client_pb2.FunctionGetOutputsRequest(call_id=call.call_id, timeout_s=5), metadata=plane.md)
    result = got.outputs[0].result
    assert result.status == common_pb2.RESULT_STATUS_INTERNAL_FAILURE
    assert "exited with code -11" in result.exception


def test_an_outside_sigkill_is_not_charged_but_out_of_memory_is(plane):
    wid = _register_worker(plane)
    _, hungry = _app_and_function(plane, retries=0, name="hungry")
    oom = _crash_running_input(plane, wid, hungry, -9, "the container ran out of memory (limit 512 MiB)\n")
    got = plane.client.FunctionGetOutputs(client_pb2.FunctionGetOutputsRequest(call_id=oom.call_id, timeout_s=5), metadata=plane.md)
    assert got.outputs[0].result.status == common_pb2.RESULT_STATUS_INTERNAL_FAILURE
    assert "out of memory" in got.outputs[0].result.exception
    _, fid = _app_and_function(plane, retries=0)
    killed = _crash_running_input(plane, wid, fid, -9, "")
    # Re-queued for free: no output, and a new container is asked for to run it again.
    got = plane.client.FunctionGetOutputs(client_pb2.FunctionGetOutputsRequest(call_id=killed.call_id, timeout_s=1), metadata=plane.md)
    assert not got.outputs and got.num_done == 0
    assert _next_assignment(plane, wid).start.function_id == fid


def test_backpressure_is_resource_exhausted(tmp_path):
    plane = RunningPlane(str(tmp_path / "f"), max_queued_per_function=10)
    try:
        _, fid = _app_and_function(plane)
        call = plane.client.FunctionMap(client_pb2.FunctionMapRequest(function_id=fid, kind=client_pb2.CALL_KIND_MAP, inputs=[_input(i) for i in range(8)]), metadata=plane.md)
        with pytest.raises(grpc.RpcError) as err:
            plane.client.FunctionPutInputs(client_pb2.FunctionPutInputsRequest(call_id=call.call_id, inputs=[_input(i) for i in range(5)]), metadata=plane.md)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        info = plane.client.FunctionCallGetInfo(client_pb2.FunctionCallGetInfoRequest(call_id=call.call_id), metadata=plane.md)
        assert info.num_inputs == 8  # nothing of the refused batch was taken
    finally:
        plane.stop()


def test_only_an_ephemeral_app_is_detached_and_it_stays_so_across_a_restart(tmp_path):
    data = str(tmp_path / "f")
    plane = RunningPlane(data)
    try:
        with pytest.raises(grpc.RpcError) as err:
            plane.client.AppCreate(client_pb2.AppCreateRequest(name="d", kind=client_pb2.APP_KIND_DEPLOYED, detach=True),
                                   metadata=plane.md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "ephemeral" in err.value.details()
        app_id = plane.client.AppCreate(client_pb2.AppCreateRequest(name="d", kind=client_pb2.APP_KIND_EPHEMERAL, detach=True),
                                        metadata=plane.md).app_id
    finally:
        plane.stop()
    plane = RunningPlane(data)
    try:
        apps = plane.client.AppList(client_pb2.AppListRequest(), metadata=plane.md).apps
        assert [a.state for a in apps if a.app_id == app_id] == [client_pb2.APP_STATE_DETACHED]
    finally:
        plane.stop()


def test_accepted_inputs_and_outputs_survive_a_restart(tmp_path):
    data = str(tmp_path / "f")
    plane = RunningPlane(data)
    _, fid = _app_and_function(plane)
    call = plane.client.FunctionMap(client_pb2.FunctionMapRequest(function_id=fid, kind=client_pb2.CALL_KIND_SPAWN, inputs=[_input(5)], closed=True), metadata=plane.md)
    plane.stop()
    plane = RunningPlane(data)
    try:
        wid = _register_worker(plane)
        container = FakeContainer(plane, _next_assignment(plane, wid).start.container_id)
        container.thread.start()
        got = plane.client.FunctionGetOutputs(client_pb2.FunctionGetOutputsRequest(call_id=call.call_id, timeout_s=10), metadata=plane.md)
        assert ser.decode_result(got.outputs[0].result, blobs=None) == 25
        container.stop.set()
        container.thread.join(5)
    finally:
        plane.stop()


def test_blobs_round_trip_and_limits(plane):
    data = bytes(range(256)) * 20000  # ~5 MB, several chunks
    chunks = [client_pb2.BlobChunk(data=data[i:i + (1 << 20)], total_size=len(data) if i == 0 else 0) for i in range(0, len(data), 1 << 20)]
    blob_id = plane.client.BlobPut(iter(chunks), metadata=plane.md).blob_id
    back = b"".join(c.data for c in plane.client.BlobGet(client_pb2.BlobGetRequest(blob_id=blob_id), metadata=plane.md))
    assert back == data
    with pytest.raises(grpc.RpcError) as err:
        plane.client.BlobPut(iter([client_pb2.BlobChunk(data=b"x", total_size=10)]), metadata=plane.md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        list(plane.client.BlobGet(client_pb2.BlobGetRequest(blob_id="bl-" + "0" * 32), metadata=plane.md))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_unplaceable_gpu_request_is_explained(plane):
    _register_worker(plane)
    app_id, fid = _app_and_function(plane, gpus=[common_pb2.GpuRequest(type="H100", count=1)])
    plane.client.FunctionMap(client_pb2.FunctionMapRequest(function_id=fid, kind=client_pb2.CALL_KIND_SPAWN, inputs=[_input(1)], closed=True), metadata=plane.md)
    batch = next(iter(plane.client.AppGetLogs(client_pb2.AppGetLogsRequest(app_id=app_id), metadata=plane.md)))
    assert any("H100" in e.data and e.stream == common_pb2.LOG_STREAM_SYSTEM for e in batch.entries)


def test_a_store_from_before_a_schema_change_is_migrated(tmp_path):
    import sqlite3

    from gpu_fabric.control_plane import SQLiteStore

    path = str(tmp_path / "old.sqlite3")
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE calls (call_id TEXT PRIMARY KEY, function_id TEXT NOT NULL, kind INTEGER NOT NULL, "
                "num_inputs INTEGER NOT NULL, num_done INTEGER NOT NULL, closed INTEGER NOT NULL, "
                "cancelled INTEGER NOT NULL, created_at REAL NOT NULL)")
    old.execute("INSERT INTO calls VALUES ('fc-1', 'fu-1', 1, 1, 1, 1, 0, 0)")
    old.commit()
    old.close()
    store = SQLiteStore(path)
    (call,) = store.calls()
    assert call.call_id == "fc-1" and call.next_seq == 1
    store.close()
    SQLiteStore(path).close()  # opening again applies nothing twice


def test_a_second_control_plane_on_the_same_data_dir_is_refused(tmp_path):
    from gpu_fabric.control_plane import DataDirInUse

    plane = RunningPlane(str(tmp_path / "f"))
    try:
        with pytest.raises(DataDirInUse, match="in use by a running fabric"):
            RunningPlane(str(tmp_path / "f"))
    finally:
        plane.stop()
    RunningPlane(str(tmp_path / "f")).stop()  # free again once the first stopped


def test_binding_class_parameters_gives_a_function_per_parameter_set(plane):
    _register_worker(plane)
    app_id, cls_id = _app_and_function(plane, name="Model", cls_name="Model", method_names=["run"])
    bind = lambda params, **kw: plane.client.FunctionBindParams(
        client_pb2.FunctionBindParamsRequest(function_id=cls_id, pickled_params=params, **kw), metadata=plane.md).function_id
    a1, a2, b = bind(b"a"), bind(b"a"), bind(b"b")
    assert a1 == a2 and a1 != b and cls_id not in (a1, b)
    with_gpu = bind(b"a", options=common_pb2.FunctionSpec(gpus=[common_pb2.GpuRequest(type="H100", count=1)]), has_options=True)
    assert with_gpu != a1
    # A bound function is not an app function of its own name.
    listing = plane.client.AppList(client_pb2.AppListRequest(), metadata=plane.md)
    assert [a.function_names for a in listing.apps if a.app_id == app_id] == [["Model"]]
    _, plain = _app_and_function(plane, name="plain")
    with pytest.raises(grpc.RpcError) as err:
        plane.client.FunctionBindParams(client_pb2.FunctionBindParamsRequest(function_id=plain, pickled_params=b"a"), metadata=plane.md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_batched_functions_get_their_batch_filled_within_the_wait(plane):
    wid = _register_worker(plane)
    _, fid = _app_and_function(plane, batch_max_size=4, batch_wait_ms=1000)
    call = plane.client.FunctionMap(client_pb2.FunctionMapRequest(function_id=fid, kind=client_pb2.CALL_KIND_MAP, inputs=[_input(1)]), metadata=plane.md)
    cid = _next_assignment(plane, wid).start.container_id
    got = {}
    t = threading.Thread(target=lambda: got.update(resp=plane.container.ContainerExchange(
        worker_pb2.ContainerExchangeRequest(container_id=cid, max_inputs=4, timeout_s=5, ready=True), metadata=plane.md)))
    t.start()
    time.sleep(0.2)
    plane.client.FunctionPutInputs(client_pb2.FunctionPutInputsRequest(call_id=call.call_id, inputs=[_input(2), _input(3), _input(4)], closed=True), metadata=plane.md)
    t.join(10)
    assert [i.idx for i in got["resp"].inputs] == [0, 1, 2, 3]


def test_redeploy_counts_versions(plane):
    make = lambda: plane.client.AppCreate(client_pb2.AppCreateRequest(name="svc", kind=client_pb2.APP_KIND_DEPLOYED), metadata=plane.md).app_id
    first, second = make(), make()
    assert first == second
    (app,) = [a for a in plane.client.AppList(client_pb2.AppListRequest(), metadata=plane.md).apps if a.app_id == first]
    assert app.version == 2


def test_a_ready_container_reports_how_it_started_for_the_metrics(plane):
    from gpu_fabric.web import _metrics

    wid = _register_worker(plane)
    _, fid = _app_and_function(plane)
    plane.client.FunctionMap(client_pb2.FunctionMapRequest(function_id=fid, kind=client_pb2.CALL_KIND_SPAWN, inputs=[_input(3)], closed=True), metadata=plane.md)
    cid = _next_assignment(plane, wid).start.container_id
    plane.container.ContainerExchange(worker_pb2.ContainerExchangeRequest(
        container_id=cid, max_inputs=0, timeout_s=0, ready=True, start_kind="fork_server"), metadata=plane.md)
    assert plane.run_in_loop(lambda: plane.engine.ledger.open[cid].start_kind) == "fork_server"
    history = type("History", (), {"calls_by_status": {}, "inputs_by_status": {}})()
    text = plane.run_in_loop(lambda: _metrics.render(plane.engine, history, {}))
    assert 'gpufabric_container_starts_total{kind="fork_server"} 1' in text
