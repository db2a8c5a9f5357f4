"""Warm starts on a real fabric: containers forked from a per-function zygote (CRIU: tests/checkpointing)."""
from __future__ import annotations

import os
import shutil
import time

import psutil
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.system]


def _gone(pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # and let the control plane see the exit


def test_fork_server_forks_each_container_from_the_warmed_zygote(new_fabric):
    fabric = new_fabric("--workers", "1")
    from . import snap_apps as apps

    with apps.app.run(show_logs=False):
        seen = []
        for _ in range(3):
            got = apps.Warm().where.remote()
            seen.append(got)
            _gone(got["host_pid"])  # the next call needs a new container
        doubled = apps.warm_function.remote(21)
    assert doubled["twice"] == 42 and doubled["pid"] != doubled["ppid"]
    assert len({s["host_pid"] for s in seen}) == 3, seen
    # The first container waited for the warm-up and took the hello fetched for it; the others ask.
    assert seen[0]["hello_file"] and not os.path.exists(seen[0]["hello_file"]), seen
    assert not seen[1]["hello_file"] and not seen[2]["hello_file"], seen
    for s in seen:
        # snap=True setup ran once, in the zygote, which is every container's parent; the other
        # @enter ran in the container itself.
        assert s["snap_pid"] == s["ppid"] == seen[0]["snap_pid"] != s["pid"], s
        assert s["enter_pid"] == s["pid"] and s["answer"] == 42
    log = fabric.tail(200_000)
    assert log.count("fork_server start") >= 2, log[-3000:]


def test_a_failing_warm_up_falls_back_to_a_cold_start_and_says_so(new_fabric, capsys):
    new_fabric("--workers", "1")
    from . import snap_apps as apps

    with apps.app.run(show_logs=True):
        with pytest.raises(Exception, match="no model file here"):
            apps.BrokenWarmUp().run.remote()
        time.sleep(1.0)  # the system log line arrives with the log stream
    captured = capsys.readouterr()
    assert "warm start unavailable" in captured.out + captured.err



def _criu_or_skip():
    import shutil

    from checkpointing import detect_criu

    support = detect_criu()
    if not support.usable:
        pytest.skip(f"CRIU snapshots unavailable: {support.reason}")
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is not installed")


def _wait_log(fabric, text: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while text not in (log := fabric.tail(400_000)):
        assert time.monotonic() < deadline, f"{text!r} not in the fabric's log:\n{log[-3000:]}"
        time.sleep(0.1)
    return log


def test_an_idle_zygote_is_stopped_and_the_next_one_is_restored_from_its_criu_snapshot(
        new_fabric, monkeypatch, tmp_path, capsys):
    _criu_or_skip()
    monkeypatch.setenv("GPUFABRIC_ZYGOTE_IDLE_S", "1")
    monkeypatch.setenv("GPUFABRIC_IMAGE_DIR", str(tmp_path / "images"))
    # The worker's runtime dir, where it keeps images, goes here (deep: zygote sockets go elsewhere).
    worker_tmp = tmp_path / "tmp"
    worker_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(worker_tmp))
    fabric = new_fabric("--workers", "1")
    from . import snap_apps as apps

    with apps.app.run(show_logs=True):
        first = apps.Warm().where.remote()
        _gone(first["host_pid"])
        # The zygote has had no container for a second: the worker stops it...
        _wait_log(fabric, "no container for 1s")
        # ...and the next container's zygote comes back from the snapshot, not a new warm-up.
        second = apps.Warm().where.remote()
        time.sleep(1.0)  # system log lines arrive with the log stream
        out = capsys.readouterr()
        said = out.out + out.err
        assert "snapshot of the warm process stored" in said, said[-3000:]
        assert "restored the warm process from its CRIU snapshot" in said, said[-3000:]
        # The worker kept the images it dumped: restoring here fetched nothing from the image store.
        assert "fetched the CRIU snapshot" not in said, said[-3000:]
        # A worker without them (another one, or this one once they are gone) fetches them first.
        _gone(second["host_pid"])
        while fabric.tail(400_000).count("no container for 1s") < 2:
            time.sleep(0.1)
        kept = list(worker_tmp.glob("gpufabric-worker-*/zygotes/snapshots/*"))
        assert len(kept) == 1, kept
        shutil.rmtree(kept[0])
        third = apps.Warm().where.remote()
        time.sleep(1.0)
    out = capsys.readouterr()
    said = out.out + out.err
    assert "fetched the CRIU snapshot" in said and "restored the warm process from its CRIU snapshot" in said, \
        said[-3000:]
    assert third["answer"] == 42 and third["snap_host_pid"] == first["snap_host_pid"]
    assert first["answer"] == second["answer"] == 42
    # The restored zygote never ran the snap=True setup: its state (even the pid it recorded, of the
    # zygote that was dumped and has since been stopped) came with the snapshot.
    assert second["snap_host_pid"] == first["snap_host_pid"], (first, second)
    assert second["host_pid"] != first["host_pid"]
    # The container that waited for the restore got the hello the worker had fetched meanwhile.
    assert second["hello_file"] and not os.path.exists(second["hello_file"]), second
    assert second["snap_pid"] == first["snap_pid"] == second["ppid"] == 1, (first, second)  # PID 1 of its namespace
    assert "snapshot start" in fabric.tail(400_000)


def test_a_snapshot_from_an_incompatible_host_is_not_restored(new_fabric, monkeypatch, tmp_path, capsys):
    _criu_or_skip()
    import json

    from fs_lazy import open_store

    monkeypatch.setenv("GPUFABRIC_ZYGOTE_IDLE_S", "1")
    monkeypatch.setenv("GPUFABRIC_IMAGE_DIR", str(tmp_path / "images"))
    fabric = new_fabric("--workers", "1")
    from . import snap_apps as apps

    with apps.app.run(show_logs=True):
        first = apps.warm_function.remote(1)
        _gone(first["host_pid"])
        _wait_log(fabric, "no container for 1s")
        # Make the stored snapshot say it was taken on a CPU with a feature this one lacks.
        store = open_store(str(tmp_path / "images" / "store"))
        refs = tmp_path / "images" / "store" / "refs"
        [name] = [p.name for p in refs.iterdir() if p.name.startswith("snapshot-")]
        record = json.loads(store.get_blob(store.get_ref(name)))
        record["host"]["cpu_flags"] = record["host"]["cpu_flags"] + ["gpufabric_test_feature"]
        store.set_ref(name, store.put_blob(json.dumps(record).encode()))
        second = apps.warm_function.remote(2)
        time.sleep(1.0)
    said = capsys.readouterr()
    said = said.out + said.err
    assert second["twice"] == 4
    assert "this CPU lacks features the snapshot's CPU had: gpufabric_test_feature" in said, said[-3000:]
    assert "restored the warm process" not in said


REDEPLOYED = '''
import os
import core_executor as fabric

app = fabric.App("snap-redeploy")
LOADED_IN = int(os.readlink("/proc/self"))  # the process that imported this code: the zygote, warm


@app.function(enable_memory_snapshot=True, scaledown_window=1, cpu=0.25)
def which():
    return {{"version": "{version}", "loaded_in": LOADED_IN, "host_pid": int(os.readlink("/proc/self"))}}
'''


def test_a_redeploy_gets_a_new_zygote_with_the_new_code(new_fabric, tmp_path):
    """Containers of redeployed code are forked from a zygote that loaded that code, not loaded
    cold inside a fork of the old one; the old zygote goes once its containers have."""
    import subprocess
    import sys

    import core_executor as fabric

    new_fabric("--workers", "1")
    gpufabric = os.path.join(os.path.dirname(sys.executable), "gpufabric")
    app_file = tmp_path / "snap_redeploy.py"
    seen = []
    for version in ("v1", "v2"):
        app_file.write_text(REDEPLOYED.format(version=version))
        deployed = subprocess.run([gpufabric, "deploy", str(app_file)], capture_output=True, text=True, timeout=120)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        got = fabric.Function.from_name("snap-redeploy", "which").remote()
        assert got["version"] == version
        # Imported by a zygote, before the fork: not by the container itself.
        assert got["loaded_in"] != got["host_pid"], got
        seen.append(got)
        _gone(got["host_pid"])
    assert seen[0]["loaded_in"] != seen[1]["loaded_in"], seen
    deadline = time.monotonic() + 30  # the old zygote has no container left: it is stopped
    while psutil.pid_exists(seen[0]["loaded_in"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not psutil.pid_exists(seen[0]["loaded_in"])
