"""CRIU on this host: a warmed process dumped once and restored twice (skipped where CRIU cannot)."""
import os
import shutil
import sys
import time

import pytest

from checkpointing import CriuError, detect_criu, restore_process, snapshot_process

pytestmark = pytest.mark.system

_CHILD = """
import json, os, sys, time
table = json.loads('{"warm": 1}')  # state built before the dump
run = sys.argv[1]
open(os.path.join(run, "ready"), "w").close()
while not os.path.exists(os.path.join(run, "go")):
    time.sleep(0.005)
with open(os.path.join(run, f"restored-{time.monotonic_ns()}"), "w") as f:
    f.write(str(table["warm"]))
"""


@pytest.fixture(scope="module")
def criu():
    support = detect_criu()
    if not support.usable:
        pytest.skip(f"CRIU unavailable: {support.reason}")
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is not installed")
    return support.path


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_warmed_process_is_restored_many_times_with_its_state(criu, tmp_path):
    script, run, images = tmp_path / "child.py", tmp_path / "run", str(tmp_path / "images")
    script.write_text(_CHILD)
    run.mkdir()
    snapshot_process([sys.executable, str(script), str(run)], images, ready_path=str(run / "ready"), criu=criu)
    (run / "go").touch()
    for i in range(2):  # one image, restored again and again (each into a new PID namespace)
        restore_process(images, criu=criu)
        _wait_for(lambda: len([n for n in os.listdir(run) if n.startswith("restored-")]) == i + 1)
    assert [p.read_text() for p in run.glob("restored-*")] == ["1", "1"]


def test_a_missing_image_is_a_criu_error_with_the_log(criu, tmp_path):
    with pytest.raises(CriuError, match="restore failed"):
        restore_process(str(tmp_path), criu=criu)


def test_the_criu_install_script_builds_keeps_its_kernel_probe(criu):
    """scripts/install_criu.sh builds criu with its RUNDIR on a tmpfs, so that restores do not
    probe the kernel again each time (~25-40 ms of every restore)."""
    if criu != "/usr/local/sbin/criu":
        pytest.skip(f"{criu} was not built by scripts/install_criu.sh")
    assert detect_criu(criu).kernel_cache
