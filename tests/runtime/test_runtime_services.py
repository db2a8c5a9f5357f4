"""The runtime serving classes, concurrent and batched functions, against a fake control plane."""
from __future__ import annotations

import signal
import time

import cloudpickle
import pytest

import core_executor as fabric
from core_executor._runtime._service import assemble_batch, split_batch
from core_executor.exception import InvalidError
from gpu_fabric.proto import common_pb2, worker_pb2

from tests.runtime.fabric_fake import FakeFabric, decode_value, make_input, serialized_definition

pytestmark = pytest.mark.integration


@pytest.fixture
def fake():
    server = FakeFabric().start()
    yield server
    server.stop()


def _serve(fake: FakeFabric, cid: str, target, tmp_path, *, params=None, **spec_fields):
    definition = serialized_definition(target)
    if params is not None:
        definition.pickled_cls_params = cloudpickle.dumps(params)
    fake.hellos[cid] = worker_pb2.ContainerHelloResponse(
        function_id="fn-1", app_id="app-1", definition=definition,
        spec=common_pb2.FunctionSpec(name=spec_fields.pop("name", "fn"), **spec_fields),
    )
    return fake.spawn_container(cid, str(tmp_path), str(tmp_path / f"{cid}.status"))


def _method_input(method: str, *args, input_id: str = "", timeout_s: float = 0.0):
    inp = make_input(*args, input_id=input_id, timeout_s=timeout_s)
    inp.input.method_name = method
    return inp


def _outputs(fake: FakeFabric, n: int, timeout: float = 30.0) -> dict[str, worker_pb2.ContainerOutput]:
    got = {}
    while len(got) < n:
        out = fake.wait_output(timeout)
        if out.result.gen_done or not out.result.gen_index:
            got[out.input_id] = out
    return got


def _stop(fake: FakeFabric, proc, cid: str) -> int:
    fake.shutdown_ids.add(cid)
    try:
        return proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()


def _log_text(fake: FakeFabric) -> str:
    return "".join(e.data for e in fake.container_logs)


def test_class_instance_enter_once_methods_and_exit_at_shutdown(fake, tmp_path):
    class Model:
        scale: int = fabric.parameter(default=1)

        @fabric.enter()
        def load(self):
            print("entering")
            self.loaded = getattr(self, "loaded", 0) + 1

        @fabric.method()
        def predict(self, x):
            return x * self.scale, self.loaded

        @fabric.method()
        def stream(self, n):
            yield from range(n)

        @fabric.exit()
        def close(self):
            print("exiting")

    proc = _serve(fake, "c1", Model, tmp_path, params=((), {"scale": 3}), name="Model", cls_name="Model",
                  method_names=["predict", "stream"], is_generator=True)
    fake.put_input("c1", _method_input("predict", 2, input_id="a"))
    out = _outputs(fake, 1)["a"]
    assert decode_value(out) == (6, 1) and out.result.gen_done  # a plain method ends its input
    fake.put_input("c1", _method_input("predict", 5, input_id="b"))
    assert decode_value(_outputs(fake, 1)["b"]) == (15, 1)
    fake.put_input("c1", _method_input("nope", input_id="c"))
    failed = _outputs(fake, 1)["c"]
    assert failed.result.status == common_pb2.RESULT_STATUS_FAILURE and "no @fabric.method() 'nope'" in failed.result.exception
    assert _stop(fake, proc, "c1") == 0
    text = _log_text(fake)
    assert text.count("entering") == 1 and "exiting" in text


def test_enter_exception_is_an_init_failure(fake, tmp_path):
    class Broken:
        @fabric.enter()
        def load(self):
            raise RuntimeError("no weights")

        @fabric.method()
        def run(self):
            return 1

    proc = _serve(fake, "c1", Broken, tmp_path, name="Broken", cls_name="Broken", method_names=["run"])
    failure = fake.init_failures.get(timeout=30)
    assert failure.status == common_pb2.RESULT_STATUS_INIT_FAILURE and "no weights" in failure.exception
    assert proc.wait(30) == 0


def test_startup_timeout_reports_an_init_failure(fake, tmp_path):
    class Slow:
        @fabric.enter()
        def load(self):
            time.sleep(60)

        @fabric.method()
        def run(self):
            return 1

    proc = _serve(fake, "c1", Slow, tmp_path, name="Slow", cls_name="Slow", method_names=["run"], startup_timeout_s=0.5)
    failure = fake.init_failures.get(timeout=30)
    assert "startup_timeout=0.5s" in failure.exception
    assert proc.wait(30) == 1


