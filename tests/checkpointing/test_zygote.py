"""The fork-server zygote forks warmed children that run a module, and reports their exits."""
import os
import sys
import time

import pytest

from checkpointing import Zygote, ZygoteError, detect_criu


def test_zygote_forks_a_module_with_stdio_env_and_exit_code(tmp_path):
    (tmp_path / "childmod.py").write_text(
        "import os, sys, json\nprint(os.environ['GREETING'], sys.argv[1:], 'json' in sys.modules)\nsys.exit(3)\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), GREETING="hi")
    with Zygote(["json"], env=env) as zygote:
        out = tmp_path / "out"
        with open(out, "wb") as f:
            child = zygote.spawn("childmod", ["a", "b"], env=env, cwd=str(tmp_path), stdout=f.fileno())
        assert child.wait(10) == 3
        assert out.read_text().strip() == "hi ['a', 'b'] True"
        # Many children from one warm parent; each is cheap.
        started = time.monotonic()
        kids = [zygote.spawn("childmod", [], env=env, stdout=os.open(os.devnull, os.O_WRONLY)) for _ in range(5)]
        assert [k.wait(10) for k in kids] == [3] * 5
        assert time.monotonic() - started < 5


def test_children_do_not_collect_or_copy_what_the_zygote_imported(tmp_path):
    """The zygote freezes its objects before forking (gc.freeze): a child's full collection skips
    them, so it neither takes the time to walk them nor copies their pages to write GC headers."""
    (tmp_path / "gcchild.py").write_text(
        "import gc, sys\nfrozen = gc.get_freeze_count()\ngc.collect()\n"
        "print(frozen, len(gc.get_objects()), 'email.parser' in sys.modules)\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    with Zygote(["email.parser", "json"], env=env) as zygote:
        out = tmp_path / "out"
        with open(out, "wb") as f:
            assert zygote.spawn("gcchild", env=env, stdout=f.fileno()).wait(10) == 0
    frozen, tracked, preloaded = out.read_text().split()
    assert preloaded == "True"
    # What the imports made is frozen, and the collector tracks only the child's own objects.
    assert int(frozen) > 5 * int(tracked) > 0, (frozen, tracked)


def test_a_zygote_in_a_directory_too_deep_for_a_unix_socket_still_starts(tmp_path):
    """sun_path holds 108 bytes: a runtime dir deeper than that (a long TMPDIR) must not turn every
    warm start into a cold one."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (tmp_path / "childmod.py").write_text("print('forked')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    with Zygote(["json"], env=env, directory=str(deep)) as zygote:
        assert len(os.fsencode(zygote.path)) <= 107
        assert os.stat(os.path.dirname(zygote.path)).st_mode & 0o777 == 0o700
        out = tmp_path / "out"
        with open(out, "wb") as f:
            assert zygote.spawn("childmod", env=env, stdout=f.fileno()).wait(10) == 0
        assert out.read_text() == "forked\n"
    assert not os.path.exists(zygote.path)


def test_zygote_reports_a_signal_and_bad_preload(tmp_path):
    (tmp_path / "sleeper.py").write_text("import time\ntime.sleep(30)\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    with Zygote(env=env) as zygote:
        child = zygote.spawn("sleeper", env=env)
        assert child.poll() is None
        os.kill(child.pid, 9)
        assert child.wait(10) == -9
    with pytest.raises(ZygoteError):
        Zygote(["no_such_module_anywhere"])


def test_criu_detection_says_why():
    support = detect_criu()
    assert support.usable or support.reason
    assert not detect_criu("/nonexistent/criu").usable


@pytest.mark.parametrize("keeps", [True, False])
def test_criu_detection_says_whether_criu_keeps_its_kernel_probe(tmp_path, monkeypatch, keeps):
    """criu saves its kernel probe (criu.kdat) only on a tmpfs; where it cannot, every restore
    probes again, and the worker says so in its log."""
    from checkpointing import _criu

    rundir = tmp_path / "run"
    rundir.mkdir()
    monkeypatch.setattr(_criu, "_KDAT_DIRS", (str(rundir),))
    fake = tmp_path / "criu"
    save = f"touch {rundir / 'criu.kdat'}" if keeps else "true"
    fake.write_text(f'#!/bin/sh\nif [ "$1" = --version ]; then echo "Version: 4.1.1"; else {save}; fi\n')
    fake.chmod(0o755)
    support = detect_criu(str(fake))
    assert support.usable and support.version == (4, 1)
    assert support.kernel_cache is keeps


def test_zygote_warm_up_runs_before_forks_and_its_failure_is_a_zygote_error(tmp_path):
    (tmp_path / "warmmod.py").write_text("import os\nSTATE = {}\ndef prepare(value):\n    STATE['value'] = value\n"
                                         "    STATE['pid'] = os.getpid()\ndef broken():\n    raise RuntimeError('no')\n")
    (tmp_path / "readmod.py").write_text("import os, warmmod\nprint(warmmod.STATE['value'], warmmod.STATE['pid'] == os.getppid())\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    zygote = Zygote(env=env, warmup=("warmmod", "prepare", ["warm"]), parent_pid=os.getpid(), wait=False)
    try:
        zygote.wait_ready(60)
        out = tmp_path / "out"
        with open(out, "wb") as f:
            assert zygote.spawn("readmod", env=env, stdout=f.fileno()).wait(10) == 0
        assert out.read_text().split() == ["warm", "True"]
    finally:
        zygote.close()
    with pytest.raises(ZygoteError, match="warmmod.broken"):
        Zygote(env=env, warmup=("warmmod", "broken", []))


def test_a_snapshot_zygote_is_dumped_with_one_thread_even_after_importing_numpy(tmp_path):
    """OpenBLAS starts cores - 1 threads when numpy is imported. Forked children never see them,
    but a CRIU image would carry them and every restore would rebuild them: the snapshot zygote
    forks once before it says "warm", and OpenBLAS's fork handler stops them."""
    import shutil
    import subprocess
    import sys

    if not shutil.which("unshare") or os.geteuid() != 0:
        pytest.skip("a snapshot zygote needs unshare and root (its own PID namespace)")
    plain = subprocess.run([sys.executable, "-c", "import os, numpy; print(len(os.listdir('/proc/self/task')))"],
                           capture_output=True, text=True, timeout=120)
    if int(plain.stdout) < 2:
        pytest.skip("numpy's OpenBLAS started no thread here (one core?): nothing to stop")
    # A child's BLAS is as parallel as in a fresh process: OpenBLAS starts its threads again there.
    (tmp_path / "blaschild.py").write_text(
        "import os, sys, numpy\n"
        "a = numpy.ones((600, 600))\n"
        "for _ in range(3):\n"
        "    a @ a\n"
        "open(sys.argv[1], 'w').write(str(len(os.listdir('/proc/self/task'))))\n")
    seen = []
    zygote = Zygote(["numpy"], snapshot=True, wait=False, env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    try:
        zygote.wait_ready(120, before_handoff=lambda z: seen.append(len(os.listdir(f"/proc/{z.pid}/task"))))
        assert seen == [1]
        child = zygote.spawn("blaschild", [str(tmp_path / "threads")], env=dict(os.environ, PYTHONPATH=str(tmp_path)))
        assert child.wait(60) == 0
        assert int((tmp_path / "threads").read_text()) == int(plain.stdout)
    finally:
        zygote.close()


def test_dumps_ask_for_no_network_lock(tmp_path):
    """The processes dumped hold no TCP connection, and a restore follows the lock written in the
    image: with nftables, each restore spent 10-20 ms deleting a table that was never made."""
    from checkpointing._criu import dump_tree

    fake = tmp_path / "criu"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'argv'}\n")
    fake.chmod(0o755)
    dump_tree(os.getpid(), str(tmp_path / "images"), criu=str(fake), leave_running=True)
    argv = (tmp_path / "argv").read_text().split()
    assert argv[:2] == ["dump", "-t"] and "--leave-running" in argv
    assert argv[argv.index("--network-lock") + 1] == "skip"
