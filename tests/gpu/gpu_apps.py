"""Functions the gpu tier calls: they ask for this machine's own GPU type (see _machine.py)."""
from __future__ import annotations

import os

import core_executor as fabric

from . import _machine

GPU_TYPE, GPU_COUNT = _machine.gpu_type_and_count()
GPU_TYPE, GPU_COUNT = GPU_TYPE or "H100", GPU_COUNT or 1  # without a GPU the tier skips; the module still imports
OTHER_TYPE = _machine.other_type(GPU_TYPE)

app = fabric.App("gpu-tier")


def _visible() -> dict:
    import torch

    props = torch.cuda.get_device_properties(0)
    return {
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "device_count": torch.cuda.device_count(),
        "name": torch.cuda.get_device_name(0),
        "uuid": str(getattr(props, "uuid", "") or ""),
        "memory_mb": props.total_memory // (1024 * 1024),
    }


@app.function(gpu=GPU_TYPE, scaledown_window=2)
def matmul(n: int = 2048) -> dict:
    """A float32 matrix product on cuda, checked against the same product on the CPU."""
    import torch

    torch.manual_seed(0)
    a, b = torch.randn(n, n), torch.randn(n, n)
    expected = a @ b
    got = (a.to("cuda") @ b.to("cuda")).cpu()
    return dict(_visible(), max_abs_err=float((got - expected).abs().max()), scale=float(expected.abs().max()),
                device=str((a.to("cuda")).device))


@app.function(gpu=[OTHER_TYPE, GPU_TYPE], scaledown_window=2)
def fallback() -> dict:
    import torch

    return dict(_visible(), ones=float(torch.ones(4, device="cuda").sum()))


@app.function(gpu=f"{GPU_TYPE}:{GPU_COUNT + 1}", scaledown_window=2)
def too_many() -> str:
    return "ran on more GPUs than this machine has"
