"""@fabric.concurrent: one container runs many inputs at once (threads for sync code, tasks for async).

Run it with `gpufabric run examples/concurrency.py` (or `python examples/concurrency.py`).
"""
import asyncio
import time

import core_executor as fabric

app = fabric.App("concurrency")


@app.function(max_containers=1)
@fabric.concurrent(max_inputs=20)
def io_bound(x: int) -> int:
    time.sleep(0.5)  # waiting on a network or a GPU: other inputs run meanwhile
    return x


@app.function(max_containers=1)
@fabric.concurrent(max_inputs=50, target_inputs=25)
async def async_io_bound(x: int) -> int:
    await asyncio.sleep(0.5)
    return x


@app.local_entrypoint()
def main():
    for fn in (io_bound, async_io_bound):
        start = time.monotonic()
        total = sum(fn.map(range(40)))
        print(f"{fn.tag}: 40 half-second inputs on one container in {time.monotonic() - start:.1f}s (sum {total})")


if __name__ == "__main__":
    with app.run():
        main()
