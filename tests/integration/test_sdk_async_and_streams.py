"""Generators and the async API through a real fabric."""
from __future__ import annotations

import asyncio
import time
import warnings

import pytest

import core_executor as fabric
from core_executor._aio import AsyncUsageWarning

from . import sdk_apps

pytestmark = pytest.mark.integration


def test_generator_items_arrive_as_they_are_made(fabric_env):
    with sdk_apps.app.run():
        started = time.monotonic()
        seen = []
        for item in sdk_apps.slow_items.remote_gen(4, 0.5):
            seen.append((item, time.monotonic() - started))
        assert [i for i, _ in seen] == [0, 1, 2, 3]
        # Item 0 is made at once and item 3 after 1.5 s: the first one must not wait for the last.
        assert seen[3][1] - seen[0][1] > 1.0


def test_generator_exception_comes_after_the_items_before_it(fabric_env):
    with sdk_apps.app.run():
        seen = []
        with pytest.raises(ValueError, match="failed after 3"):
            for item in sdk_apps.fails_after.remote_gen(3):
                seen.append(item)
        assert seen == [0, 1, 2]


def test_async_twins(fabric_env):
    async def main():
        results = await asyncio.gather(*[sdk_apps.async_square.remote.aio(i) for i in range(10)])
        assert results == [i * i for i in range(10)]
        assert [r async for r in sdk_apps.async_square.map.aio(range(5))] == [0, 1, 4, 9, 16]

        async def numbers():
            for i in range(3):
                yield i

        assert [r async for r in sdk_apps.async_square.map.aio(numbers())] == [0, 1, 4]
        call = await sdk_apps.async_square.spawn.aio(7)
        assert await call.get.aio() == 49
        calls = [await sdk_apps.async_square.spawn.aio(i) for i in range(3)]
        assert await fabric.FunctionCall.gather.aio(*calls) == [0, 1, 4]
        assert [i async for i in sdk_apps.async_items.remote_gen.aio(4)] == [0, 1, 2, 3]
        assert [i async for i in sdk_apps.Counter().countdown.remote_gen.aio(2)] == [2, 1]
        assert await sdk_apps.Counter().async_add.remote.aio(1) == 1

    with sdk_apps.app.run():
        asyncio.run(main())


def test_blocking_call_in_a_loop_warns_once_per_site(fabric_env):
    async def main():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for i in range(3):
                assert sdk_apps.async_square.remote(i) == i * i
        return [w for w in caught if issubclass(w.category, AsyncUsageWarning)]

    with sdk_apps.app.run():
        caught = asyncio.run(main())
    assert len(caught) == 1
    assert "async_square.remote.aio" in str(caught[0].message)
    assert caught[0].filename == __file__
