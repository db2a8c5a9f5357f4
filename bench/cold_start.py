"""Cold start: time from a call to the first line of user code, cold beside fork-server and CRIU.

The function is a class whose `enter` imports numpy and scipy (linalg, sparse, stats). Each sample
needs a new container: the containers scale down after 1 s and the next call waits until the
last one's process is gone. Kinds: cold (a fresh `python -m core_executor._runtime`), fork-server
(`@fabric.enter(snap=True)`: forked from a per-function zygote that ran the imports; its first
container pays the warm-up and is reported apart), and CRIU restore where the host supports it
(otherwise "unavailable: reason"): each sample waits until the worker has stopped the function's
idle zygote (GPUFABRIC_ZYGOTE_IDLE_S is set to 3 s for the embedded fabric), so its container
waits for the zygote to be restored from the snapshot the first warm-up stored, then is forked.
The same three are also measured at the process level, without the fabric. GPUFABRIC_CRIU names
a criu binary that is not on PATH. Target: fork-server and CRIU restore >= 10x faster than cold;
exit code 1 when missed. Runs on the embedded fabric (or the one GPUFABRIC_URL points at).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import core_executor as fabric

app = fabric.App("bench-cold-start")


def _heavy_imports() -> None:
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401
    import scipy.sparse  # noqa: F401
    import scipy.stats  # noqa: F401


@app.cls(scaledown_window=1, cpu=0.25)
class Cold:
    @fabric.enter()
    def load(self):
        _heavy_imports()

    @fabric.method()
    def first_line(self):
        return time.time(), int(os.readlink("/proc/self")), "cold"


@app.cls(scaledown_window=1, cpu=0.25)
class ForkServer:
    @fabric.enter(snap=True)  # snap=True: done once in the zygote, before the fork
    def load(self):
        _heavy_imports()

    @fabric.method()
    def first_line(self):
        return time.time(), int(os.readlink("/proc/self")), os.environ.get("GPUFABRIC_START_KIND", "cold")


@app.cls(scaledown_window=1, cpu=0.25)
class Snapshot:
    @fabric.enter(snap=True)  # the same as ForkServer, but its zygote is stopped after every sample
    def load(self):
        _heavy_imports()

    @fabric.method()
    def first_line(self):
        return time.time(), int(os.readlink("/proc/self")), os.environ.get("GPUFABRIC_START_KIND", "cold")


ZYGOTE_IDLE_S = 3.0


def _gone(pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            time.sleep(0.3)  # and let the control plane see the exit
            return
        except PermissionError:
            pass
        time.sleep(0.05)


def _samples(cls, n: int, *, kinds: list | None = None, pause: float = 0.0) -> list[float]:
    """Seconds from `.remote()` to the method's first line, one new container each (its host pid
    is waited for: a container forked from a zygote lives in the zygote's PID namespace)."""
    out = []
    for _ in range(n):
        t0 = time.time()
        first, pid, kind = cls().first_line.remote()
        out.append(first - t0)
        if kinds is not None:
            kinds.append(kind)
        _gone(pid)
        time.sleep(pause)
    return out


# Process level (no fabric): the three ways to get a process that imported the heavy modules.
_WARM_SCRIPT = """
import os, sys, time
import numpy, scipy.linalg, scipy.sparse, scipy.stats
run = sys.argv[1]
if len(sys.argv) > 2:  # the CRIU image: dumped while waiting for "go", restored with "go" present
    open(os.path.join(run, "ready"), "w").close()
    while not os.path.exists(os.path.join(run, "go")):
        time.sleep(0.001)
with open(os.path.join(run, "first-line"), "w") as f:
    f.write(repr(time.time()))
"""


def _first_line(run: str, t0: float, timeout: float = 120.0) -> float:
    path = os.path.join(run, "first-line")
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.01)  # written in one go; let it land
    with open(path) as f:
        value = float(f.read()) - t0
    os.unlink(path)
    return value


