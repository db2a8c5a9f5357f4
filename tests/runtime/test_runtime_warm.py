"""Warm starts inside a container: snap=True setup runs once before the fork, the rest after."""
from __future__ import annotations

import core_executor as fabric
from core_executor._runtime import _warm
from core_executor._runtime._service import Service
from gpu_fabric.proto import common_pb2, worker_pb2


class Model:
    @fabric.enter(snap=True)
    def load(self):
        self.calls = getattr(self, "calls", []) + ["snap"]

    @fabric.enter()
    def connect(self):
        self.calls.append("enter")

    @fabric.method()
    def run(self):
        return self.calls


def _spec() -> common_pb2.FunctionSpec:
    return common_pb2.FunctionSpec(name="Model", cls_name="Model", method_names=["run"])


def test_snap_only_start_then_the_rest_after_the_fork():
    service = Service(Model, common_pb2.FunctionDefinition(), _spec())
    service.start(lambda coro: None, snap_only=True)
    assert service.instance.calls == ["snap"]
    instance = service.instance
    service.start(lambda coro: None)  # in the forked container: same instance, non-snap enters only
    assert service.instance is instance and service.resolve("run")() == ["snap", "enter"]


def test_take_gives_the_prepared_service_only_for_the_same_code(monkeypatch):
    definition = common_pb2.FunctionDefinition(module_name="m", qualname="Model")
    service = Service(Model, definition, _spec())
    monkeypatch.setattr(_warm, "_prepared", (_warm._definition_key(definition), service, None))
    other = worker_pb2.ContainerHelloResponse(definition=common_pb2.FunctionDefinition(module_name="m", qualname="Other"))
    assert _warm.take(other) is None
    monkeypatch.setattr(_warm, "_prepared", (_warm._definition_key(definition), service, None))
    assert _warm.take(worker_pb2.ContainerHelloResponse(definition=definition)) == (service, None)
    assert _warm.take(worker_pb2.ContainerHelloResponse(definition=definition)) is None  # taken once


_PREPARE_IN_A_FRESH_INTERPRETER = """
import os, sys
from core_executor._runtime import _warm
_warm.prepare(sys.argv[1])
threads = len(os.listdir("/proc/self/task"))
print(threads, "grpc._channel" in sys.modules, "grpc.experimental" in sys.modules, _warm._prepared is not None)
"""


def test_prepare_warms_the_modules_a_forked_container_needs_and_starts_no_thread(tmp_path):
    """A forked container opens its channel first: grpc imports its channel modules then (5-10 ms a
    container) unless the zygote did. The zygote must still hold a single thread when it forks."""
    import subprocess
    import sys

    (tmp_path / "usercode.py").write_text("def double(x):\n    return 2 * x\n")
    definition = common_pb2.FunctionDefinition(kind=common_pb2.FunctionDefinition.KIND_FILE, module_name="usercode",
                                               qualname="double", source_path=str(tmp_path / "usercode.py"))
    hello = tmp_path / "hello"
    hello.write_bytes(worker_pb2.ContainerHelloResponse(definition=definition,
                                                        spec=common_pb2.FunctionSpec(name="double"))
                      .SerializeToString())
    out = subprocess.run([sys.executable, "-c", _PREPARE_IN_A_FRESH_INTERPRETER, str(hello)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "True", "True", "True"], out.stdout
    assert not hello.exists()  # it carried the secrets: gone once read
