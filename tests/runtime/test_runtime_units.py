"""Unit tests of the container runtime's pieces: log capture, function loading, init failures."""
from __future__ import annotations

import sys
import threading

import cloudpickle
import pytest

from core_executor._runtime import _io
from core_executor._runtime._loader import (
    FunctionLoadError,
    init_failure_result,
    load_definition,
    python_version,
    unwrap,
)
from gpu_fabric.proto import common_pb2


def _buffer() -> _io.LogBuffer:
    return _io.LogBuffer(container_id="c1", function_name="fn", app_id="app", clock=lambda: 123.0)


def test_captured_stream_tags_complete_lines_and_flushes_partials():
    buf = _buffer()
    out = _io.CapturedStream(buf, common_pb2.LOG_STREAM_STDOUT, None)
    buf.set_input("in-1", "call-1")
    out.write("hello ")
    assert len(buf) == 0
    out.write("world\nsecond\nthird")
    buf.set_input("in-2", "call-2")
    out.flush()
    entries = buf.drain()
    assert [(e.data, e.input_id, e.call_id) for e in entries] == [
        ("hello world\n", "in-1", "call-1"),
        ("second\n", "in-1", "call-1"),
        ("third", "in-2", "call-2"),
    ]
    e = entries[0]
    assert (e.stream, e.container_id, e.function_name, e.app_id, e.timestamp) == (
        common_pb2.LOG_STREAM_STDOUT, "c1", "fn", "app", 123.0,
    )
    assert buf.drain() == []


def test_install_replaces_sys_streams_and_print_is_captured():
    buf = _buffer()
    saved = sys.stdout, sys.stderr
    try:
        _io.install(buf)
        print("to out")
        print("to err", file=sys.stderr)
        assert sys.stdout.fileno() == sys.__stdout__.fileno()
        assert not sys.stdout.isatty() and sys.stdout.encoding == "utf-8"
    finally:
        _io.uninstall()
        sys.stdout, sys.stderr = saved
    assert [(e.stream, e.data) for e in buf.drain()] == [
        (common_pb2.LOG_STREAM_STDOUT, "to out\n"),
        (common_pb2.LOG_STREAM_STDERR, "to err\n"),
    ]


def test_capture_is_thread_safe_and_put_back_keeps_order():
    buf = _buffer()
    out = _io.CapturedStream(buf, common_pb2.LOG_STREAM_STDOUT, None)

    def writer(n):
        for i in range(500):
            out.write(f"{n}-{i}\n")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = buf.drain()
    assert len(entries) == 2000 and all(e.data.endswith("\n") for e in entries)
    buf.add(common_pb2.LOG_STREAM_STDOUT, "new\n")
    buf.put_back(entries[:2])
    assert [e.data for e in buf.drain()] == [entries[0].data, entries[1].data, "new\n"]


def test_very_long_line_without_newline_is_shipped_in_pieces():
    buf = _buffer()
    out = _io.CapturedStream(buf, common_pb2.LOG_STREAM_STDOUT, None)
    out.write("x" * (200 * 1024))
    assert len(buf) >= 1


class _Wrapped:
    def __init__(self, f):
        self._f = f

    def get_raw_f(self):
        return self._f


def test_unwrap_uses_get_raw_f():
    def f():
        return 1

    assert unwrap(_Wrapped(f)) is f
    assert unwrap(f) is f


def test_load_serialized_definition_unwraps():
    definition = common_pb2.FunctionDefinition(
        kind=common_pb2.FunctionDefinition.KIND_SERIALIZED,
        pickled_function=cloudpickle.dumps(_Wrapped(lambda x: x * 3)),
        python_version=python_version(),
    )
    fn, module = load_definition(definition)
    assert fn(2) == 6 and module is None


def test_load_file_definition_registers_module_before_exec(tmp_path, monkeypatch):
    src = tmp_path / "usermod_a.py"
    src.write_text(
        "import sys\n"
        "REGISTERED = 'usermod_a' in sys.modules\n"
        "class Box:\n"
        "    @staticmethod\n"
        "    def value():\n"
        "        return 5\n"
    )
    monkeypatch.setattr(sys, "path", list(sys.path))
    definition = common_pb2.FunctionDefinition(
        kind=common_pb2.FunctionDefinition.KIND_FILE, module_name="usermod_a", qualname="Box.value",
        source_path=str(src), sys_path=[str(tmp_path / "root")], python_version=python_version(),
    )
    try:
        fn, module = load_definition(definition)
        assert fn() == 5
        assert module.REGISTERED and sys.modules["usermod_a"] is module
        assert sys.path[0] == str(tmp_path / "root")
    finally:
        sys.modules.pop("usermod_a", None)


def test_load_file_definition_from_source_text():
    definition = common_pb2.FunctionDefinition(
        kind=common_pb2.FunctionDefinition.KIND_FILE, module_name="usermod_b", qualname="f",
        source_path="/does/not/exist/usermod_b.py", source_text="def f():\n    return __file__\n",
    )
    try:
        fn, _ = load_definition(definition)
        assert fn().endswith("usermod_b.py")
    finally:
        sys.modules.pop("usermod_b", None)


def test_load_rejects_other_python_and_missing_names(tmp_path):
    with pytest.raises(FunctionLoadError, match="Python 2.7"):
        load_definition(common_pb2.FunctionDefinition(
            kind=common_pb2.FunctionDefinition.KIND_SERIALIZED, python_version="2.7"))
    src = tmp_path / "usermod_c.py"
    src.write_text("x = 1\n")
    try:
        with pytest.raises(FunctionLoadError, match="'nope' not found"):
            load_definition(common_pb2.FunctionDefinition(
                kind=common_pb2.FunctionDefinition.KIND_FILE, module_name="usermod_c",
                qualname="nope", source_path=str(src)))
    finally:
        sys.modules.pop("usermod_c", None)


def test_failed_import_does_not_leave_a_half_module(tmp_path):
    src = tmp_path / "usermod_d.py"
    src.write_text("raise RuntimeError('at import')\n")
    with pytest.raises(RuntimeError):
        load_definition(common_pb2.FunctionDefinition(
            kind=common_pb2.FunctionDefinition.KIND_FILE, module_name="usermod_d",
            qualname="f", source_path=str(src)))
    assert "usermod_d" not in sys.modules


def test_init_failure_result():
    try:
        raise ImportError("No module named 'torch'")
    except ImportError as exc:
        result = init_failure_result(exc)
    assert result.status == common_pb2.RESULT_STATUS_INIT_FAILURE
    assert "torch" in result.exception
    assert "ImportError" in result.traceback


def test_init_failure_result_for_unpicklable_exception():
    class Weird(Exception):
        def __reduce__(self):
            raise TypeError("no pickling")

    result = init_failure_result(Weird("odd"))
    assert result.status == common_pb2.RESULT_STATUS_INIT_FAILURE
    assert "odd" in result.exception and not result.serialized_exception


def test_binary_buffer_writes_are_captured_as_text():
    buf = _buffer()
    out = _io.CapturedStream(buf, common_pb2.LOG_STREAM_STDOUT, None)
    out.buffer.write("bytes é\n".encode())
    assert [e.data for e in buf.drain()] == ["bytes é\n"]
