"""Container start on a lazily mounted image vs copying the image first (the Slacker point), plus FUSE throughput.

    python bench/lazy_fs.py [--size-mib 1024] [--touch 0.05] [--repeat 3] [--dir DIR]

Builds a synthetic image of random files (--size-mib in all), then times, from "container
start requested" to the first line the user code prints after reading --touch of the image:
  eager: fetch (and verify) every chunk into the cache and write the whole tree, then start;
  lazy:  mount with FUSE, then start; chunks are fetched (and verified) as they are read.
Cold = empty chunk cache; warm = cache already holding the chunks. Both read the store from
the same place (a local directory, in the OS page cache after packing). The worker's mount
launcher is started first, as a worker does when it starts. Eager and lazy runs alternate;
medians of --repeat runs. Target: lazy >= 10x faster when cold.

Measured on a shared 2-core machine (1 GiB, 7 of 128 files read): eager 2270 ms vs lazy 164 ms
cold (13.9x; 13-33x run by run), warm 497 vs 123 ms, lazy with a recorded working set 180 ms.
Under load from other jobs the ratio moved between 8x and 20x. Before the cold path was reworked
(fetch ahead, open cache files, 1 MiB FUSE reads, the mount launcher) lazy cold took 365-700 ms
against a slower eager (3.6-7.7 s): 6.6-11x.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

import fs_lazy  # noqa: E402

FILE_MIB = 8


def make_image(root: str, size_mib: int) -> list[str]:
    names = []
    for i in range(max(size_mib // FILE_MIB, 1)):
        name = f"lib/pkg{i // 16}/mod{i}.so"
        os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
        with open(os.path.join(root, name), "wb") as f:
            f.write(os.urandom(FILE_MIB << 20))
        names.append(name)
    return names


def start_container(image_root: str, touched: list[str]) -> float:
    """Starts a sandboxed process that reads `touched` from the image and prints; returns when it printed."""
    code = ("import sys\nfor p in sys.argv[1:]:\n    open('/run/image/' + p, 'rb').read()\nprint('first line', flush=True)\n")
    argv = ["bwrap", "--ro-bind", "/", "/", "--tmpfs", "/run", "--bind", image_root, "/run/image", "--dev", "/dev", "--proc", "/proc",
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--", sys.executable, "-c", code, *touched]
    if shutil.which("bwrap") is None:
        argv = argv[argv.index("--") + 1:]
        argv[2] = argv[2].replace("/run/image/", image_root + "/")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    done = time.perf_counter()
    proc.wait()
    assert line.strip() == b"first line", line
    return done


def one_start(store, digest: str, work: str, cache: str, touched: list[str], lazy: bool,
              working_set: str | None = None) -> tuple[float, int]:
    mountpoint = os.path.join(work, "root")
    t0 = time.perf_counter()
    mounted = fs_lazy.mount_image(store, digest, mountpoint, cache_dir=cache, lazy=lazy, working_set=working_set)
    t1 = start_container(mounted.path, touched)
    fetched = len([n for n in os.listdir(cache) if len(n) == 64])
    mounted.unmount()
    shutil.rmtree(mountpoint, ignore_errors=True)
    return t1 - t0, fetched


def throughput(store, digest: str, work: str, name: str) -> tuple[float, float]:
    cache = os.path.join(work, "tp-cache")
    mounted = fs_lazy.mount_image(store, digest, os.path.join(work, "tp"), cache_dir=cache)
    path = os.path.join(mounted.path, name)
    rates = []
    for _ in range(2):
        t0 = time.perf_counter()
        with open(path, "rb") as f:
            size = sum(len(b) for b in iter(lambda: f.read(1 << 20), b""))
        rates.append(size / (time.perf_counter() - t0) / 1e9)
    mounted.unmount()
    shutil.rmtree(cache, ignore_errors=True)
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--touch", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    ok, why = fs_lazy.fuse_available()
    if not ok:
        sys.exit(f"FUSE unavailable: {why}")
    work = tempfile.mkdtemp(prefix="lazy-fs-bench-", dir=args.dir)
    try:
        print(f"building a {args.size_mib} MiB image ...", flush=True)
        names = make_image(os.path.join(work, "src"), args.size_mib)
        store = fs_lazy.LocalStore(os.path.join(work, "store"))
        t0 = time.perf_counter()
        manifest = fs_lazy.pack_tree(os.path.join(work, "src"), store)
        print(f"packed {manifest.total_size() >> 20} MiB in {time.perf_counter() - t0:.1f}s "
              f"({len(manifest.unique_chunks())} chunks)")
        shutil.rmtree(os.path.join(work, "src"))
        touched = names[:: max(int(1 / args.touch), 1)]
        print(f"the function reads {len(touched)} of {len(names)} files "
              f"({100 * len(touched) / len(names):.0f}% of the image)\n")
        fs_lazy.start_mount_launcher(wait=True)
        # Eager and lazy runs alternate, so that both see the same load on a shared machine.
        runs: dict[str, dict[str, list[float]]] = {m: {"cold": [], "warm": []} for m in ("eager", "lazy")}
        fetched: dict[str, int] = {}
        for rep in range(args.repeat):
            for mode, lazy in (("eager", False), ("lazy", True)):
                cache = os.path.join(work, f"cache-{mode}-{rep}")
                cold, fetched[mode] = one_start(store, manifest.digest, work, cache, touched, lazy)
                warm, _ = one_start(store, manifest.digest, work, cache, touched, lazy)
                runs[mode]["cold"].append(cold)
                runs[mode]["warm"].append(warm)
                shutil.rmtree(cache, ignore_errors=True)
        rows = []
        for mode in ("eager", "lazy"):
            colds, warms = runs[mode]["cold"], runs[mode]["warm"]
            rows.append((mode, statistics.median(colds), statistics.median(warms), fetched[mode]))
            print(f"  {mode}: cold {', '.join(f'{c * 1000:.0f}' for c in colds)} ms;"
                  f" warm {', '.join(f'{w * 1000:.0f}' for w in warms)} ms", flush=True)
        ws = os.path.join(work, "working-set.json")
        one_start(store, manifest.digest, work, os.path.join(work, "cache-rec"), touched, True, ws)
        prefetched = statistics.median(
            one_start(store, manifest.digest, work, os.path.join(work, f"cache-pf-{rep}"), touched, True, ws)[0]
            for rep in range(args.repeat))
        print()
        print(f"{'start to first line':<22}{'cold cache':>12}{'warm cache':>12}{'chunks fetched cold':>22}")
        for mode, cold, warm, count in rows:
            print(f"{mode:<22}{cold * 1000:>10.0f}ms{warm * 1000:>10.0f}ms{count:>22}")
        print(f"{'lazy + working set':<22}{prefetched * 1000:>10.0f}ms{'':>12}{'(prefetched)':>22}")
        pairs = [e / z for e, z in zip(runs["eager"]["cold"], runs["lazy"]["cold"])]
        ratio = rows[0][1] / rows[1][1]
        print(f"\nlazy vs eager, cold: {ratio:.1f}x faster start (medians; run by run:"
              f" {', '.join(f'{p:.1f}x' for p in pairs)}); target >= 10x: {'met' if ratio >= 10 else 'MISSED'}")
        first, second = throughput(store, manifest.digest, work, names[-1])
        print(f"FUSE read of one {FILE_MIB} MiB file: {first:.2f} GB/s cold, {second:.2f} GB/s from the kernel cache")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
