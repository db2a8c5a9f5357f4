"""Warm starts on a real fabric: containers forked from a per-function zygote (CRIU: tests/checkpointing)."""
from __future__ import annotations

import os
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
            _gone(got["pid"])  # the next call needs a new container
        doubled = apps.warm_function.remote(21)
    assert doubled["twice"] == 42 and doubled["pid"] != doubled["ppid"]
    assert len({s["pid"] for s in seen}) == 3, seen
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

