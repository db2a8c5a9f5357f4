"""The TaskRunner contract that needs no fabric: configuration, equality, duplicate, start checks."""
from __future__ import annotations

import pickle

import cloudpickle
import pytest
from prefect import flow, task
from prefect.task_runners import TaskRunner

from prefect_integration import GpuFabricTaskRunner, PrefectGpuFabricFuture, RemoteOptions, remote_options
from prefect_integration._options import current_overrides


@task
def noop() -> None:
    return None


def test_is_a_prefect_task_runner():
    runner = GpuFabricTaskRunner(gpu="A100")
    assert isinstance(runner, TaskRunner)
    assert runner.name == "gpufabric"
    assert issubclass(PrefectGpuFabricFuture, __import__("prefect.futures").futures.PrefectConcurrentFuture)


def test_duplicate_is_equal_and_independent():
    runner = GpuFabricTaskRunner(gpu="A100", timeout=600, max_containers=3, url="grpc://h:1", token="t")
    twin = runner.duplicate()
    assert twin == runner
    assert twin is not runner
    assert twin.options == runner.options
    assert not twin._started


def test_inequality_by_configuration():
    assert GpuFabricTaskRunner(gpu="A100") != GpuFabricTaskRunner(gpu="H100")
    assert GpuFabricTaskRunner() != GpuFabricTaskRunner(url="grpc://h:1")
    assert GpuFabricTaskRunner() != object()
    assert GpuFabricTaskRunner(gpu="A100", cpu=2) == GpuFabricTaskRunner(gpu="A100", cpu=2)


def test_submit_and_map_before_start_raise():
    runner = GpuFabricTaskRunner()
    with pytest.raises(RuntimeError, match="must be started"):
        runner.submit(noop, {})
    with pytest.raises(RuntimeError, match="must be started"):
        runner.map(noop, {"x": [1, 2]})


def test_pickles_as_configuration():
    runner = GpuFabricTaskRunner(gpu=["H100", "A100"], env={"A": "1"}, app_name="etl")
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        copy = loads(dumps(runner))
        assert copy == runner
        assert copy.options.gpu == ["H100", "A100"]


def test_flow_accepts_the_runner_and_with_options_duplicates():
    @flow(task_runner=GpuFabricTaskRunner(gpu="A100"))
    def my_flow() -> None:
        return None

    assert my_flow.task_runner == GpuFabricTaskRunner(gpu="A100")
    other = my_flow.with_options(task_runner=GpuFabricTaskRunner(gpu="H100"))
    assert other.task_runner.options.gpu == "H100"


def test_remote_options_nest_and_merge():
    base = RemoteOptions(gpu="A100", timeout=60)
    assert current_overrides() == {}
    with remote_options(gpu="H100", memory=2048):
        with remote_options(timeout=5):
            merged = base.merged(current_overrides())
            assert merged.given() == {"gpu": "H100", "timeout": 5, "memory": 2048}
        assert base.merged(current_overrides()).given() == {"gpu": "H100", "timeout": 60, "memory": 2048}
    assert current_overrides() == {}
    assert base.merged({}).key() == base.key()


def test_remote_options_reject_unknown_names():
    with pytest.raises(TypeError, match="unknown remote option"):
        with remote_options(gpus="A100"):
            pass
    with pytest.raises(TypeError):
        RemoteOptions(bogus=1)


def test_function_kwargs_default_timeout():
    assert RemoteOptions().function_kwargs()["timeout"] == 24 * 3600.0
    assert RemoteOptions(timeout=5, gpu="A100").function_kwargs() == {"timeout": 5, "gpu": "A100"}


def test_bad_max_in_flight():
    with pytest.raises(ValueError):
        GpuFabricTaskRunner(max_in_flight=0)
