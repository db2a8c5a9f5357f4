"""FunctionCall.get_usage() through a real fabric with simulated GPUs: GPU type, count and seconds."""
from __future__ import annotations

import asyncio

import pytest

import core_executor as fabric

from . import usage_apps as apps

pytestmark = pytest.mark.integration

NAP_S = 0.6


@pytest.fixture(scope="module")
def t4_fabric(tmp_path_factory):
    from .conftest import Fabric

    started = Fabric(str(tmp_path_factory.mktemp("usage-fabric")), "--simulate-gpus", "T4:2", "--heartbeat-timeout", "5").start()
    yield started
    started.stop()


@pytest.fixture
def on_t4_fabric(t4_fabric, monkeypatch):
    monkeypatch.setenv("GPUFABRIC_URL", t4_fabric.url)
    monkeypatch.setenv("GPUFABRIC_TOKEN", t4_fabric.token)
    return t4_fabric


def test_usage_of_a_t4_call_is_its_sleep_on_one_t4(on_t4_fabric):
    with apps.app.run():
        call = apps.nap_on_t4.spawn(NAP_S)
        assert call.get(timeout=120) in ("0", "1")
        usage = call.get_usage()  # final once .get() returned
        assert isinstance(usage, fabric.CallUsage)
        assert (usage.call_id, usage.num_inputs, usage.num_finished, usage.num_running) == (call.object_id, 1, 1, 0)
        assert (usage.gpu_type, usage.gpu_count, usage.attempts) == ("T4", 1, 1)
        # From handing the input over to its output arriving: the nap plus a little transport.
        assert NAP_S <= usage.seconds < NAP_S + 2.0
        assert usage.gpu_seconds == pytest.approx(usage.seconds)
        assert usage.usd == 0.0  # a local worker's GPUs are priced $0
        assert [(c.gpu_type, c.gpu_count, c.attempts) for c in usage.capacity] == [("T4", 1, 1)]
        assert usage.lost_attempts == 0
        assert asyncio.run(call.get_usage.aio()) == usage


def test_usage_counts_gpus_per_container_and_every_attempt(on_t4_fabric):
    with apps.app.run():
        pair = apps.nap_on_two_t4s.spawn(NAP_S)
        assert pair.get(timeout=120) == "0,1"
        usage = pair.get_usage()
        assert (usage.gpu_type, usage.gpu_count) == ("T4", 2)
        assert NAP_S <= usage.seconds < NAP_S + 2.0
        assert usage.gpu_seconds == pytest.approx(2 * usage.seconds)

        failing = apps.nap_then_fail.spawn(NAP_S / 2)
        with pytest.raises(RuntimeError, match="failed after a nap"):
            failing.get(timeout=120)
        usage = failing.get_usage()
        assert usage.attempts == 2 and usage.num_finished == 1  # the first try and its retry
        assert usage.seconds >= NAP_S


def test_usage_of_a_spawn_map_sums_its_inputs(on_t4_fabric):
    with apps.app.run():
        call = apps.nap_on_t4.spawn_map([NAP_S / 3] * 3)
        assert len(call.get(timeout=120)) == 3
        usage = call.get_usage()
        assert (usage.num_inputs, usage.num_finished, usage.attempts, usage.gpu_type) == (3, 3, 3, "T4")
        assert usage.seconds >= NAP_S


def test_usage_of_an_unknown_call_is_not_found(on_t4_fabric):
    with apps.app.run():
        with pytest.raises(fabric.exception.NotFoundError):
            fabric.FunctionCall.from_id("fc-does-not-exist").get_usage()


def test_a_spawned_generator_streams_with_get_gen_and_reports_usage(on_t4_fabric):
    with apps.app.run():
        call = apps.count_on_t4.spawn(4)
        assert list(call.get_gen()) == [0, 1, 2, 3]
        usage = call.get_usage()
        assert (usage.num_finished, usage.attempts, usage.gpu_type) == (1, 1, "T4") and usage.seconds >= 0.2
        plain = apps.nap_on_t4.spawn(0.01)
        with pytest.raises(fabric.exception.InvalidError, match="not a generator call"):
            list(plain.get_gen())
