"""How a function's code reaches containers, and how Functions and Apps pickle."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

import cloudpickle

import core_executor as fabric
from core_executor import _functions
from core_executor._spec import build_definition
from gpu_fabric.proto import common_pb2

KIND_FILE = common_pb2.FunctionDefinition.KIND_FILE
KIND_SERIALIZED = common_pb2.FunctionDefinition.KIND_SERIALIZED

top_app = fabric.App("definitions")


@top_app.function()
def top_level(x):
    return x + 1


@top_app.function(serialized=True)
def top_level_serialized(x):
    return top_level.local(x) * 2


def test_top_level_function_in_a_file_is_kind_file():
    d = build_definition(top_level.get_raw_f(), serialized=False)
    assert d.kind == KIND_FILE
    assert d.qualname == "top_level" and d.module_name == top_level.__module__
    assert d.source_path == os.path.abspath(__file__)
    assert "def top_level(x)" in d.source_text
    root = d.sys_path[0]
    module_rel = d.module_name.replace(".", os.sep) + ".py"
    assert os.path.join(root, module_rel) == d.source_path
    assert d.python_version == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_serialized_flag_and_local_functions_are_pickled_by_value():
    d = build_definition(top_level_serialized.get_raw_f(), serialized=True)
    assert d.kind == KIND_SERIALIZED and d.pickled_function
    app = fabric.App("local")

    @app.function()
    def inner(x):
        return x * 3

    d2 = build_definition(inner.get_raw_f(), serialized=False)
    assert d2.kind == KIND_SERIALIZED
    assert cloudpickle.loads(d2.pickled_function)(2) == 6
    # Pickled by value even though its module is importable here.
    assert "top_level_serialized" in cloudpickle.loads(d.pickled_function).__qualname__


def test_main_script_uses_the_file_stem(tmp_path):
    script = tmp_path / "hello.py"
    script.write_text(textwrap.dedent("""
        import core_executor as fabric
        from core_executor._spec import build_definition

        app = fabric.App("hello")

        @app.function()
        def square(x):
            return x * x

        if __name__ == "__main__":
            d = build_definition(square.get_raw_f(), serialized=False)
            print(d.kind, d.module_name, d.qualname, d.sys_path[0] == __import__("os").path.dirname(__file__))
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(KIND_FILE), "hello", "square", "True"]


def test_function_pickles_as_a_reference():
    data = pickle.dumps(top_level)
    assert b"def top_level" not in data and len(data) < 400
    ref = pickle.loads(data)
    assert isinstance(ref, fabric.Function) and ref.tag == "top_level"
    # An unbound reference resolves to the live function with the same id in this process.
    top_level._bind(None, "fu-test-1", "ap-1", container_python_version="", printer=None)
    try:
        assert pickle.loads(pickle.dumps(top_level)) is top_level
    finally:
        top_level._unbind()


def test_app_pickles_without_its_threads():
    data = cloudpickle.dumps(top_app)
    again = pickle.loads(data)
    assert isinstance(again, fabric.App) and again.name == "definitions"


def test_container_hook_binds_functions_without_connecting(monkeypatch):
    monkeypatch.setenv("GPUFABRIC_IS_CONTAINER", "1")
    monkeypatch.setenv("GPUFABRIC_URL", "grpc://127.0.0.1:1")
    monkeypatch.setenv("GPUFABRIC_TOKEN", "t")
    try:
        _functions._hydrate_for_container(top_app, "ap-9", {"top_level": "fu-9", "top_level_serialized": "fu-10"})
        assert top_level.object_id == "fu-9" and top_app.app_id == "ap-9"
        # A reference pickled before ids existed resolves by name from the container's table.
        ref = pickle.loads(pickle.dumps(fabric.Function._reference("definitions", "top_level_serialized")))
        monkeypatch.setattr(_functions._client, "get_client", lambda *a: "client")
        ref._resolve()
        assert ref.object_id == "fu-10" and ref._client == "client"
        # Inside a container, app.run() records nothing and starts nothing.
        with top_app.run() as running:
            assert running is top_app
    finally:
        for fn in top_app.registered_functions.values():
            fn._unbind()
        _functions._container.__init__()
        top_app._app_id = ""


def test_import_core_executor_stays_light():
    code = "import sys, core_executor; print(sorted(m for m in ('grpc', 'google.protobuf', 'cloudpickle', 'click') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_runtime_hook_binds_the_loaded_modules_functions(monkeypatch):
    import types

    monkeypatch.setenv("GPUFABRIC_IS_CONTAINER", "1")
    module = types.ModuleType("user_mod")
    module.app, module.top_level = top_app, top_level
    try:
        fabric._hydrate_container(module=module, app_id="ap-7", function_id="fu-7",
                                  app_function_ids={"top_level": "fu-7", "top_level_serialized": "fu-8"})
        assert top_level.object_id == "fu-7" and top_level_serialized.object_id == "fu-8"
        assert not fabric.is_local()
    finally:
        for fn in top_app.registered_functions.values():
            fn._unbind()
        _functions._container.__init__()
        top_app._app_id = ""
