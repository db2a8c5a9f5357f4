"""Tasks the Prefect tests run on the fabric (top level of a module, as users write them)."""
from __future__ import annotations

import asyncio
import os
import time

from prefect import get_run_logger, task


class TaskFailure(Exception):
    """Raised by `fail`: its class must come back as itself from the container."""


@task
def where() -> dict:
    return {
        "pid": os.getpid(),
        "container": os.environ.get("GPUFABRIC_IS_CONTAINER", ""),
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


@task
def add(x: int, y: int = 0) -> int:
    return x + y


@task
async def async_mul(x: int, y: int) -> int:
    await asyncio.sleep(0.01)
    return x * y


@task
def fail(message: str) -> None:
    raise TaskFailure(message)


@task
def interrupt() -> None:
    raise KeyboardInterrupt()


@task
def exit_task() -> None:
    raise SystemExit(3)


@task
def count_calls(path: str, value: int = 0) -> int:
    """Appends a line to `path` per run (the tests read how often the function ran)."""
    with open(path, "a") as f:
        f.write("x\n")
    return value


@task(retries=2, retry_delay_seconds=0)
def flaky(path: str, failures: int) -> int:
    with open(path, "a") as f:
        f.write("x\n")
    with open(path) as f:
        attempts = len(f.readlines())
    if attempts <= failures:
        raise TaskFailure(f"attempt {attempts} fails")
    return attempts


@task(timeout_seconds=1)
def too_slow() -> str:
    time.sleep(30)
    return "late"


@task
def sleeper(seconds: float, path: str = "") -> str:
    if path:
        with open(path, "a") as f:
            f.write("started\n")
    time.sleep(seconds)
    if path:
        with open(path, "a") as f:
            f.write("finished\n")
    return "slept"


@task
def logs(message: str) -> str:
    get_run_logger().info(message)
    print(f"printed {message}")
    return message


@task
def nested(x: int) -> list:
    """Submits tasks from inside a task: they run in the same container."""
    futures = [add.submit(x, i) for i in range(3)]
    return [f.result() for f in futures] + [where.submit().result()["container"]]
