"""Dagster definitions whose GPU work runs on gpu-fabric: a resource, a Pipes asset, an executor.

    pip install -e '.[dagster]'
    dagster definitions validate -f examples/dagster/definitions.py
    dagster dev -f examples/dagster/definitions.py        # then materialize from the UI

With GPUFABRIC_URL/GPUFABRIC_TOKEN set, calls go to that fabric; unset, an embedded fabric starts
on this machine. EXAMPLE_GPU=A100 asks for a GPU (the fabric needs a worker with one;
`gpufabric serve --simulate-gpus A100-80GB:1` fakes one for a try-out).
"""
import os

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    Definitions,
    EnvVar,
    MaterializeResult,
    ScheduleDefinition,
    asset,
    define_asset_job,
    job,
    op,
)

from dagster_resource import GpuFabricResource, PipesGpuFabricClient, gpu_fabric_executor

GPU = os.environ.get("EXAMPLE_GPU") or None


# ---- code that runs in the fabric's containers (top level, so it can be shipped) ----


def embed(text: str) -> list[float]:
    """Stands in for a model call on a GPU."""
    return [float(len(text)), float(sum(map(ord, text)) % 97)]


def train(epochs: int = 1) -> None:
    """The remote side of a Pipes asset: plain Python with `open_dagster_pipes()`."""
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        epochs = pipes.get_extra("epochs")
        loss = 1.0 / (1 + epochs)
        pipes.log.info(f"trained {epochs} epochs, loss {loss:.3f}")
        pipes.report_asset_materialization(metadata={"epochs": epochs, "loss": loss})
        pipes.report_asset_check(check_name="loss_below_one", passed=loss < 1.0)


# ---- assets ----


@asset
def documents() -> list[str]:
    return ["gpu", "fabric", "dagster", "pipes"]


@asset
def embeddings(documents: list[str], gpu_fabric: GpuFabricResource) -> list[list[float]]:
    """One fabric call per document, in parallel; calls and GPU seconds land in the metadata."""
    return gpu_fabric.map(embed, documents)


@asset(check_specs=[AssetCheckSpec("loss_below_one", asset="model")], deps=[embeddings])
def model(context: AssetExecutionContext, pipes: PipesGpuFabricClient) -> MaterializeResult:
    return pipes.run(context=context, function=train, extras={"epochs": 3}, gpu=GPU).get_materialize_result()


# ---- a job whose every step is a fabric call ----


@op
def prepare() -> int:
    return 41


@op(tags={"gpu_fabric/gpu": GPU or "", "gpu_fabric/timeout": "600"})
def finetune(value: int) -> int:
    return value + 1


@job(executor_def=gpu_fabric_executor)
def finetune_job():
    """Needs a persistent instance (DAGSTER_HOME) and shared IO manager storage: see the README."""
    finetune(prepare())


embeddings_job = define_asset_job("embeddings_job", selection=["documents", "embeddings"])
nightly_embeddings = ScheduleDefinition(name="nightly_embeddings", job=embeddings_job, cron_schedule="0 3 * * *")

_fabric_url = os.environ.get("GPUFABRIC_URL")
defs = Definitions(
    assets=[documents, embeddings, model],
    jobs=[embeddings_job, finetune_job],
    schedules=[nightly_embeddings],
    resources={
        "gpu_fabric": GpuFabricResource(
            url=_fabric_url, token=EnvVar("GPUFABRIC_TOKEN") if _fabric_url else None, gpu=GPU, timeout=600
        ),
        "pipes": PipesGpuFabricClient(url=_fabric_url, token=os.environ.get("GPUFABRIC_TOKEN")),
    },
)
