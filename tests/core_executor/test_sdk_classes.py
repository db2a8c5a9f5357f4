"""Class registration, parameters, markers and the class FunctionSpec, without a fabric."""
from __future__ import annotations

import threading

import pytest

import core_executor as fabric
from core_executor import exception

app = fabric.App("classes-unit")


@app.cls(gpu="H100", timeout=60)
@fabric.concurrent(max_inputs=8, target_inputs=4)
class Model:
    size: int = fabric.parameter(default=1)
    name: str = fabric.parameter(default="m")

    @fabric.enter(snap=True)
    def load_weights(self):
        self.calls = ["snap"]

    @fabric.enter()
    def warm(self):
        self.calls.append("warm")

    @fabric.method()
    def predict(self, x: int) -> int:
        return x * self.size + self.helper()

    @fabric.method()
    def stream(self, n: int):
        yield from range(n)

    @fabric.exit()
    def close(self):
        pass

    def helper(self) -> int:
        return 0


@app.cls()
class Embedder:
    @fabric.batched(max_batch_size=16, wait_ms=25)
    def embed(self, texts: list[str]) -> list[int]:
        return [len(t) for t in texts]


def test_class_spec_lists_methods_and_carries_options():
    spec = Model._class_function.spec
    assert (spec.name, spec.cls_name) == ("Model", "Model")
    assert list(spec.method_names) == ["predict", "stream"]
    assert spec.is_generator  # one of its methods streams
    assert (spec.max_concurrent_inputs, spec.target_concurrent_inputs) == (8, 4)
    assert [g.type for g in spec.gpus] == ["H100"] and spec.timeout_s == 60
    batched = Embedder._class_function.spec
    assert (batched.batch_max_size, batched.batch_wait_ms, list(batched.method_names)) == (16, 25, ["embed"])
    assert set(app.registered_classes) == {"Model", "Embedder"}
    assert "Model" not in app.registered_functions


def test_local_calls_run_enter_once_snap_first():
    obj = Model(size=3)
    assert obj.predict.local(2) == 6
    assert obj.predict.local(1) == 3
    assert obj._local.calls == ["snap", "warm"]
    assert list(obj.stream.local(2)) == [0, 1]


def test_parameters_are_checked_before_anything_is_sent():
    with pytest.raises(exception.InvalidError, match="no parameter 'sise'"):
        Model(sise=2)
    with pytest.raises(exception.InvalidError, match="by keyword"):
        Model(2)
    with pytest.raises(exception.SerializationError, match="parameter 'name' of Model"):
        Model(name=threading.Lock())
    assert Model()._default and Model(size=1)._default and not Model(size=2)._default


def test_method_access_errors_say_what_to_do():
    with pytest.raises(AttributeError, match="not a @fabric.method"):
        Model().helper
    with pytest.raises(AttributeError, match="has no method 'fit'"):
        Model().fit
    with pytest.raises(AttributeError, match=r"Model\(\).predict.remote"):
        Model.predict


def test_method_of_an_unregistered_class_explains_app_cls():
    class Plain:
        @fabric.method()
        def run(self) -> int:
            return 1

    assert Plain().run() == 1 and Plain().run.local() == 1
    with pytest.raises(exception.InvalidError, match="@app.cls"):
        Plain().run.remote()


def test_not_running_class_says_how_to_run_it():
    with pytest.raises(exception.InvalidError, match="not running"):
        Model().predict.remote(1)


def test_bad_classes_are_refused_at_decoration():
    bad = fabric.App("bad-classes")
    with pytest.raises(exception.InvalidError, match="no method callers can run"):
        @bad.cls()
        class NoMethods:
            pass
    with pytest.raises(exception.InvalidError, match="own __init__"):
        @bad.cls()
        class Both:
            x: int = fabric.parameter()

            def __init__(self):
                pass

            @fabric.method()
            def run(self):
                pass
    with pytest.raises(exception.InvalidError, match="serves only that method"):
        @bad.cls()
        class Mixed:
            @fabric.batched(max_batch_size=2, wait_ms=1)
            def a(self, xs):
                return xs

            @fabric.method()
            def b(self):
                pass
    with pytest.raises(exception.InvalidError, match="no arguments besides self"):
        @bad.cls()
        class ExitArgs:
            @fabric.exit()
            def bye(self, code):
                pass

            @fabric.method()
            def run(self):
                pass
    with pytest.raises(exception.InvalidError, match="decorates a class"):
        bad.cls()(lambda: None)
    with pytest.raises(exception.InvalidError, match="@app.cls"):
        @bad.function()
        class NotAFunction:
            pass


def test_with_options_builds_an_override_spec():
    variant = Model.with_options(gpu="A100", max_containers=2).with_concurrency(max_inputs=3)
    spec = variant._options_spec
    assert [g.type for g in spec.gpus] == ["A100"] and spec.max_containers == 2
    assert spec.max_concurrent_inputs == 3 and spec.name == ""
    assert Model._options_spec is None
    batching = Embedder.with_batching(max_batch_size=4, wait_ms=5)._options_spec
    assert (batching.batch_max_size, batching.batch_wait_ms) == (4, 5)


def test_cls_and_obj_pickle_by_reference():
    import cloudpickle

    again = cloudpickle.loads(cloudpickle.dumps(Model(size=2)))
    assert again._kwargs == {"size": 2, "name": "m"}
    assert again._cls._class_function.tag == "Model"  # a reference; the live class answers by id in a run


def test_from_name_needs_names():
    with pytest.raises(exception.InvalidError, match="deployed app's name"):
        fabric.Cls.from_name("", "Model")


def test_snap_enter_or_enable_memory_snapshot_asks_for_warm_starts():
    assert Model._class_function.spec.enable_memory_snapshot  # @enter(snap=True)
    assert not Embedder._class_function.spec.enable_memory_snapshot
    local = fabric.App("snapshot-flag")

    @local.function(enable_memory_snapshot=True)
    def f():
        return 1

    @local.cls(enable_memory_snapshot=True)
    class Plain:
        @fabric.method()
        def run(self):
            return 1

    assert f.spec.enable_memory_snapshot and Plain._class_function.spec.enable_memory_snapshot
