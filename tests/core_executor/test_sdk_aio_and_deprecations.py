"""The `.aio` twins, the blocking-in-a-loop warning, decorator markers and Modal's deprecated names."""
from __future__ import annotations

import asyncio
import warnings

import pytest

import core_executor as fabric
from core_executor import exception
from core_executor._aio import AsyncUsageWarning, blocking


class Thing:
    _tag = "thing"

    @blocking
    def work(self, x: int) -> int:
        """Doubles."""
        return x * 2

    @blocking(iterator=True)
    def items(self, n: int):
        yield from range(n)

    @blocking(static=True, name="Thing.total")
    def total(*xs: int) -> int:
        return sum(xs)


def test_blocking_methods_call_through_and_keep_docs():
    t = Thing()
    assert t.work(2) == 4 and list(t.items(3)) == [0, 1, 2] and Thing.total(1, 2) == 3
    assert t.work.__doc__ == "Doubles."


def test_aio_twins_run_in_threads_and_accept_async_iterables():
    async def numbers():
        for i in range(3):
            yield i

    async def main():
        t = Thing()
        assert await t.work.aio(5) == 10
        assert await asyncio.gather(*[t.work.aio(i) for i in range(50)]) == [i * 2 for i in range(50)]
        assert [i async for i in t.items.aio(4)] == [0, 1, 2, 3]
        assert await Thing.total.aio(1, 2, 3) == 6
        agen = t.items.aio(100)
        async for i in agen:
            if i == 2:
                break
        await agen.aclose()

    asyncio.run(main())


def test_blocking_inside_a_loop_warns_once_per_call_site():
    async def main():
        t = Thing()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                t.work(1)
            list(t.items(1))
        return [w for w in caught if issubclass(w.category, AsyncUsageWarning)]

    caught = asyncio.run(main())
    assert len(caught) == 2
    assert "await thing.work.aio(...)" in str(caught[0].message)
    assert "async for ... in thing.items.aio(...)" in str(caught[1].message)
    assert caught[0].filename == __file__


def test_no_warning_outside_a_loop():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Thing().work(1) == 2


def test_deprecated_option_names_map_to_new_ones_with_a_warning():
    app = fabric.App("deprecations")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        @app.function(keep_warm=2, concurrency_limit=4, container_idle_timeout=30, allow_concurrent_inputs=5)
        def f():
            pass

    messages = [str(w.message) for w in caught if w.category is DeprecationWarning]
    assert "keep_warm= is deprecated; use min_containers= instead" in messages
    assert "allow_concurrent_inputs= is deprecated; use @fabric.concurrent(max_inputs=...) instead" in messages
    assert len(messages) == 4 and all(w.filename == __file__ for w in caught)
    spec = f.spec
    assert (spec.min_containers, spec.max_containers, spec.scaledown_window_s, spec.max_concurrent_inputs) == (2, 4, 30, 5)
    with pytest.raises(exception.InvalidError, match="give only min_containers"):
        app.function(keep_warm=1, min_containers=1)
    with pytest.warns(DeprecationWarning, match="use fabric.App"):
        stub = fabric.Stub("old")
    assert isinstance(stub, fabric.App)
    with pytest.raises(exception.InvalidError, match="fastapi_endpoint"):
        fabric.web_endpoint(method="POST")
    with pytest.warns(DeprecationWarning, match="Function.from_name"):
        with pytest.raises(exception.Error):
            fabric.Function.lookup("no-such-app", "f")


def test_concurrent_and_batched_markers_fill_the_spec():
    app = fabric.App("markers")

    @app.function()
    @fabric.concurrent(max_inputs=10, target_inputs=5)
    def c(x):
        return x

    @app.function()
    @fabric.batched(max_batch_size=8, wait_ms=100)
    def b(xs: list[int]) -> list[int]:
        return xs

    assert (c.spec.max_concurrent_inputs, c.spec.target_concurrent_inputs) == (10, 5)
    assert (b.spec.batch_max_size, b.spec.batch_wait_ms) == (8, 100)
    assert b.local([1, 2]) == [1, 2]


def test_bad_markers_are_refused():
    with pytest.raises(exception.InvalidError, match="max_inputs must be an int >= 1"):
        fabric.concurrent(max_inputs=0)
    with pytest.raises(exception.InvalidError, match="must not exceed"):
        fabric.concurrent(max_inputs=2, target_inputs=3)
    with pytest.raises(exception.InvalidError, match="cannot be a generator"):
        fabric.batched(max_batch_size=2, wait_ms=1)(lambda xs: (yield xs))
    with pytest.raises(exception.InvalidError, match=r"\*args"):
        fabric.batched(max_batch_size=2, wait_ms=1)(lambda *xs: xs)
    with pytest.raises(exception.InvalidError, match="not both"):
        fabric.batched(max_batch_size=2, wait_ms=1)(fabric.concurrent(max_inputs=2)(lambda xs: xs))
    with pytest.raises(exception.InvalidError, match="parentheses"):
        fabric.enter(lambda self: None)
    app = fabric.App("bad-markers")
    with pytest.raises(exception.InvalidError, match="marks a method of an @app.cls class"):
        app.function()(fabric.enter()(lambda: None))
    with pytest.raises(exception.InvalidError, match="below @app.function"):

        @fabric.concurrent(max_inputs=2)
        @app.function(name="wrong_order")
        def wrong_order():
            pass
