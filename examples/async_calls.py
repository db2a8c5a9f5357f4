"""Async: every call has an `.aio` twin, and `async def` functions run on the container's loop.

Run it with `gpufabric run examples/async_calls.py` (or `python examples/async_calls.py`).
"""
import asyncio

import core_executor as fabric

app = fabric.App("async-calls")


@app.function()
async def fetch(i: int) -> str:
    await asyncio.sleep(0.1)  # stands for an HTTP request
    return f"page {i}"


@app.function()
async def ticker(n: int):
    for i in range(n):
        await asyncio.sleep(0.05)
        yield i


async def run_async():
    pages = await asyncio.gather(*[fetch.remote.aio(i) for i in range(5)])
    print(pages)
    async for page in fetch.map.aio(range(5, 8)):
        print(page)
    call = await fetch.spawn.aio(9)
    print(await call.get.aio())
    print([i async for i in ticker.remote_gen.aio(3)])


@app.local_entrypoint()
def main():
    asyncio.run(run_async())


if __name__ == "__main__":
    with app.run():
        main()
