"""What runs in the fabric's containers for Dagster: a callable, a Pipes session, one step.

The fabric imports this file in its containers (top-level functions of a module file), so it
imports nothing heavy at the top.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any, Iterator

__all__ = ["run_callable", "run_pipes", "run_dagster_step"]

_TAIL_INTERVAL_S = 0.05


def run_callable(payload: bytes) -> Any:
    """Call a pickled (function, args, kwargs) and return its result."""
    import cloudpickle

    function, args, kwargs = cloudpickle.loads(payload)
    return function(*args, **kwargs)


def run_pipes(bootstrap_env: dict[str, str], payload: bytes) -> Iterator[dict[str, Any]]:
    """Run a function or command with the Dagster Pipes bootstrap environment; yield its messages.

    The remote code calls `open_dagster_pipes()` unchanged: its context comes from
    DAGSTER_PIPES_CONTEXT, and its messages go to a file here (DAGSTER_PIPES_MESSAGES is pointed
    at it), which this generator tails and yields item by item, so they reach Dagster while the
    code runs. Ends with {"kind": "result", ...}; a failure is raised after the messages it sent.
    """
    import tempfile

    import cloudpickle
    from dagster_pipes import DAGSTER_PIPES_MESSAGES_ENV_VAR, encode_param

    target = cloudpickle.loads(payload)
    directory = tempfile.mkdtemp(prefix="gpufabric-pipes-")
    messages_path = os.path.join(directory, "messages.jsonl")
    env = {**bootstrap_env, DAGSTER_PIPES_MESSAGES_ENV_VAR: encode_param({"path": messages_path})}
    outcome: dict[str, Any] = {}

    def run_function() -> None:
        try:
            outcome["value"] = target["function"](*target.get("args", ()), **target.get("kwargs", {}))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the generator, after the messages
            outcome["error"] = exc

    saved = os.environ.copy()
    process = None
    worker = None
    if not target.get("command"):
        _forget_pipes_context()  # a warm container: the previous run's session must not be reused
    if target.get("command"):
        process = subprocess.Popen(target["command"], env={**os.environ, **target.get("env", {}), **env},
                                   cwd=target.get("cwd"))
    else:
        os.environ.update({**target.get("env", {}), **env})
        worker = threading.Thread(target=run_function, name="gpufabric-pipes", daemon=True)
        worker.start()
    try:
        position = 0
        buffer = ""
        while True:
            finished = (process.poll() is not None) if process is not None else not worker.is_alive()
            if os.path.exists(messages_path):
                with open(messages_path, encoding="utf-8") as f:
                    f.seek(position)
                    chunk = f.read()
                    position = f.tell()
                buffer += chunk
                *lines, buffer = buffer.split("\n")
                for line in lines:
                    if line.strip():
                        yield {"kind": "message", "line": line}
            if finished:
                break
            time.sleep(_TAIL_INTERVAL_S)
        if buffer.strip():
            yield {"kind": "message", "line": buffer}
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
        if worker is not None:
            os.environ.clear()
            os.environ.update(saved)
            _forget_pipes_context()
    if process is not None:
        if process.returncode != 0:
            raise RuntimeError(f"the Pipes command {target['command']!r} exited with code {process.returncode}")
        yield {"kind": "result", "exit_code": 0}
        return
    if "error" in outcome:
        raise outcome["error"]
    yield {"kind": "result", "value": outcome.get("value")}


def _forget_pipes_context() -> None:
    """Drop dagster_pipes' process-wide context. `open_dagster_pipes()` returns the context already
    set in the process, even a closed one; containers are reused between Pipes runs (one app per
    client), so each run in this process must open a session of its own."""
    from dagster_pipes import PipesContext

    PipesContext._instance = None  # no public reset; open_dagster_pipes() checks this attribute


def run_dagster_step(compressed_step_args: str, env: dict[str, str]) -> dict[str, Any]:
    """Run one Dagster step (`dagster api execute_step`) with this container's Python.

    The step writes its events to the run's Dagster instance itself (ExecuteStepArgs carries the
    instance reference); the executor reads them from there. Returns the exit code.
    """
    started = time.monotonic()
    command = [sys.executable, "-m", "dagster", "api", "execute_step"]
    child_env = {**os.environ, **env, "DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS": compressed_step_args}
    completed = subprocess.run(command, env=child_env, check=False)
    return {"exit_code": completed.returncode, "seconds": time.monotonic() - started}
