"""Load generation against a running fabric: concurrent SDK clients, a large map, the serve process's RSS.

Used by tests/load/test_load.py (CI sizes) and bench/load.py (the issue's sizes). Every loop is
bounded by a count and a deadline.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
from dataclasses import dataclass, field

MIB = 1024 * 1024
# LOAD_SCALE=full runs the sizes; anything else (the default) a CI-sized run.
FULL = os.environ.get("LOAD_SCALE", "").lower() == "full"
CLIENTS = 200 if FULL else 8
CALLS_PER_CLIENT = 100 if FULL else 20
MAP_INPUTS = 10_000 if FULL else 1_000


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mib(pid: int) -> float:
    """Resident memory of one process (the control plane: `gpufabric serve` without its workers)."""
    import psutil

    return psutil.Process(pid).memory_info().rss / MIB


@dataclass
class Result:
    """Latencies (ms) and errors of a run of calls."""

    what: str
    calls: int = 0
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.calls / self.elapsed_s if self.elapsed_s else 0.0

    def line(self) -> str:
        lat = (f"p50 {percentile(self.latencies_ms, 0.5):7.2f} ms  p99 {percentile(self.latencies_ms, 0.99):7.2f} ms  "
               if self.latencies_ms else "")
        return f"{self.what:<34} {self.calls:>6} calls  {lat}{self.rate:8.0f} calls/s  errors {len(self.errors)}"


def _client_threads(url: str, token: str, ref: tuple, threads: int, calls: int, deadline: float, start_at: float) -> tuple:
    """One process's share of the clients: `threads` threads, each with its own SDK client."""
    import core_executor as fabric
    from core_executor._client import Client

    app_name, tag, function_id, app_id, python_version = ref
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one_client(n: int) -> None:
        client = Client(url, token)
        fn = fabric.Function.from_name(app_name, tag)
        fn._bind(client, function_id, app_id, container_python_version=python_version, printer=None)
        mine = []
        try:
            while time.time() < start_at:
                time.sleep(0.005)
            for i in range(calls):
                if time.time() > deadline:
                    raise TimeoutError(f"client {n}: {i} of {calls} calls before the deadline")
                t0 = time.perf_counter()
                got = fn.remote(i)
                mine.append((time.perf_counter() - t0) * 1000)
                if got != i:
                    raise AssertionError(f"client {n}: echo({i}) returned {got!r}")
        except Exception as exc:  # noqa: BLE001 - counted and reported
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()
            with lock:
                latencies.extend(mine)

    workers = [threading.Thread(target=one_client, args=(n,), daemon=True) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(max(0.0, deadline - time.time()) + 5)
    return latencies, errors


def run_clients(url: str, token: str, fn, clients: int, calls: int, *, processes: int | None = None,
                timeout_s: float = 600.0) -> Result:
    """`clients` concurrent SDK clients (threads spread over processes), each `calls` sequential `.remote()`s.

    `fn` is a hydrated Function (deployed or in a running app); each client binds its own copy.
    """
    fn.hydrate()
    ref = (fn._app_name, fn._tag, fn._function_id, fn._app_id, fn._python_version)
    processes = max(1, min(clients, processes or os.cpu_count() or 1))
    shares = [clients // processes + (1 if p < clients % processes else 0) for p in range(processes)]
    start_at = time.time() + 2.0 + 0.5 * processes  # let every process import and connect first
    deadline = start_at + timeout_s
    ctx = multiprocessing.get_context("spawn")  # never fork a process that holds gRPC threads
    result = Result(f"{clients} clients x {calls} .remote()")
    with ctx.Pool(processes) as pool:
        pending = [pool.apply_async(_client_threads, (url, token, ref, share, calls, deadline, start_at)) for share in shares]
        for job in pending:
            latencies, errors = job.get(timeout=max(1.0, deadline - time.time()) + 30)
            result.latencies_ms.extend(latencies)
            result.errors.extend(errors)
    result.calls = len(result.latencies_ms)
    result.elapsed_s = max(1e-9, time.time() - start_at)
    return result


def run_map(fn, n: int, expect=lambda x: x, **kwargs) -> Result:
    """One `.map()` of `n` inputs; checks that output i is `expect(i)`, each exactly once, in order."""
    result = Result(f".map() of {n}")
    t0 = time.perf_counter()
    try:
        got = list(fn.map(range(n), **kwargs))
        if got != [expect(x) for x in range(n)]:
            result.errors.append("outputs missing, repeated or out of order")
    except Exception as exc:  # noqa: BLE001 - counted and reported
        result.errors.append(f"{type(exc).__name__}: {exc}")
        got = []
    result.elapsed_s = time.perf_counter() - t0
    result.calls = len(got)
    return result


def rss_per_queued_input(serve_pid: int, gate, n: int) -> tuple[float, float]:
    """(MiB before, bytes per input): RSS of the control plane with `n` inputs waiting in a queue.

    `gate` runs one input at a time for a long while, so the rest of a `spawn_map` waits queued;
    the call is cancelled afterwards.
    """
    before = rss_mib(serve_pid)
    call = gate.spawn_map(range(n))
    time.sleep(0.5)
    after = rss_mib(serve_pid)
    call.cancel(terminate_containers=True)
    return before, (after - before) * MIB / n