def test_sigterm_runs_exit_methods(fake, tmp_path):
    marker = tmp_path / "exited"

    class Model:
        @fabric.method()
        def run(self):
            return 1

        @fabric.exit()
        def close(self):
            marker.write_text("bye")
            print("exit ran")

    proc = _serve(fake, "c1", Model, tmp_path, name="Model", cls_name="Model", method_names=["run"])
    fake.put_input("c1", _method_input("run", input_id="a"))
    assert decode_value(fake.wait_output()) == 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert marker.read_text() == "bye"
    assert "exit ran" in _log_text(fake)


def test_concurrent_sync_inputs_overlap_and_logs_keep_their_input(fake, tmp_path):
    def work(x):
        print(f"working on {x}")
        time.sleep(0.5)
        return x

    proc = _serve(fake, "c1", work, tmp_path, max_concurrent_inputs=4)
    started = time.monotonic()
    for i in range(4):
        fake.put_input("c1", make_input(i, input_id=f"in-{i}"))
    outs = _outputs(fake, 4)
    assert time.monotonic() - started < 1.8
    assert sorted(decode_value(o) for o in outs.values()) == [0, 1, 2, 3]
    assert _stop(fake, proc, "c1") == 0
    tagged = {e.input_id: e.data for e in fake.container_logs if e.data.startswith("working")}
    assert tagged == {f"in-{i}": f"working on {i}\n" for i in range(4)}


def test_concurrent_async_inputs_and_a_timeout_that_stops_only_its_task(fake, tmp_path):
    import asyncio

    async def nap(seconds):
        await asyncio.sleep(seconds)
        return seconds

    proc = _serve(fake, "c1", nap, tmp_path, max_concurrent_inputs=8, is_async=True)
    fake.put_input("c1", make_input(5.0, input_id="slow", timeout_s=0.5))
    for i in range(5):
        fake.put_input("c1", make_input(0.2, input_id=f"fast-{i}"))
    outs = _outputs(fake, 6)
    assert outs["slow"].result.status == common_pb2.RESULT_STATUS_TIMEOUT
    assert all(decode_value(outs[f"fast-{i}"]) == 0.2 for i in range(5))
    assert proc.poll() is None  # the container goes on
    assert _stop(fake, proc, "c1") == 0


def test_batched_function_runs_once_per_batch(fake, tmp_path):
    def double(xs, factor=2):
        print(f"batch of {len(xs)}")
        return [x * f for x, f in zip(xs, factor)]

    for i in range(4):
        fake.put_input("c1", make_input(i, input_id=f"in-{i}"))
    proc = _serve(fake, "c1", double, tmp_path, batch_max_size=4, batch_wait_ms=10)
    outs = _outputs(fake, 4)
    assert [decode_value(outs[f"in-{i}"]) for i in range(4)] == [0, 2, 4, 6]
    assert _stop(fake, proc, "c1") == 0
    assert "batch of 4" in _log_text(fake)


def test_generator_failure_carries_the_items_made_before_it(fake, tmp_path):
    def gen():
        yield 1
        yield 2
        raise ValueError("boom")

    proc = _serve(fake, "c1", gen, tmp_path, is_generator=True)
    fake.put_input("c1", make_input(input_id="g"))
    outputs = [fake.wait_output() for _ in range(3)]
    assert [o.result.gen_index for o in outputs] == [0, 1, 2]
    assert outputs[2].result.status == common_pb2.RESULT_STATUS_FAILURE
    assert _stop(fake, proc, "c1") == 0


def test_assemble_and_split_batch():
    def f(xs, ys, *, scale=1):
        return xs

    args, kwargs = assemble_batch(f, [((1, "a"), {}), ((2,), {"ys": "b", "scale": 3})])
    assert args == [[1, 2], ["a", "b"]] and kwargs == {"scale": [1, 3]}
    with pytest.raises(TypeError, match="input 1 of the batch"):
        assemble_batch(f, [((1, 2), {}), ((1,), {})])
    assert split_batch((1, 2), 2, "f") == [1, 2]
    with pytest.raises(InvalidError, match="returned 1 outputs for a batch of 2"):
        split_batch([1], 2, "f")
    with pytest.raises(InvalidError, match="must return a list"):
        split_batch(iter([1, 2]), 2, "f")
