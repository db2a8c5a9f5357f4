"""Calls through a fake fabric on loopback: remote, map, spawn, FunctionCall, errors, blobs, logs."""
from __future__ import annotations

import threading
import time

import pytest

import core_executor as fabric
from core_executor import exception

app = fabric.App("sdk-calls")


@app.function()
def square(x):
    return x * x


@app.function()
def fail(x):
    raise ValueError(f"bad value {x}")


@app.function()
def slow(seconds):
    time.sleep(seconds)
    return seconds


@app.function()
def echo(*args, **kwargs):
    return args, kwargs


@app.function()
def fail_odd(x):
    if x % 2:
        raise KeyError(x)
    return x


def test_remote_returns_the_result(fake_server):
    with app.run():
        assert square.remote(7) == 49
        assert echo.remote(1, b=2) == ((1,), {"b": 2})
    names = fake_server.fabric.names()
    assert names[:2] == ["Hello", "AppCreate"]
    assert names.count("FunctionCreate") == len(app.registered_functions)
    assert "AppStop" in names


def test_remote_raises_the_remote_exception_with_its_traceback(fake_server):
    with app.run():
        with pytest.raises(ValueError, match="bad value 3") as info:
            fail.remote(3)
    cause = info.value.__cause__
    assert cause is not None and "Remote traceback" in str(cause)
    assert "bad value 3" in str(cause) and "fail" in str(cause)


def test_remote_polls_when_invoke_returns_without_output(fake_server):
    fake_server.fabric.invoke_wait_cap_s = 0.0
    with app.run():
        assert slow.remote(0.2) == 0.2
    assert "FunctionGetOutputs" in fake_server.fabric.names()


def test_unpicklable_argument_is_named_and_nothing_is_sent(fake_server):
    with app.run():
        before = len(fake_server.fabric.requests)
        with pytest.raises(exception.SerializationError, match="keyword argument 'lock'"):
            echo.remote(1, lock=threading.Lock())
        with pytest.raises(exception.SerializationError, match="positional argument 1"):
            echo.remote(1, threading.Lock())
        assert fake_server.fabric.requests[before:] == []


def test_version_mismatch_is_raised_before_anything_is_sent(fake_server):
    fake_server.fabric.container_python_version = "2.7"
    with app.run():
        before = len(fake_server.fabric.requests)
        with pytest.raises(exception.VersionMismatchError, match="2.7"):
            square.remote(2)
        with pytest.raises(exception.VersionMismatchError):
            list(square.map([1, 2]))
        assert fake_server.fabric.requests[before:] == []


def test_large_payloads_go_through_blobs(fake_server):
    fake_server.fabric.inline_limit = 1000
    data = b"x" * (3 * 1024 * 1024 + 5)
    with app.run():
        assert echo.remote(data) == ((data,), {})
    put = [r for r in fake_server.fabric.requests if r[0] == "FunctionInvoke"][0][1]
    assert put.input.args_blob_id and not put.input.args


def test_payload_over_the_limit_names_the_limit(fake_server):
    fake_server.fabric.inline_limit = 10
    fake_server.fabric.max_payload = 1000
    with app.run():
        with pytest.raises(exception.InvalidError, match="1,000 bytes"):
            echo.remote(b"y" * 5000)


def test_map_keeps_input_order_across_batches_with_backpressure(fake_server):
    fake_server.fabric.max_inputs_per_batch = 7
    fake_server.fabric.reject_put_inputs = 2
    with app.run():
        assert list(square.map(range(50))) == [x * x for x in range(50)]
    names = fake_server.fabric.names()
    assert names.count("FunctionMap") == 1
    assert names.count("FunctionPutInputs") == 50 // 7 + 2  # 7 more batches, 2 resent
    last_put = [r for r in fake_server.fabric.requests if r[0] == "FunctionPutInputs"][-1][1]
    assert last_put.closed


def test_map_resends_a_batch_lost_to_unavailable_but_never_stores_one_twice(fake_server):
    fabric_state = fake_server.fabric
    fabric_state.max_inputs_per_batch = 10
    fabric_state.unavailable_puts = 1  # not stored: sent again
    fabric_state.lost_put_replies = 1  # stored, reply lost: not sent again
    with app.run():
        assert list(square.map(range(50))) == [x * x for x in range(50)]
    call = next(iter(fabric_state.calls.values()))
    assert call.num_inputs == 50
    assert "FunctionCallGetInfo" in fabric_state.names()


def test_map_variants(fake_server):
    with app.run():
        assert sorted(square.map(range(20), order_outputs=False)) == sorted(x * x for x in range(20))
        assert list(echo.starmap([(1, 2), (3, 4)], kwargs={"k": 0})) == [((1, 2), {"k": 0}), ((3, 4), {"k": 0})]
        assert list(echo.map([1, 2], ["a", "b"])) == [((1, "a"), {}), ((2, "b"), {})]
        assert list(square.map([])) == []
        square.for_each(range(5))