def _process_level(n: int, work: str) -> dict[str, object]:
    import subprocess

    from checkpointing import CriuError, Zygote, detect_criu, restore_process, snapshot_process

    script = os.path.join(work, "warm_child.py")
    with open(script, "w") as f:
        f.write(_WARM_SCRIPT)
    run = os.path.join(work, "run")
    os.makedirs(run)
    rows: dict[str, object] = {"cold": [], "fork-server": []}
    for _ in range(n):
        t0 = time.time()
        subprocess.run([sys.executable, script, run], check=True)
        rows["cold"].append(_first_line(run, t0))
    env = dict(os.environ, PYTHONPATH=work)
    with Zygote(["numpy", "scipy.linalg", "scipy.sparse", "scipy.stats"], env=env) as zygote:
        for _ in range(n):
            t0 = time.time()
            zygote.spawn("warm_child", [run], env=env).wait(60)
            rows["fork-server"].append(_first_line(run, t0))
    support = detect_criu()
    if not support.usable:
        rows["CRIU restore"] = f"unavailable: {support.reason}"
        return rows
    images = os.path.join(work, "criu-image")
    try:
        snapshot_process([sys.executable, script, run, "wait"], images, ready_path=os.path.join(run, "ready"),
                         criu=support.path)
        open(os.path.join(run, "go"), "w").close()
        rows["CRIU restore"] = []
        rows["CRIU image"] = _image_floor(images)
        for _ in range(n):
            t0 = time.time()
            restore_process(images, criu=support.path)
            rows["CRIU restore"].append(_first_line(run, t0))
    except (CriuError, OSError) as exc:
        rows["CRIU restore"] = f"unavailable: {exc}"
    return rows


def _fill_fresh_memory_s(size: int) -> float:
    """Seconds to write `size` bytes into newly mapped memory: what a restore of that many pages
    costs at least (each page is faulted in, zeroed by the kernel, then filled)."""
    import ctypes
    import mmap

    best = float("inf")
    for _ in range(3):
        with mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS) as buf:
            anchor = ctypes.c_char.from_buffer(buf)
            started = time.perf_counter()
            ctypes.memset(ctypes.addressof(anchor), 1, size)
            best = min(best, time.perf_counter() - started)
            del anchor  # the mapping cannot close while it is exported
    return best


def _image_floor(images: str) -> str:
    """The CRIU image's pages and the floor they set on this host's restores."""
    size = sum(os.path.getsize(os.path.join(images, name)) for name in os.listdir(images)
               if name.startswith("pages-") and name.endswith(".img"))
    floor = _fill_fresh_memory_s(size)
    return (f"{size / 2**20:.0f} MiB of pages; filling as much fresh memory takes {floor * 1000:.1f} ms here "
            f"({floor * 1e6 / max(size // 4096, 1):.2f} us a 4 KiB page), the floor of every restore")


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.1f} ms (min {min(values) * 1000:.1f}, n={len(values)})"


def main() -> int:
    import shutil
    import tempfile

    from checkpointing import detect_criu

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args()
    support = detect_criu()
    if support.usable and not shutil.which("unshare"):
        support = type(support)(False, "unshare (util-linux) is not installed")
    os.environ.setdefault("GPUFABRIC_ZYGOTE_IDLE_S", str(ZYGOTE_IDLE_S))  # read by the embedded fabric's worker
    restored: list[float] = []
    kinds: list[str] = []
    with app.run(show_logs=False):
        cold = _samples(Cold, args.samples)
        forked = _samples(ForkServer, args.samples + 1)
        if support.usable:
            # The first sample warms up and stores the snapshot; each later one restores it.
            restored = _samples(Snapshot, args.samples + 1, kinds=kinds, pause=ZYGOTE_IDLE_S + 1.5)[1:]
    warmup, forked = forked[0], forked[1:]
    speedup = statistics.median(cold) / statistics.median(forked)
    print("call -> first line of user code, through the fabric (enter imports numpy, scipy.linalg/sparse/stats)")
    print(f"  cold         {_ms(cold)}")
    print(f"  fork-server  {_ms(forked)}   {speedup:.1f}x faster than cold"
          f" (the zygote's first container, which waited for the warm-up: {warmup * 1000:.0f} ms)")
    ok = speedup >= 10
    if restored:
        criu_speedup = statistics.median(cold) / statistics.median(restored)
        print(f"  CRIU restore {_ms(restored)}   {criu_speedup:.1f}x faster than cold"
              f" (zygote restored from its snapshot, then forked; start kinds {sorted(set(kinds[1:]))})")
        if set(kinds[1:]) != {"snapshot"}:
            print("  CRIU restore: some samples were not restored from the snapshot (see the worker's log)")
            ok = False
        ok = ok and criu_speedup >= 10
    else:
        print(f"  CRIU restore unavailable: {support.reason}")
    with tempfile.TemporaryDirectory(prefix="gpufabric-bench-") as work:
        rows = _process_level(args.samples, work)
    print("process start -> first line after the same imports (no fabric)")
    for name, values in rows.items():
        print(f"  {name:<12} {_ms(values) if isinstance(values, list) else values}")
    print(f"target fork-server{' and CRIU restore' if restored else ''} >= 10x cold: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
