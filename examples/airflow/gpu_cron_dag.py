"""A nightly DAG with one GPU step: GpuFunctionOperator runs `embed` on the fabric, deferred.

Set up a `gpu_fabric` connection (or GPUFABRIC_URL / GPUFABRIC_TOKEN) pointing at `gpufabric serve`.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_provider import GpuFunctionOperator


def embed(texts: list[str], dim: int = 4) -> list[list[float]]:
    """Stands in for a model forward pass; runs in a fabric container with a GPU."""
    import os

    print(f"embedding {len(texts)} texts on GPU {os.environ.get('CUDA_VISIBLE_DEVICES', '?')}")
    return [[float((len(t) * (i + 1)) % 7) for i in range(dim)] for t in texts]


with DAG(
    dag_id="gpu_fabric_cron",
    schedule="0 3 * * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["gpu-fabric"],
) as dag:

    @task
    def load_texts() -> list[str]:
        return ["a", "bb", "ccc"]

    texts = load_texts()
    embeddings = GpuFunctionOperator(
        task_id="embed",
        python_callable=embed,
        function_args=[texts],
        function_kwargs={"dim": 2},
        gpu="H100",
        timeout=600,
        deferrable=True,
        poll_interval=2,
    )

    @task
    def report(vectors: list[list[float]]) -> int:
        print(f"got {len(vectors)} vectors")
        return len(vectors)

    report(embeddings.output)
