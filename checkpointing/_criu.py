"""CRIU: detecting whether this host can dump and restore processes, and doing it (never assumed)."""
from __future__ import annotations

import os
import platform
import re
import shutil
import sys
import subprocess
import time
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

__all__ = ["CriuError", "CriuSupport", "detect_criu", "dump_tree", "host_fingerprint", "incompatibility", "MIN_VERSION", "restore_process", "restore_tree",
           "snapshot_process"]

# Older CRIU (Debian 12's 3.17) fails on kernels >= 6.13 ("Unexpected rt vDSO area bounds").
MIN_VERSION = (4, 1)


@dataclass(frozen=True)
class CriuSupport:
    """What `detect_criu` found; `usable` False comes with a `reason` saying what is missing."""

    usable: bool
    reason: str = ""
    path: str = ""
    version: tuple = ()
    # Whether criu kept what it probed of the kernel (RUNDIR/criu.kdat) for its next runs. It does
    # so only on a tmpfs; where it cannot, every dump and restore probes again (~25-40 ms).
    kernel_cache: bool = True


# Where criu keeps its kernel probe: RUNDIR, /run for distribution packages, /dev/shm where
# scripts/install_criu.sh built it on a host whose /run is not a tmpfs.
_KDAT_DIRS = ("/run", "/dev/shm")


