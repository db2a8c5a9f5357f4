"""Functions the integration tests call (top level of a file, as users write them)."""
import os
import time

import core_executor as fabric

app = fabric.App("integration")


@app.function(retries=1)
def square(x: int) -> int:
    print(f"squaring {x}")
    return x * x


@app.function()
def fail(message: str) -> None:
    raise ValueError(message)


@app.function(retries=2)
def crash_on(x: int) -> int:
    if x == 3:
        os._exit(17)  # the container process dies mid-call
    return x


@app.function()
def echo(data):
    return data


@app.function(timeout=1)
def sleepy(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


@app.function()
def where_am_i(path: str, seconds: float) -> int:
    """Writes the worker agent's pid (our parent) to `path`, then works for a while."""
    with open(path, "w") as f:
        f.write(str(os.getppid()))
    time.sleep(seconds)
    return os.getppid()


@app.function(gpu=["B200", "H100"])
def gpu_env() -> str:
    return os.environ["CUDA_VISIBLE_DEVICES"]


@app.function()
def calls_square(x: int) -> int:
    return square.remote(x) + 1


@app.function()
def count_to(n: int):
    for i in range(n):
        print(f"item {i}")
        yield i


@app.function(min_containers=1, scaledown_window=1)
def warm() -> int:
    return os.getpid()


@app.function(scaledown_window=1)
def short_lived() -> int:
    return os.getpid()


@app.function(image=fabric.Image.debian_slim(python_version="3.10"))
def old_python(x: int) -> int:
    return x


@app.function()
def append_line(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


@app.function(gpu="H100")
def gpu_first() -> str:
    return os.environ["CUDA_VISIBLE_DEVICES"]


@app.function(gpu="H100")
def gpu_second() -> str:
    return os.environ["CUDA_VISIBLE_DEVICES"]
