"""Functions, assets and jobs the Dagster tests run on the fabric (top level, as users write them)."""
from __future__ import annotations

import os

from dagster import Definitions, In, Nothing, job, op

from dagster_resource import gpu_fabric_executor


def square(x: int) -> int:
    print(f"squaring {x} in the container")
    return x * x


def where() -> dict:
    return {"container": os.environ.get("GPUFABRIC_IS_CONTAINER", ""), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}


def nap(seconds: float) -> float:
    """Sleeps on the fabric: its billed seconds are about `seconds`."""
    import time

    time.sleep(seconds)
    return seconds


class RemoteBoom(Exception):
    pass


def explode(message: str) -> None:
    raise RemoteBoom(message)


def pipes_train(epochs: int = 1) -> str:
    """Remote side of a Pipes asset: `open_dagster_pipes()` unchanged."""
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        epochs = pipes.get_extra("epochs")
        pipes.log.info(f"training for {epochs} epochs on {os.environ.get('CUDA_VISIBLE_DEVICES')!r}")
        pipes.report_asset_materialization(
            metadata={"epochs": epochs, "loss": 0.125, "container": os.environ.get("GPUFABRIC_IS_CONTAINER", "")}
        )
        pipes.report_asset_check(check_name="loss_is_small", passed=True, metadata={"loss": 0.125})
    return "trained"


def pipes_nap(seconds: float) -> None:
    """A Pipes remote that works `seconds` and reports which container process ran it."""
    import time

    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        time.sleep(seconds)
        pipes.report_asset_materialization(metadata={"pid": os.getpid()})


def pipes_never_opens() -> str:
    print("doing work without opening a Pipes session")
    return "no pipes"


PIPES_SCRIPT = """
from dagster_pipes import open_dagster_pipes
with open_dagster_pipes() as pipes:
    pipes.log.info("hello from a command")
    pipes.report_asset_materialization(metadata={"rows": 42})
"""


@op
def produce() -> int:
    return 20


@op(tags={"gpu_fabric/gpu": "A100"})
def on_gpu(value: int) -> dict:
    return {"value": value + 1, **where(), "pid": os.getpid()}


@op(ins={"start": In(Nothing)})
def fails_remotely() -> None:
    raise RemoteBoom("step failed in its container")


@job(executor_def=gpu_fabric_executor)
def gpu_job():
    on_gpu(produce())


@job(executor_def=gpu_fabric_executor)
def failing_job():
    fails_remotely(start=produce())


defs = Definitions(jobs=[gpu_job, failing_job])
