"""Call overhead: warm `.remote()` round trip and `.map()` throughput, beside ProcessPoolExecutor.

Runs on the embedded fabric (or the one GPUFABRIC_URL points at). Prints p50/p99 of 2,000 warm
`.remote()` calls and calls/s of a 10,000-input `.map()` of a no-op, then the same measured with
`concurrent.futures.ProcessPoolExecutor` in this run, and checks the targets (p50 <= 2 ms,
map >= 2,000 calls/s). Exit code 1 when a target is missed. Then the throughput of a 2,000-input
`.map()` of a function sleeping 10 ms: one input per container at a time, `@concurrent(max_inputs=100)`
and `@batched(max_batch_size=100)` (each on one container).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import time

import core_executor as fabric

app = fabric.App("bench-call-overhead")


@app.function(cpu=0.5)
def noop(x):
    return x


# Small reservations: the noop containers may still hold the local worker's CPUs while idle.
@app.function(cpu=0.125, max_containers=1)
def sleepy(x):
    time.sleep(0.01)
    return x


@app.function(cpu=0.125, max_containers=1)
@fabric.concurrent(max_inputs=100)
def sleepy_concurrent(x):
    time.sleep(0.01)
    return x


@app.function(cpu=0.125, max_containers=1)
@fabric.batched(max_batch_size=100, wait_ms=5)
def sleepy_batched(xs):
    time.sleep(0.01)  # one model call for the whole batch
    return xs


def _noop(x):
    return x


def _map_rate(fn, n: int) -> float:
    fn.remote(0)  # warm
    t0 = time.perf_counter()
    got = sum(1 for _ in fn.map(range(n)))
    return got / (time.perf_counter() - t0)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _latencies(call, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--map-inputs", type=int, default=10_000)
    parser.add_argument("--sleep-inputs", type=int, default=2000)
    args = parser.parse_args()

    rows = []
    sleep_rows = []
    with app.run():
        for i in range(50):  # warm the container and the connection
            noop.remote(i)
        lat = _latencies(noop.remote, args.calls)
        t0 = time.perf_counter()
        got = sum(1 for _ in noop.map(range(args.map_inputs)))
        map_rate = got / (time.perf_counter() - t0)
        rows.append(("gpu-fabric", _percentile(lat, 0.5), _percentile(lat, 0.99), map_rate))
        # The plain function runs a tenth of the inputs: one at a time it is ~100 calls/s anyway.
        sleep_rows.append(("plain (10 ms each)", _map_rate(sleepy, max(1, args.sleep_inputs // 10))))
        sleep_rows.append(("@concurrent(100)", _map_rate(sleepy_concurrent, args.sleep_inputs)))
        sleep_rows.append(("@batched(100)", _map_rate(sleepy_batched, args.sleep_inputs)))

    with concurrent.futures.ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for i in range(50):
            pool.submit(_noop, i).result()
        lat = _latencies(lambda i: pool.submit(_noop, i).result(), args.calls)
        t0 = time.perf_counter()
        got = sum(1 for _ in pool.map(_noop, range(args.map_inputs)))
        map_rate = got / (time.perf_counter() - t0)
        rows.append(("ProcessPoolExecutor", _percentile(lat, 0.5), _percentile(lat, 0.99), map_rate))

    print(f"{'':22} {'remote p50 ms':>14} {'remote p99 ms':>14} {'map calls/s':>12}")
    for name, p50, p99, rate in rows:
        print(f"{name:22} {p50:14.3f} {p99:14.3f} {rate:12.0f}")
    print(f"\n{'map of a 10 ms function':22} {'calls/s':>14}   (one container each)")
    for name, rate in sleep_rows:
        print(f"{name:22} {rate:14.0f}")
    ours = rows[0]
    ok = ours[1] <= 2.0 and ours[3] >= 2000
    print(f"targets: remote p50 <= 2 ms: {'met' if ours[1] <= 2.0 else 'MISSED'}; "
          f"map >= 2,000 calls/s: {'met' if ours[3] >= 2000 else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
