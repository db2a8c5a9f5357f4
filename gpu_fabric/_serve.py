"""`gpufabric serve`: a control plane plus local worker agents, embedded or long-lived."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from .control_plane import ControlPlane

log = logging.getLogger("gpu_fabric.serve")

def start_local_worker(url: str, token: str, extra_args: list[str]) -> subprocess.Popen:
    """Start one worker agent process on this machine, joined to the control plane at `url`.

    No preexec_fn (Python between fork and exec is unsafe next to gRPC threads): the worker asks
    for PR_SET_PDEATHSIG itself when GPUFABRIC_PARENT_PID names its parent.
    """
    cmd = [sys.executable, "-m", "gpu_fabric", "worker", "--url", url, "--token", token, *extra_args]
    env = dict(os.environ, GPUFABRIC_PARENT_PID=str(os.getpid()))
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=env)


def _write_ready_file(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


async def serve(
    *,
    data_dir: str,
    host: str,
    port: int,
    token: str | None,
    workers: int,
    worker_args: list[str],
    ready_file: str | None,
    embedded: bool,
    engine_options: dict,
) -> None:
    plane = ControlPlane(data_dir, token=token, host=host, port=port, **engine_options)
    await plane.start()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    if embedded:
        # The SDK holds our stdin; when it closes, the caller is gone and so are we.
        def watch_stdin() -> None:
            try:
                while sys.stdin.buffer.read(1):
                    pass
            except (OSError, ValueError):
                pass
            loop.call_soon_threadsafe(stopping.set)

        threading.Thread(target=watch_stdin, daemon=True, name="stdin-watch").start()

    procs = [start_local_worker(plane.url, plane.token, worker_args) for _ in range(workers)]
    deadline = time.monotonic() + 30
    while len(plane.engine.workers) < workers and time.monotonic() < deadline and not stopping.is_set():
        if any(p.poll() is not None for p in procs):
            log.error("a local worker exited while starting (code %s)", [p.poll() for p in procs])
            break
        await asyncio.sleep(0.02)

    print(f"gpu-fabric serving at {plane.url}", flush=True)
    print(f"token: {plane.token}", flush=True)
    print(f"export GPUFABRIC_URL={plane.url} GPUFABRIC_TOKEN={plane.token}", flush=True)
    http_url = plane.web.url if plane.web is not None else ""  # gpu_fabric.web gateway
    if http_url:
        print(f"dashboard: {http_url}/ (sign in with the token)", flush=True)
    if ready_file:
        _write_ready_file(ready_file, {"url": plane.url, "token": plane.token, "pid": os.getpid(), "http_url": http_url})
    try:
        await stopping.wait()
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                await asyncio.to_thread(p.wait, 10)
            except subprocess.TimeoutExpired:
                p.kill()
        await plane.stop()