def detect_criu(criu: Optional[str] = None, *, timeout_s: float = 20.0) -> CriuSupport:
    """Find criu, check its version is >= 4.1 and that `criu check` passes on this kernel.

    `kernel_cache` False: criu could not keep its kernel probe between runs (its RUNDIR is not a
    tmpfs), so each restore pays for probing the kernel again; see docs/volumes.md."""
    # GPUFABRIC_CRIU: a criu built from source and not installed (docs/volumes.md, Warm starts).
    path = criu or os.environ.get("GPUFABRIC_CRIU") or shutil.which("criu") or ""
    if not path:
        return CriuSupport(False, "criu is not installed (build 4.1.x from source; see docs/volumes.md)")
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return CriuSupport(False, f"cannot run {path}: {exc}", path)
    match = re.search(r"Version:\s*(\d+)\.(\d+)", out.stdout)
    if not match:
        return CriuSupport(False, f"cannot read the version of {path}", path)
    version = (int(match.group(1)), int(match.group(2)))
    if version < MIN_VERSION:
        return CriuSupport(False, f"criu {version[0]}.{version[1]} is too old (need >= 4.1 on this kernel)", path, version)
    try:
        check = subprocess.run([path, "check"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return CriuSupport(False, f"criu check did not run: {exc}", path, version)
    if check.returncode != 0:
        tail = (check.stderr or check.stdout).strip().splitlines()[-1:] or ["criu check failed"]
        return CriuSupport(False, f"criu check failed: {tail[0]}", path, version)
    cached = any(os.path.exists(os.path.join(d, "criu.kdat")) for d in _KDAT_DIRS)  # `criu check` saves it
    return CriuSupport(True, "", path, version, kernel_cache=cached)


class CriuError(Exception):
    """A dump or restore failed; the message ends with the end of CRIU's log. Start cold instead."""


# The processes dumped here hold no TCP connection (a dump refuses one: no --tcp-established), so
# there is nothing for a network lock to hold still. The method is written into the images and a
# restore follows it: with a lock (nftables here: these hosts have no iptables) every restore spent
# 10-20 ms asking nft to delete a table that was never made.
_NO_NETWORK_LOCK = ("--network-lock", "skip")


def _run(argv: list[str], log: str, timeout_s: float) -> None:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if out.returncode != 0:
        try:
            with open(log) as f:
                tail = "".join(f.readlines()[-5:])
        except OSError:
            tail = out.stderr
        raise CriuError(f"{os.path.basename(argv[0])} {argv[1]} failed ({out.returncode}):\n{tail}")


def snapshot_process(argv: Sequence[str], images_dir: str, *, ready_path: str, criu: str,
                     env: Optional[Mapping[str, str]] = None, timeout_s: float = 120.0) -> float:
    """Run `argv` until it creates `ready_path`, then dump it into `images_dir` (it ends there).

    The process runs as PID 1 of its own PID namespace and session, so its image can be restored
    many times, side by side, each into a new namespace. It must hold no TCP/UDP socket (CRIU 4.1
    cannot dump one on kernels >= 6.16) and no file from another mount namespace. Returns the dump
    time in seconds.
    """
    os.makedirs(images_dir, exist_ok=True)
    holder = subprocess.Popen(["unshare", "--pid", "--fork", "setsid", *argv], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=dict(env) if env is not None else None)
    try:
        deadline = time.monotonic() + timeout_s
        while not os.path.exists(ready_path):
            if holder.poll() is not None or time.monotonic() > deadline:
                raise CriuError(f"the process to snapshot did not get ready (exit {holder.poll()})")
            time.sleep(0.01)
        with open(f"/proc/{holder.pid}/task/{holder.pid}/children") as f:
            pid = int(f.read().split()[0])
        started = time.monotonic()
        _run([criu, "dump", "-t", str(pid), "-D", images_dir, *_NO_NETWORK_LOCK, "-o", "dump.log"],
             os.path.join(images_dir, "dump.log"), timeout_s)
        return time.monotonic() - started
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(10)


def restore_process(images_dir: str, *, criu: str, timeout_s: float = 60.0) -> None:
    """Restore a `snapshot_process` image, detached (its own PID namespace); returns once it runs."""
    _run([criu, "restore", "-D", images_dir, "--restore-detached", "-o", "restore.log"],
         os.path.join(images_dir, "restore.log"), timeout_s)


def dump_tree(pid: int, images_dir: str, *, criu: str, leave_running: bool = False, timeout_s: float = 300.0) -> float:
    """Dump the process tree rooted at `pid` (PID 1 of its own namespace, a session leader) into
    `images_dir`; with `leave_running` it goes on running afterwards. Returns the dump time (s)."""
    os.makedirs(images_dir, exist_ok=True)
    argv = [criu, "dump", "-t", str(pid), "-D", images_dir, *_NO_NETWORK_LOCK, "-o", "dump.log"]
    if leave_running:
        argv.append("--leave-running")
    started = time.monotonic()
    _run(argv, os.path.join(images_dir, "dump.log"), timeout_s)
    return time.monotonic() - started


def restore_tree(images_dir: str, *, criu: str, inherit: Mapping[int, int], timeout_s: float = 60.0) -> int:
    """Restore a `dump_tree` image as a child of this process (`--restore-sibling`) and return its pid.

    `inherit` maps each fd of ours to the inode of the pipe it replaces in the image (the dumped
    process's stdio): CRIU puts our pipe there instead (`--inherit-fd fd[N]:pipe:[INODE]`).
    """
    pidfile = os.path.join(images_dir, f"restored-{os.getpid()}-{time.monotonic_ns()}.pid")
    log = f"restore-{os.getpid()}-{time.monotonic_ns()}.log"
    argv = [criu, "restore", "-D", images_dir, "--restore-detached", "--restore-sibling", "--pidfile", pidfile,
            "-o", log]
    for fd, inode in inherit.items():
        argv += ["--inherit-fd", f"fd[{fd}]:pipe:[{inode}]"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, pass_fds=tuple(inherit))
    log_path = os.path.join(images_dir, log)
    try:
        if out.returncode != 0:
            try:
                with open(log_path) as f:
                    tail = "".join(line for line in f.readlines() if "Error" in line)[-2000:]
            except OSError:
                tail = out.stderr
            raise CriuError(f"criu restore failed ({out.returncode}):\n{tail}")
        with open(pidfile) as f:
            return int(f.read().strip())
    finally:
        for path in (pidfile, log_path):
            try:
                os.unlink(path)
            except OSError:
                pass


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return sorted(set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return []


def _nvidia_driver() -> str:
    try:
        with open("/proc/driver/nvidia/version") as f:
            match = re.search(r"Kernel Module\s+(?:for \S+\s+)?([0-9.]+)", f.read())
            return match.group(1) if match else "unknown"
    except OSError:
        return ""


def host_fingerprint(python: str = sys.executable) -> dict:
    """What a snapshot taken here depends on: CPU architecture and features, the Python it runs
    (version and the interpreter's path, which names its venv: libraries are mapped from there), the
    NVIDIA driver (none: "").
    The kernel is recorded for the logs only: CRIU images move between kernels."""
    return {"machine": platform.machine(), "cpu_flags": _cpu_flags(), "python": platform.python_version(),
            "executable": os.path.abspath(python), "nvidia_driver": _nvidia_driver(),
            "kernel": platform.release()}


def incompatibility(taken: Mapping, here: Mapping) -> Optional[str]:
    """Why a snapshot taken on a host with fingerprint `taken` must not be restored `here` (None: it may).

    The CPU here must have every feature the snapshot's CPU had (code may have picked instructions
    by them at import time); architecture, Python and NVIDIA driver must be the same.
    """
    if taken.get("machine") != here.get("machine"):
        return f"taken on {taken.get('machine')}, this host is {here.get('machine')}"
    if (taken.get("python"), taken.get("executable")) != (here.get("python"), here.get("executable")):
        return (f"taken with Python {taken.get('python')} ({taken.get('executable')}), this worker runs "
                f"{here.get('python')} ({here.get('executable')})")
    missing = sorted(set(taken.get("cpu_flags") or ()) - set(here.get("cpu_flags") or ()))
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        return f"this CPU lacks features the snapshot's CPU had: {shown}"
    if taken.get("nvidia_driver", "") != here.get("nvidia_driver", ""):
        return (f"taken with NVIDIA driver {taken.get('nvidia_driver') or 'none'}, this host has "
                f"{here.get('nvidia_driver') or 'none'}")
    return None
