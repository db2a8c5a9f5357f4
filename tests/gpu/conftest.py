"""GPU tier: a real fabric on this machine's NVIDIA GPUs; every test skips with a reason without one."""
from __future__ import annotations

import functools
import os

import pytest

from gpu_fabric.worker._gpus import discover_gpus

from . import _machine

NO_GPU_REASON = "no NVIDIA GPU: NVML and nvidia-smi found none (the gpu tier needs one; see tests/gpu/run.sh)"


@functools.lru_cache(maxsize=1)
def machine_gpus() -> list:
    """This machine's real GPUs (never simulated ones)."""
    try:
        return [g for g in discover_gpus() if not g.simulated]
    except Exception:  # noqa: BLE001 - a broken driver reads as "no GPU" here, with the reason in the log
        return []


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    for item in items:
        if str(item.fspath).startswith(here) and not machine_gpus():
            item.add_marker(pytest.mark.skip(reason=NO_GPU_REASON))


@pytest.fixture(scope="session")
def gpus():
    found = machine_gpus()
    if not found:
        pytest.skip(NO_GPU_REASON)
    return found


@pytest.fixture(scope="session")
def torch_cuda(gpus):
    """PyTorch with CUDA in this interpreter (the containers run the same one)."""
    why = _machine.torch_cuda_problem()
    if why:
        pytest.skip(why)
    import torch

    return torch


@pytest.fixture(scope="module")
def gpu_fabric(gpus, tmp_path_factory):
    """A `gpufabric serve` with one local worker that advertises this machine's real GPUs."""
    from tests.integration.conftest import Fabric

    _machine.gpu_type_and_count()  # into the environment, so the containers ask for the same type
    fabric = Fabric(str(tmp_path_factory.mktemp("gpu-fabric")), "--heartbeat-timeout", "10",
                    "--scaledown-window", "30", "--max-payload-bytes", str(64 * 1024 * 1024)).start()
    yield fabric
    fabric.stop()


@pytest.fixture
def gpu_fabric_env(gpu_fabric, monkeypatch):
    monkeypatch.setenv("GPUFABRIC_URL", gpu_fabric.url)
    monkeypatch.setenv("GPUFABRIC_TOKEN", gpu_fabric.token)
    return gpu_fabric
