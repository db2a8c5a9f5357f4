"""The container runtime as a process against a fake control plane on loopback."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import cloudpickle
import pytest

from gpu_fabric.proto import common_pb2

from tests.runtime.fabric_fake import FakeFabric, decode_value, make_input, python_version, serialized_definition

pytestmark = pytest.mark.integration


@pytest.fixture
def fabric():
    fake = FakeFabric().start()
    yield fake
    fake.stop()


def _finish(fabric: FakeFabric, proc: subprocess.Popen, container_id: str = "c1", timeout: float = 30) -> int:
    fabric.shutdown_ids.add(container_id)
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serialized_function_runs_inputs_and_tags_prints(fabric, tmp_path):
    def square(x):
        print(f"squaring {x}")
        print("partial", end="")
        return x * x

    fabric.add_container("c1", serialized_definition(square), name="square")
    status = tmp_path / "status"
    proc = fabric.spawn_container("c1", str(tmp_path), str(status))
    fabric.put_input("c1", make_input(3, input_id="in-1"))
    output = fabric.wait_output()
    assert output.input_id == "in-1"
    assert decode_value(output) == 9
    assert output.duration_s >= 0
    fabric.put_input("c1", make_input(4, input_id="in-2"))
    assert decode_value(fabric.wait_output()) == 16
    assert _finish(fabric, proc) == 0
    logs = [(e.input_id, e.data, e.stream, e.function_name, e.container_id, e.call_id) for e in fabric.container_logs]
    assert ("in-1", "squaring 3\n", common_pb2.LOG_STREAM_STDOUT, "square", "c1", "call-1") in logs
    assert ("in-1", "partial", common_pb2.LOG_STREAM_STDOUT, "square", "c1", "call-1") in logs
    assert ("in-2", "squaring 4\n", common_pb2.LOG_STREAM_STDOUT, "square", "c1", "call-1") in logs
    # Logs of an input travel no later than its output.
    first_output = next(i for i, r in enumerate(fabric.exchanges) if r.outputs)
    assert any(e.input_id == "in-1" for r in fabric.exchanges[: first_output + 1] for e in r.logs)
    assert status.read_text() == ""
    assert all(r.ready for r in fabric.exchanges)


def test_status_file_holds_running_input(fabric, tmp_path):
    def read_status():
        with open(os.environ["GPUFABRIC_STATUS_FILE"]) as f:
            return f.read()

    fabric.add_container("c1", serialized_definition(read_status))
    proc = fabric.spawn_container("c1", str(tmp_path), str(tmp_path / "status"))
    fabric.put_input("c1", make_input(input_id="in-status"))
    assert decode_value(fabric.wait_output()) == "in-status"
    assert _finish(fabric, proc) == 0


def test_file_definition_from_path_and_from_text(fabric, tmp_path):
    src = tmp_path / "proj" / "mymod.py"
    src.parent.mkdir()
    src.write_text(textwrap.dedent("""
        class Thing:
            pass

        def make():
            import pickle
            return pickle.dumps(Thing()) and Thing.__module__

        class Holder:
            @staticmethod
            def nested(x):
                return x + 1
    """))
    definition = common_pb2.FunctionDefinition(
        kind=common_pb2.FunctionDefinition.KIND_FILE, module_name="mymod", qualname="make",
        source_path=str(src), python_version=python_version(),
    )
    fabric.add_container("c1", definition)
    proc = fabric.spawn_container("c1", str(tmp_path))
    fabric.put_input("c1", make_input())
    assert decode_value(fabric.wait_output()) == "mymod"
    assert _finish(fabric, proc) == 0

    from_text = common_pb2.FunctionDefinition(
        kind=common_pb2.FunctionDefinition.KIND_FILE, module_name="pkg.othermod",
        qualname="Holder.nested", source_path="/nonexistent/othermod.py",
        source_text=src.read_text(), python_version=python_version(),
    )
    fabric.add_container("c2", from_text)
    proc = fabric.spawn_container("c2", str(tmp_path))
    fabric.put_input("c2", make_input(41))
    assert decode_value(fabric.wait_output()) == 42
    assert _finish(fabric, proc, "c2") == 0


@pytest.mark.parametrize("case", ["version", "import_error", "missing_name"])
def test_init_failure_is_reported_and_container_exits_0(fabric, tmp_path, case):
    src = tmp_path / "broken.py"
    src.write_text("import not_a_module_xyz\n" if case == "import_error" else "def f():\n    return 1\n")
    definition = common_pb2.FunctionDefinition(
        kind=common_pb2.FunctionDefinition.KIND_FILE, module_name="broken",
        qualname="g" if case == "missing_name" else "f", source_path=str(src),
        python_version="2.7" if case == "version" else python_version(),
    )
    fabric.add_container("c1", definition)
    proc = fabric.spawn_container("c1", str(tmp_path))
    assert proc.wait(30) == 0
    failure = fabric.init_failures.get(timeout=1)
    assert failure.status == common_pb2.RESULT_STATUS_INIT_FAILURE
    expected = {"version": "2.7", "import_error": "not_a_module_xyz", "missing_name": "'g'"}[case]
    assert expected in failure.exception
    assert failure.traceback
    assert not fabric.exchanges[-1].ready and fabric.exchanges[-1].max_inputs == 0


def test_user_exception_becomes_failure_result(fabric, tmp_path):
    def boom(x):
        raise ValueError(f"bad {x}")

    fabric.add_container("c1", serialized_definition(boom))
    proc = fabric.spawn_container("c1", str(tmp_path))
    fabric.put_input("c1", make_input(7))
    result = fabric.wait_output().result
    assert result.status == common_pb2.RESULT_STATUS_FAILURE
    assert "bad 7" in result.exception and "ValueError" in result.traceback
    exc = cloudpickle.loads(result.serialized_exception)
    assert isinstance(exc, ValueError)
    assert _finish(fabric, proc) == 0


def test_fast_inputs_are_prefetched(fabric, tmp_path):
    fabric.add_container("c1", serialized_definition(lambda x: x + 1))
    proc = fabric.spawn_container("c1", str(tmp_path))
    fabric.put_input("c1", make_input(0))
    fabric.wait_output()
    for i in range(1, 100):
        fabric.put_input("c1", make_input(i))
    values = sorted(decode_value(fabric.wait_output()) for _ in range(99))
    assert values == list(range(2, 101))
    assert max(r.max_inputs for r in fabric.exchanges) == 32
    assert _finish(fabric, proc) == 0


def test_timeout_reports_timeout_and_exits(fabric, tmp_path):
    import time

    def slow():
        print("before sleep")
        time.sleep(30)

    fabric.add_container("c1", serialized_definition(slow))
    proc = fabric.spawn_container("c1", str(tmp_path), str(tmp_path / "status"))
    fabric.put_input("c1", make_input(input_id="in-slow", timeout_s=0.3))
    output = fabric.wait_output()
    assert output.input_id == "in-slow"
    assert output.result.status == common_pb2.RESULT_STATUS_TIMEOUT
    assert proc.wait(10) == 1
    # The timeout was delivered: the worker must not report the exit as a crash of this input.
    assert (tmp_path / "status").read_text() == ""
    assert any(e.data == "before sleep\n" for e in fabric.container_logs)


def test_logs_flow_while_input_runs(fabric, tmp_path):
    import time

    def chatty():
        print("early line")
        time.sleep(4.0)
        return "done"

    fabric.add_container("c1", serialized_definition(chatty))
    proc = fabric.spawn_container("c1", str(tmp_path))
    fabric.put_input("c1", make_input())
    deadline = time.monotonic() + 3.5  # well before the input ends, with room for a busy machine
    while time.monotonic() < deadline and not fabric.container_logs:
        time.sleep(0.02)
    assert [e.data for e in fabric.container_logs] == ["early line\n"]
    assert fabric.outputs.empty()
    assert decode_value(fabric.wait_output()) == "done"
    assert _finish(fabric, proc) == 0


def test_cancelling_running_input_exits_and_queued_one_is_skipped(fabric, tmp_path):
    import time

    def work(seconds):
        time.sleep(seconds)
        return seconds

    fabric.add_container("c1", serialized_definition(work))
    proc = fabric.spawn_container("c1", str(tmp_path), str(tmp_path / "status"))
    # Prefetch first so the next exchange hands both inputs at once.
    for _ in range(3):
        fabric.put_input("c1", make_input(0))
    for _ in range(3):
        fabric.wait_output()
    fabric.put_input("c1", make_input(1.5, input_id="keep"))
    fabric.put_input("c1", make_input(0, input_id="skip"))
    fabric.put_input("c1", make_input(0, input_id="after"))
    time.sleep(0.2)
    fabric.cancel["c1"] = ["skip"]
    done = [fabric.wait_output().input_id for _ in range(2)]
    assert done == ["keep", "after"]

    fabric.put_input("c1", make_input(30, input_id="running"))
    time.sleep(0.3)
    assert (tmp_path / "status").read_text() == "running"
    fabric.cancel["c1"] = ["running"]
    assert proc.wait(10) == 1
    assert fabric.outputs.empty()
    assert (tmp_path / "status").read_text() == ""


def test_blob_payloads_both_ways(fabric, tmp_path):
    fabric.add_container("c1", serialized_definition(lambda data: data * 2))
    proc = fabric.spawn_container("c1", str(tmp_path))
    big = b"x" * (3 * 1024 * 1024)
    fabric.blobs["blob-in"] = cloudpickle.dumps(((big,), {}))
    inp = make_input()
    inp.input.args = b""
    inp.input.args_blob_id = "blob-in"
    fabric.put_input("c1", inp)
    output = fabric.wait_output()
    assert output.result.data_blob_id and not output.result.data
    assert decode_value(output, fabric) == big * 2
    assert _finish(fabric, proc) == 0


def test_generator_streams_items_then_done(fabric, tmp_path):
    def gen(n):
        for i in range(n):
            yield i * 10

    fabric.add_container("c1", serialized_definition(gen), is_generator=True)
    proc = fabric.spawn_container("c1", str(tmp_path))
    fabric.put_input("c1", make_input(3))
    outputs = [fabric.wait_output() for _ in range(4)]
    assert [o.result.gen_index for o in outputs] == [0, 1, 2, 3]
    assert [o.result.gen_done for o in outputs] == [False, False, False, True]
    assert [decode_value(o) for o in outputs[:3]] == [0, 10, 20]
    assert _finish(fabric, proc) == 0


def test_async_function(fabric, tmp_path):
    async def double(x):
        import asyncio

        await asyncio.sleep(0)
        return 2 * x

    fabric.add_container("c1", serialized_definition(double))
    proc = fabric.spawn_container("c1", str(tmp_path))
    fabric.put_input("c1", make_input(21))
    assert decode_value(fabric.wait_output()) == 42
    assert _finish(fabric, proc) == 0


def test_unavailable_control_plane_is_retried_without_losing_outputs(fabric, tmp_path):
    fabric.add_container("c1", serialized_definition(lambda: "ok"))
    proc = fabric.spawn_container("c1", str(tmp_path))
    fabric.put_input("c1", make_input(input_id="in-1"))
    fabric.hello_seen.get(timeout=30)
    fabric.unavailable_exchanges = 3
    output = fabric.wait_output()
    assert output.input_id == "in-1" and decode_value(output) == "ok"
    assert _finish(fabric, proc) == 0


def test_forgotten_container_exits(fabric, tmp_path):
    fabric.add_container("c1", serialized_definition(lambda: None))
    proc = fabric.spawn_container("c1", str(tmp_path))
    fabric.hello_seen.get(timeout=30)
    fabric.forget_containers = True
    assert proc.wait(10) == 0


def test_fd_output_goes_to_the_pipes_not_the_capture(fabric, tmp_path):
    def raw():
        os.write(1, b"raw stdout\n")
        os.write(2, b"raw stderr\n")
        print("captured")

    fabric.add_container("c1", serialized_definition(raw))
    proc = fabric.spawn_container("c1", str(tmp_path))
    fabric.put_input("c1", make_input())
    fabric.wait_output()
    assert _finish(fabric, proc) == 0
    out, err = proc.communicate(timeout=5)
    assert b"raw stdout" in out and b"captured" not in out
    assert b"raw stderr" in err
    assert [e.data for e in fabric.container_logs] == ["captured\n"]


def test_runtime_exits_when_its_agent_is_already_gone(fabric, tmp_path):
    fabric.add_container("c1", serialized_definition(lambda: None))
    env = fabric.container_env("c1")
    env["GPUFABRIC_AGENT_PID"] = "1"  # not our parent: the agent "died" before the runtime started
    proc = subprocess.run([sys.executable, "-m", "core_executor._runtime"], env=env, cwd=tmp_path, timeout=30)
    assert proc.returncode == 1
    assert fabric.hello_seen.empty()


@pytest.mark.parametrize("handed", ["good", "unreadable"])
def test_a_hello_handed_over_by_the_worker_is_used_once_and_removed(fabric, tmp_path, handed):
    """A container forked from a zygote finds the ContainerHello the worker fetched for it (with the
    secrets' values) in a 0600 file: it reads it, removes it and asks the control plane nothing; a
    file it cannot read makes it ask as usual."""
    from core_executor._runtime._warm import HELLO_FILE_ENV

    def add(x):
        return x + int(os.environ["HANDED_SECRET"])

    fabric.add_container("c1", serialized_definition(add), name="add")
    hello = fabric.hellos["c1"]
    hello.secret_env["HANDED_SECRET"] = "100"
    path = tmp_path / "hello"
    path.write_bytes(hello.SerializeToString() if handed == "good" else b"\xff not a hello")
    env = fabric.container_env("c1")
    env[HELLO_FILE_ENV] = str(path)
    proc = subprocess.Popen([sys.executable, "-m", "core_executor._runtime"], env=env, cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    fabric.put_input("c1", make_input(1, input_id="in-1"))
    assert decode_value(fabric.wait_output()) == 101
    assert _finish(fabric, proc) == 0
    assert not path.exists()
    asked = fabric.hello_seen.qsize()
    assert asked == (0 if handed == "good" else 1)
    if handed != "good":
        assert b"cannot read the hello the worker handed over" in proc.stderr.read()
