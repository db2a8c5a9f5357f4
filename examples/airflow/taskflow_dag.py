"""TaskFlow: `@task.gpu_fabric` runs a decorated function on the fabric; XComs flow as usual."""
from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False, tags=["gpu-fabric"])
def gpu_fabric_taskflow():
    @task
    def hyperparameters() -> dict:
        return {"lr": 0.1, "steps": 5}

    @task.gpu_fabric(gpu="H100", timeout=600, poll_interval=2)
    def train(params: dict) -> dict:
        loss = 1.0
        for step in range(params["steps"]):
            loss *= 1 - params["lr"]
            print(f"step {step} loss {loss:.4f}")
        return {"loss": round(loss, 4), "steps": params["steps"]}

    @task.gpu_fabric(deferrable=False)
    def evaluate(model: dict) -> str:
        return "good" if model["loss"] < 0.6 else "bad"

    evaluate(train(hyperparameters()))


gpu_fabric_taskflow()
