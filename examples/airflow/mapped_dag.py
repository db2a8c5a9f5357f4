"""Fan-out: dynamic task mapping over `@task.gpu_fabric`, and one task that maps on the fabric."""
from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_provider import GpuFunctionOperator


def score(shard: int, scale: int = 1) -> int:
    return shard * shard * scale


@dag(schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False, tags=["gpu-fabric"])
def gpu_fabric_mapped():
    @task
    def shards() -> list[int]:
        return [1, 2, 3, 4]

    @task.gpu_fabric(poll_interval=2)
    def square(shard: int) -> int:
        return shard * shard

    # One Airflow task per shard (Airflow's dynamic task mapping).
    squares = square.expand(shard=shards())

    # One Airflow task, one fabric call over every shard (`Function.spawn_map`).
    scores = GpuFunctionOperator(
        task_id="score_all",
        python_callable=score,
        map_inputs=[1, 2, 3, 4],
        function_kwargs={"scale": 10},
        poll_interval=2,
    )

    @task
    def total(squares: list[int], scores: list[int]) -> int:
        return sum(squares) + sum(scores)

    total(squares, scores.output)


gpu_fabric_mapped()
