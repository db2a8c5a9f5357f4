"""The sandbox on its own (system tier): namespaces, overlay, hidden host files, cgroup memory limit."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from gpu_fabric.worker import _sandbox

pytestmark = pytest.mark.system

_FACILITIES = _sandbox.detect() if sys.platform == "linux" else None
needs_bwrap = pytest.mark.skipif(_FACILITIES is None or _FACILITIES.bwrap is None,
                                 reason="bubblewrap unavailable: " + "; ".join(_FACILITIES.missing if _FACILITIES else ()))


@pytest.fixture
def fake_image(tmp_path):
    """The host's own /usr as a tiny 'image' (it has a shell and Python) with its own /etc."""
    root = tmp_path / "image"
    for name in ("usr", "etc", "root", "tmp", "proc", "dev", "run"):
        (root / name).mkdir(parents=True)
    for link in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{link}"):
            os.symlink(os.readlink(f"/{link}"), root / link)
    (root / "etc" / "marker").write_text("image\n")
    return root


def _run(sandbox, command, env=None):
    argv = sandbox.argv(command)
    env = sandbox.env(env or {"GPUFABRIC_STATUS_FILE": "/x/status", "GPUFABRIC_AGENT_PID": "1"})
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


@needs_bwrap
def test_sandbox_isolates_and_overlays(tmp_path, fake_image):
    usr = tmp_path / "image" / "usr"
    os.rmdir(usr)
    shutil.copytree("/usr/bin", usr / "bin", symlinks=True, dirs_exist_ok=True,
                    ignore=lambda d, names: [n for n in names if n not in ("sh", "dash", "cat", "ls")])
    shutil.copytree("/usr/lib", usr / "lib", symlinks=True, dirs_exist_ok=True,
                    ignore=lambda d, names: [n for n in names if n.startswith("python") or n == "locale"])
    if os.path.isdir("/usr/lib64"):
        shutil.copytree("/usr/lib64", usr / "lib64", symlinks=True)
    directory = tmp_path / "container"
    directory.mkdir()
    sandbox = _sandbox.Sandbox("c1", image_root=str(fake_image), directory=str(directory), workdir="/root")
    script = ("cat /etc/marker; echo $$; ls /; test -e " + str(tmp_path) + " && echo HOSTVISIBLE; "
              "echo changed > /etc/marker 2>/dev/null && echo WROTE; echo $GPUFABRIC_STATUS_FILE; "
              "echo agent=$GPUFABRIC_AGENT_PID")
    result = _run(sandbox, ["sh", "-c", script])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[0] == "image" and int(lines[1]) < 10
    assert "HOSTVISIBLE" not in result.stdout
    assert "/run/gpufabric/agent/status" in result.stdout and "agent=" in result.stdout.split()[-1]
    if _FACILITIES.overlay:
        assert "WROTE" in result.stdout
        assert (fake_image / "etc" / "marker").read_text() == "image\n"  # the image itself is untouched
    sandbox.cleanup()


@needs_bwrap
def test_memory_limit_kills_and_is_named(tmp_path):
    if _FACILITIES.memory_parent is None:
        pytest.skip("no usable memory cgroup controller: " + "; ".join(_FACILITIES.missing))
    directory = tmp_path / "container"
    directory.mkdir()
    # The host root stands in for an image here: this test is about the cgroup, not the root.
    sandbox = _sandbox.Sandbox("c-oom", image_root="/", directory=str(directory), memory_mb=64,
                               facilities=_FACILITIES.__class__(_FACILITIES.bwrap, False, _FACILITIES.cgroup_version,
                                                                _FACILITIES.memory_parent, None))
    python = shutil.which("python3", path="/usr/bin:/bin")  # the sandbox hides /root, where pyenv lives
    if python is None:
        pytest.skip("no system python3 to allocate memory with")
    result = _run(sandbox, [python, "-c", "b = b'x' * (512 << 20); print(len(b))"])
    assert result.returncode != 0
    assert sandbox.out_of_memory()
    assert "out of memory" in sandbox.exit_note()
    sandbox.cleanup()
    assert not os.path.exists(os.path.join(_FACILITIES.memory_parent, "gpufabric-c-oom"))
