"""Functions for the usage tests: GPU functions that sleep, on a fabric with simulated T4s."""
import os
import time

import core_executor as fabric

app = fabric.App("usage")


@app.function(gpu="T4")
def nap_on_t4(seconds: float) -> str:
    time.sleep(seconds)
    return os.environ["CUDA_VISIBLE_DEVICES"]


@app.function(gpu="T4:2")
def nap_on_two_t4s(seconds: float) -> str:
    time.sleep(seconds)
    return os.environ["CUDA_VISIBLE_DEVICES"]


@app.function(gpu="T4", retries=1)
def nap_then_fail(seconds: float) -> None:
    time.sleep(seconds)
    raise RuntimeError("failed after a nap")


@app.function(gpu="T4")
def count_on_t4(n: int):
    for i in range(n):
        time.sleep(0.05)
        yield i
