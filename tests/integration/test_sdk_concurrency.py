"""@concurrent and @batched through a real fabric."""
from __future__ import annotations

import time

import pytest

from core_executor import exception

from . import sdk_apps

pytestmark = pytest.mark.integration


def test_concurrent_sync_inputs_run_at_once_in_one_container(fabric_env):
    with sdk_apps.app.run():
        sdk_apps.concurrent_sleep.remote(0)  # the container is warm
        started = time.monotonic()
        threads = list(sdk_apps.concurrent_sleep.map([1.0] * 10))
        elapsed = time.monotonic() - started
    # One container (max_containers=1) running 10 one-second inputs one by one would take 10 s.
    assert elapsed < 5, elapsed
    assert len(set(threads)) > 1


def test_concurrent_async_inputs_share_the_loop(fabric_env):
    with sdk_apps.app.run():
        sdk_apps.concurrent_async_sleep.remote(0)
        started = time.monotonic()
        pids = list(sdk_apps.concurrent_async_sleep.map([1.0] * 20))
        elapsed = time.monotonic() - started
    assert elapsed < 5, elapsed
    assert len(set(pids)) == 1


def test_concurrent_async_timeout_fails_only_that_input(fabric_env):
    with sdk_apps.app.run():
        results = list(sdk_apps.concurrent_async_timeout.map([0.1, 3.0, 0.2], return_exceptions=True))
    assert results[0] == 0.1 and results[2] == 0.2
    assert isinstance(results[1], exception.FunctionTimeoutError)


def test_batched_function_gets_lists_and_callers_get_items(fabric_env):
    with sdk_apps.app.run():
        assert sdk_apps.batched_double.remote(3) == (6, 1)
        results = list(sdk_apps.batched_double.map(range(24)))
    assert [r[0] for r in results] == [x * 2 for x in range(24)]
    # The inputs were queued together: they ran in batches of more than one.
    assert max(r[1] for r in results) > 1
    assert all(r[1] <= 8 for r in results)


def test_batched_wrong_output_length_fails_the_batch(fabric_env):
    with sdk_apps.app.run():
        with pytest.raises(exception.InvalidError, match="returned 0 outputs for a batch of 1"):
            sdk_apps.batched_wrong_length.remote(1)
