"""A Prefect 3 flow whose heavy tasks run on gpu-fabric: local tasks, GPU tasks, a .map fan-out.

    pip install -e '.[prefect]'
    python examples/prefect_flow.py            # one run (embedded fabric, temporary Prefect server)
    python examples/prefect_flow.py --serve    # a deployment on a cron schedule (Ctrl-C stops it)

With GPUFABRIC_URL/GPUFABRIC_TOKEN set the tasks go to that fabric; with PREFECT_API_URL set the
runs are recorded by that Prefect server. EXAMPLE_GPU=A100 asks for a GPU (the fabric must have a
worker with one; `gpufabric serve --simulate-gpus A100:1` fakes one for a try-out).
"""
from __future__ import annotations

import os
import sys

from prefect import flow, get_run_logger, task

from prefect_integration import GpuFabricTaskRunner, remote_options

GPU = os.environ.get("EXAMPLE_GPU") or None


@task
def load_batches(n: int) -> list[list[float]]:
    """Runs on the fabric too (every submitted task does), on the runner's default resources."""
    return [[float(i + j) for j in range(4)] for i in range(n)]


@task(retries=2, retry_delay_seconds=1)
def embed(batch: list[float]) -> float:
    """The GPU work: one fabric call per batch, retried by Prefect inside its container."""
    import os

    get_run_logger().info("embedding %d values on CUDA_VISIBLE_DEVICES=%r", len(batch), os.environ.get("CUDA_VISIBLE_DEVICES"))
    return sum(x * x for x in batch) ** 0.5


@task
def summarize(norms: list[float]) -> dict:
    return {"batches": len(norms), "max_norm": max(norms)}


@flow(task_runner=GpuFabricTaskRunner(timeout=600, max_containers=4), log_prints=True)
def embeddings_pipeline(n_batches: int = 8) -> dict:
    batches = load_batches.submit(n_batches).result()
    with remote_options(gpu=GPU):  # only these calls ask for a GPU
        norms = embed.map(batches)
    report = summarize(norms)  # called directly: runs here, in the flow's process
    print(f"report: {report}")
    return report


if __name__ == "__main__":
    if "--serve" in sys.argv:
        # A deployment on a cron schedule, served from this process (`prefect deploy` works too).
        embeddings_pipeline.serve(name="hourly-embeddings", cron="0 * * * *", parameters={"n_batches": 8})
    else:
        print(embeddings_pipeline())
