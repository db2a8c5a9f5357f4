"""The `gpufabric` CLI against a running fabric: run, deploy, app list|logs|stop."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

APP_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cli_app.py")
GPUFABRIC = os.path.join(os.path.dirname(sys.executable), "gpufabric")


def _cli(*args: str, env=None, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([GPUFABRIC, *args], capture_output=True, text=True, timeout=120, env=env or dict(os.environ))
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_run_entrypoint_with_arguments(fabric_env):
    out = _cli("run", APP_FILE, "--name", "ada", "--times", "2").stdout
    assert out.count("hello ada") == 2
    assert "greeting ada" in out


def test_run_a_function_directly(fabric_env):
    out = _cli("run", f"{APP_FILE}::greet", "--name", "bob").stdout
    assert "hello bob" in out


def test_deploy_list_logs_stop(fabric_env):
    _cli("deploy", APP_FILE)
    listing = _cli("app", "list").stdout
    assert "cli-demo" in listing and "greet" in listing
    import core_executor as fabric

    assert fabric.Function.from_name("cli-demo", "greet").remote("eve") == "hello eve"
    logs = _cli("app", "logs", "cli-demo").stdout
    assert "greeting eve" in logs
    _cli("app", "stop", "cli-demo")
    assert "cli-demo" not in _cli("app", "list").stdout
    with pytest.raises(fabric.exception.NotFoundError):
        fabric.Function.from_name("cli-demo", "greet").remote("eve")


def test_errors_say_what_to_do(fabric_env):
    env = dict(os.environ)
    env.pop("GPUFABRIC_URL")
    env.pop("GPUFABRIC_TOKEN")
    proc = _cli("app", "list", env=env, check=False)
    assert proc.returncode != 0 and "GPUFABRIC_URL" in proc.stderr
    proc = _cli("run", "no_such_file.py", check=False)
    assert proc.returncode != 0 and "no_such_file.py" in proc.stderr
    proc = _cli("app", "stop", "no-such-app", check=False)
    assert proc.returncode != 0 and "no-such-app" in proc.stderr


def test_worker_ls_shows_the_gpus(fabric_env):
    out = _cli("worker", "ls").stdout
    assert "0:H100 (Simulated H100, 81559 MiB)" in out, out
