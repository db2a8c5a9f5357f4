"""Functions the load and fault tests call (top level of a file, as users write them)."""
import time

import core_executor as fabric

app = fabric.App("load")


@app.function(cpu=0.25)
@fabric.concurrent(max_inputs=64)
def echo(x):
    return x


@app.function(cpu=0.25)
@fabric.concurrent(max_inputs=32)
def slow_square(x: int, seconds: float = 0.002) -> int:
    """Slow enough that a map spans a control-plane restart."""
    time.sleep(seconds)
    return x * x


@app.function(cpu=0.25, max_containers=1)
def gate(x: int, seconds: float = 60.0) -> int:
    """One input at a time on one container: the rest of a map waits in the queue."""
    time.sleep(seconds)
    return x
