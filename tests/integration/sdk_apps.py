"""Classes, generators, async, concurrent and batched functions the SDK integration tests call."""
import asyncio
import os
import threading
import time

import core_executor as fabric

app = fabric.App("sdk-integration")


@app.cls(scaledown_window=2)
class Counter:
    """Lifecycle: enter once per container, methods share the instance, exit at shutdown."""

    start: int = fabric.parameter(default=0)
    log_path: str = fabric.parameter(default="")

    @fabric.enter()
    def setup(self):
        self.entered = getattr(self, "entered", 0) + 1
        self.value = self.start
        self._note("enter")

    @fabric.method()
    def add(self, n: int) -> int:
        self.value += n
        return self.value

    @fabric.method()
    def info(self) -> dict:
        return {"entered": self.entered, "pid": os.getpid(), "start": self.start}

    @fabric.method()
    def countdown(self, n: int):
        for i in range(n, 0, -1):
            yield i

    @fabric.method()
    async def async_add(self, n: int) -> int:
        await asyncio.sleep(0.01)
        return self.start + n

    @fabric.exit()
    def teardown(self):
        self._note("exit")

    def _note(self, what: str) -> None:
        if self.log_path:
            with open(self.log_path, "a") as f:
                f.write(f"{what} {os.getpid()}\n")


@app.cls()
class Chatty:
    """Prints without pause until stopped; its @exit prints too (both want the same stream's lock)."""

    log_path: str = fabric.parameter()

    @fabric.method()
    def chatter(self, seconds: float) -> int:
        with open(self.log_path, "a") as f:
            f.write("started\n")
        lines, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            print("chatter " * 20)
            lines += 1
        return lines

    @fabric.exit()
    def teardown(self):
        print("exit: stopping")
        with open(self.log_path, "a") as f:
            f.write("exit\n")


@app.cls()
class BrokenEnter:
    @fabric.enter()
    def setup(self):
        raise RuntimeError("enter exploded")

    @fabric.method()
    def run(self) -> int:
        return 1


@app.cls(startup_timeout=1)
class SlowEnter:
    @fabric.enter()
    def setup(self):
        time.sleep(30)

    @fabric.method()
    def run(self) -> int:
        return 1


@app.function()
def slow_items(n: int, delay: float):
    for i in range(n):
        yield i
        time.sleep(delay)


@app.function()
def fails_after(n: int):
    for i in range(n):
        yield i
    raise ValueError(f"failed after {n}")


@app.function()
async def async_square(x: int) -> int:
    await asyncio.sleep(0.01)
    return x * x


@app.function()
async def async_items(n: int):
    for i in range(n):
        await asyncio.sleep(0)
        yield i


@app.function(max_containers=1)
@fabric.concurrent(max_inputs=10)
def concurrent_sleep(seconds: float) -> str:
    time.sleep(seconds)
    return threading.current_thread().name


@app.function(max_containers=1)
@fabric.concurrent(max_inputs=20)
async def concurrent_async_sleep(seconds: float) -> int:
    await asyncio.sleep(seconds)
    return os.getpid()


@app.function(max_containers=1, timeout=1)
@fabric.concurrent(max_inputs=4)
async def concurrent_async_timeout(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@app.function(max_containers=1)
@fabric.batched(max_batch_size=8, wait_ms=200)
def batched_double(xs: list[int]) -> list[tuple[int, int]]:
    # Each output carries the size of the batch it ran in.
    return [(x * 2, len(xs)) for x in xs]


@app.function(max_containers=1)
@fabric.batched(max_batch_size=4, wait_ms=50)
def batched_wrong_length(xs: list[int]) -> list[int]:
    return xs[:-1]


@app.function()
def call_counter_from_inside(n: int) -> int:
    return Counter(start=100).add.remote(n)


@app.cls()
class EnvReader:
    @fabric.method()
    def read(self, key: str) -> str:
        import os

        return os.environ.get(key, "")