def test_map_exceptions(fake_server):
    with app.run():
        results = list(fail_odd.map(range(6), return_exceptions=True))
        assert results[0::2] == [0, 2, 4]
        assert all(isinstance(r, KeyError) for r in results[1::2])
        with pytest.raises(KeyError):
            list(fail_odd.map(range(6)))
    assert "FunctionCallCancel" in fake_server.fabric.names()


def test_spawn_get_cancel_gather_from_id(fake_server):
    with app.run():
        call = square.spawn(9)
        assert isinstance(call, fabric.FunctionCall) and call.object_id
        assert call.get() == 81
        assert fabric.FunctionCall.from_id(call.object_id).get(timeout=5) == 81
        slow_call = slow.spawn(5)
        with pytest.raises(exception.OutputExpiredError):
            slow_call.get(timeout=0.1)
        with pytest.raises(TimeoutError):
            slow_call.get(timeout=0)
        slow_call.cancel()
        calls = [square.spawn(i) for i in range(4)]
        assert fabric.FunctionCall.gather(*calls) == [0, 1, 4, 9]
        mapped = square.spawn_map(range(5))
        assert mapped.get() == [0, 1, 4, 9, 16]
        assert fabric.FunctionCall.from_id(mapped.object_id) is not None


def test_calling_outside_a_running_app_says_what_to_do(fake_server):
    with pytest.raises(exception.InvalidError, match="app.run"):
        square.remote(1)
    assert square(3) == 9 and square.local(4) == 16


def test_deploy_and_from_name(fake_server):
    deployed = fabric.App("deployed-app")

    @deployed.function()
    def triple(x):
        return 3 * x

    deployed.deploy()
    names = fake_server.fabric.names()
    assert "AppHeartbeat" not in names
    assert triple.remote(2) == 6
    ref = fabric.Function.from_name("deployed-app", "triple")
    assert ref.remote(5) == 15
    with pytest.raises(exception.NotFoundError, match="gpufabric deploy"):
        fabric.Function.from_name("deployed-app", "nope").remote(1)


def test_prints_show_before_the_result(fake_server, capsys):
    fake_server.fabric.print_per_input = True
    with app.run():
        assert square.remote(4) == 16
        out = capsys.readouterr().out
        assert "[square] ran (4,)" in out
        list(square.map([1, 2]))
    assert "[square] ran (2,)" in capsys.readouterr().out


def test_heartbeats_are_sent(fake_server):
    fake_server.fabric.heartbeat_timeout_s = 0.3
    with app.run():
        time.sleep(0.35)
    assert "AppHeartbeat" in fake_server.fabric.names()


def test_wrong_token_is_an_auth_error(fake_server, monkeypatch):
    monkeypatch.setenv("GPUFABRIC_TOKEN", "wrong")
    with pytest.raises(exception.AuthError, match="GPUFABRIC_TOKEN"):
        with app.run():
            pass


def test_python_script_with_main_block(fake_server, tmp_path):
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "hello_script.py"
    script.write_text(textwrap.dedent("""
        import core_executor as fabric

        app = fabric.App("hello")

        @app.function()
        def square(x):
            return x * x

        @app.local_entrypoint()
        def main():
            print("result", square.remote(6), list(square.map([1, 2, 3])))

        if __name__ == "__main__":
            with app.run():
                main()
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "result 36 [1, 4, 9]" in proc.stdout
    create = [r for r in fake_server.fabric.requests if r[0] == "FunctionCreate"][0][1]
    assert create.definition.module_name == "hello_script" and create.definition.kind == 1


def test_apps_running_together_share_one_embedded_fabric(monkeypatch, tmp_path):
    from core_executor import _app

    started, stopped = [], []

    class FakeEmbedded:
        def __init__(self, data_dir):
            self.server = FakeServer()
            self.url, self.token, self.running = self.server.url, self.server.token, True
            started.append(data_dir)

        def start(self):
            return self

        def stop(self):
            self.running = False
            stopped.append(1)
            self.server.stop()

    from tests.core_executor.sdk_fake_fabric import FakeServer

    monkeypatch.delenv("GPUFABRIC_URL", raising=False)
    monkeypatch.setenv("GPUFABRIC_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("core_executor._embedded.EmbeddedFabric", FakeEmbedded)
    other = fabric.App("other")

    @other.function()
    def double(x):
        return 2 * x

    with app.run(show_logs=False), other.run(show_logs=False):
        assert square.remote(3) == 9 and double.remote(4) == 8
        assert len(started) == 1 and not stopped
    assert started == [str(tmp_path)] and stopped == [1]
    assert _app._embedded._fabric is None


@app.function()
def count_to(n):
    for i in range(n):
        yield i
    if n < 0:
        raise ValueError("negative")


def test_generators_stream_with_remote_gen(fake_server):
    with app.run():
        assert list(count_to.remote_gen(4)) == [0, 1, 2, 3]
        assert list(count_to.remote_gen(0)) == []
        with pytest.raises(exception.InvalidError, match="remote_gen"):
            count_to.remote(3)
        with pytest.raises(exception.InvalidError, match="not a generator"):
            list(square.remote_gen(3))
