"""Calls through a real fabric: control plane, worker agent and container processes on loopback."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import core_executor as fabric
from core_executor import exception

from . import apps

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_remote_map_spawn_and_local(fabric_env, capsys):
    with apps.app.run():
        assert apps.square.local(3) == 9
        assert apps.square.remote(4) == 16
        assert list(apps.square.map(range(20))) == [x * x for x in range(20)]
        assert sorted(apps.square.map(range(20), order_outputs=False)) == [x * x for x in range(20)]
        assert list(apps.square.starmap([(2,), (3,)])) == [4, 9]
        call = apps.square.spawn(5)
        assert call.get(timeout=30) == 25
        assert fabric.FunctionCall.from_id(call.object_id).get(timeout=30) == 25
        calls = [apps.square.spawn(i) for i in range(3)]
        assert fabric.FunctionCall.gather(*calls) == [0, 1, 4]
    out = capsys.readouterr().out
    assert "squaring 4" in out
    assert "[square]" in out or "square" in out


def test_remote_exception_keeps_type_and_remote_traceback(fabric_env):
    with apps.app.run():
        with pytest.raises(ValueError, match="boom") as err:
            apps.fail.remote("boom")
        assert "apps.py" in str(err.value.__cause__)
        results = list(apps.fail.map(["a", "b"], return_exceptions=True))
        assert all(isinstance(r, ValueError) for r in results)


def test_unpicklable_argument_is_named_before_sending(fabric_env):
    with apps.app.run():
        with pytest.raises(exception.SerializationError, match="positional argument 0"):
            apps.echo.remote(threading.Lock())


def test_large_payloads_use_the_blob_store_and_the_limit_is_named(fabric_env):
    big = os.urandom(5 * 1024 * 1024)
    with apps.app.run():
        assert apps.echo.remote(big) == big
        too_big = b"x" * (17 * 1024 * 1024)  # the fixture's fabric accepts at most 16 MiB
        with pytest.raises(exception.InvalidError, match="limit"):
            apps.echo.remote(too_big)


def test_timeout(fabric_env):
    with apps.app.run():
        with pytest.raises(exception.FunctionTimeoutError):
            apps.sleepy.remote(5)
        assert apps.sleepy.remote(0) == "woke"


def test_container_crash_fails_that_call_after_retries_and_others_go_on(fabric_env):
    with apps.app.run():
        results = list(apps.crash_on.map(range(6), return_exceptions=True))
    assert [r for i, r in enumerate(results) if i != 3] == [0, 1, 2, 4, 5]
    assert isinstance(results[3], exception.InternalFailure)
    assert "exited with code 17" in str(results[3])


def test_simulated_gpu_fallback_list_pins_cuda_visible_devices(fabric_env, capsys):
    with apps.app.run():
        assert apps.gpu_env.remote() == "0"
        time.sleep(0.5)  # the system log line arrives with the log stream
    captured = capsys.readouterr()
    assert "scheduler: fallback: gpu_env: 1x H100" in captured.out + captured.err
    assert "first choice 1x B200" in captured.out + captured.err


def test_calls_from_inside_a_container(fabric_env):
    with apps.app.run():
        assert apps.calls_square.remote(3) == 10


def test_wrong_token_is_an_auth_error(fabric_env, monkeypatch):
    monkeypatch.setenv("GPUFABRIC_TOKEN", "not-the-token")
    with pytest.raises(exception.AuthError):
        with apps.app.run():
            pass


def test_deploy_and_from_name(fabric_env):
    apps.app.deploy()
    square = fabric.Function.from_name("integration", "square")
    assert square.remote(6) == 36
    with pytest.raises(exception.NotFoundError):
        fabric.Function.from_name("integration", "nope").remote(1)
    with pytest.raises(exception.NotFoundError):
        fabric.Function.from_name("no-such-app", "square").remote(1)


def test_killed_worker_inputs_run_elsewhere(new_fabric, tmp_path):
    fab = new_fabric("--workers", "2", "--heartbeat-timeout", "3")
    marker = tmp_path / "ppid"
    with apps.app.run():
        call = apps.where_am_i.spawn(str(marker), 4)
        deadline = time.time() + 30
        while not (marker.exists() and marker.read_text()):
            assert time.time() < deadline, fab.tail()
            time.sleep(0.05)
        victim = int(marker.read_text())
        assert victim in fab.worker_pids()
        os.kill(victim, signal.SIGKILL)
        survivor = call.get(timeout=60)
    assert survivor != victim


def test_control_plane_restart_between_spawn_and_get(new_fabric, tmp_path):
    fab = new_fabric("--heartbeat-timeout", "3")
    with apps.app.run():
        call = apps.where_am_i.spawn(str(tmp_path / "m"), 1.5)
        fab.stop(signal.SIGKILL)  # the control plane, its worker and its containers all die
        fab.start()  # same data dir, same port, same token
        assert call.get(timeout=60) > 0


def test_hello_demo_via_cli(tmp_path):
    env = dict(os.environ, GPUFABRIC_DATA_DIR=str(tmp_path / "embedded"))
    env.pop("GPUFABRIC_URL", None)
    env.pop("GPUFABRIC_TOKEN", None)
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "gpufabric"), "run", os.path.join(ROOT, "examples", "hello.py")],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "9 16" in lines
    assert str(sum(x * x for x in range(200))) in lines
    assert "25" in lines
    assert any("squaring 4" in line and "square" in line.split("squaring")[0] for line in lines)


def test_hello_demo_via_python(tmp_path):
    env = dict(os.environ, GPUFABRIC_DATA_DIR=str(tmp_path / "embedded"))
    env.pop("GPUFABRIC_URL", None)
    env.pop("GPUFABRIC_TOKEN", None)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "hello.py")], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "9 16" in proc.stdout.splitlines()


def test_generator_items_stream_in_order(fabric_env):
    with apps.app.run():
        assert list(apps.count_to.remote_gen(5)) == [0, 1, 2, 3, 4]


def _running_containers(app_id: str) -> int:
    from core_executor._client import get_client  # the SDK's own connection

    client = get_client()
    listing = client.call("AppList", client.pb.AppListRequest())
    return sum(a.running_containers for a in listing.apps if a.app_id == app_id)


def test_min_containers_and_scaledown_window(fabric_env):
    with apps.app.run():
        deadline = time.time() + 30
        # min_containers=1 starts `warm` before any call; calls reuse that warm container.
        first = apps.warm.remote()
        assert all(apps.warm.remote() == first for _ in range(5))
        # `short_lived` scales to zero after its 1 s window; the next call gets a new container.
        pid = apps.short_lived.remote()
        while time.time() < deadline:
            time.sleep(0.5)
            running = _running_containers(apps.app.app_id)
            if running == 1:  # only the min_containers one is left
                break
        assert running == 1
        assert apps.short_lived.remote() != pid
        assert apps.warm.remote() == first


def test_two_embedded_runs_at_once_each_get_a_fabric(tmp_path):
    env = dict(os.environ, GPUFABRIC_DATA_DIR=str(tmp_path / "embedded"))
    env.pop("GPUFABRIC_URL", None)
    env.pop("GPUFABRIC_TOKEN", None)
    cmd = [sys.executable, os.path.join(ROOT, "examples", "hello.py")]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert "9 16" in out.splitlines()


def test_local_workers_end_with_their_fabric(new_fabric):
    import psutil

    fab = new_fabric("--workers", "2")
    workers = [psutil.Process(pid) for pid in fab.worker_pids()]
    assert len(workers) == 2
    fab.proc.kill()  # only the serve process: its workers must not be left behind
    gone, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive


def test_python_version_mismatch_is_refused_before_sending(fabric_env):
    with apps.app.run():
        with pytest.raises(exception.VersionMismatchError, match="3.10"):
            apps.old_python.remote(1)


def test_cancel_a_spawned_call(fabric_env):
    with apps.app.run():
        call = apps.where_am_i.spawn(os.devnull, 30)
        time.sleep(1)
        call.cancel()
        with pytest.raises(exception.InputCancellation):
            call.get(timeout=30)
        assert apps.square.remote(2) == 4  # the fabric goes on


def test_for_each_and_spawn_map(fabric_env, tmp_path):
    path = str(tmp_path / "lines")
    with apps.app.run():
        apps.append_line.for_each([path] * 3, ["a", "b", "c"])
        assert sorted(open(path).read().split()) == ["a", "b", "c"]
        apps.append_line.spawn_map([path] * 2, ["d", "e"])
        deadline = time.time() + 30
        while len(open(path).read().split()) < 5:
            assert time.time() < deadline
            time.sleep(0.1)


def test_idle_warm_containers_make_room_for_queued_work(fabric_env):
    # The shared fabric has one simulated H100 and a 30 s scaledown window: the first function's
    # idle container holds the GPU, and the second function must not wait for the window.
    with apps.app.run():
        assert apps.gpu_first.remote() == "0"
        t0 = time.time()
        assert apps.gpu_second.remote() == "0"
        assert time.time() - t0 < 20
