"""Generators: items stream to the caller as the function yields them.

Run it with `gpufabric run examples/generators.py` (or `python examples/generators.py`).
"""
import time

import core_executor as fabric

app = fabric.App("generators")


@app.function()
def countdown(n: int):
    for i in range(n, 0, -1):
        yield i
        time.sleep(0.3)  # the caller sees each number before the next one is made


@app.function()
def risky(n: int):
    yield from range(n)
    raise RuntimeError(f"gave up after {n} items")


@app.local_entrypoint()
def main():
    start = time.monotonic()
    for i in countdown.remote_gen(5):
        print(f"{time.monotonic() - start:4.1f}s  {i}")
    try:
        for i in risky.remote_gen(3):
            print("got", i)
    except RuntimeError as exc:  # raised after the items made before it
        print("remote error:", exc)


if __name__ == "__main__":
    with app.run():
        main()
