"""A deployed app the provider's tests call by name (top level of a file, as users write them)."""
import time

import core_executor as fabric

app = fabric.App("airflow-provider-tests")


@app.function()
def double(x: int) -> int:
    print(f"doubling {x}")
    return 2 * x


@app.function()
def fail(message: str) -> None:
    raise ValueError(message)


@app.function()
def slow(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"
