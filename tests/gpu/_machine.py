"""What the gpu tier and bench/gpu.py need to know about this machine's GPUs, decided once.

The GPU type the test functions ask for is this machine's own (H100, H200, ...), so the same tier
runs on any NVIDIA machine. It is put in the environment before the fabric starts, so the
containers (which import the same app modules) see the same value.
"""
from __future__ import annotations

import os

TYPE_ENV = "GPUFABRIC_TEST_GPU_TYPE"
COUNT_ENV = "GPUFABRIC_TEST_GPU_COUNT"


def _discover() -> tuple[str, int]:
    try:
        from gpu_fabric.worker._gpus import discover_gpus

        gpus = [g for g in discover_gpus() if not g.simulated]
    except Exception:  # noqa: BLE001 - no driver: the tier skips
        gpus = []
    if not gpus:
        return "", 0
    return gpus[0].type, sum(1 for g in gpus if g.type == gpus[0].type)


def gpu_type_and_count() -> tuple[str, int]:
    """(catalog type, how many of it) of this machine's first GPU; ("", 0) without one."""
    if os.environ.get(TYPE_ENV):
        return os.environ[TYPE_ENV], int(os.environ.get(COUNT_ENV) or 1)
    gpu_type, count = _discover()
    if gpu_type:
        os.environ[TYPE_ENV], os.environ[COUNT_ENV] = gpu_type, str(count)
    return gpu_type, count


def other_type(gpu_type: str) -> str:
    """A catalog type this machine does not have, for a fallback list's first choice."""
    return "B200" if gpu_type != "B200" else "H100"


def torch_cuda_problem() -> str:
    """Why PyTorch cannot use a GPU here, or "" when it can."""
    try:
        import torch
    except ImportError as exc:
        return f"PyTorch is not installed in this interpreter ({exc}); the GPU machine's torch is used through --system-site-packages"
    if not torch.cuda.is_available():
        return f"PyTorch {torch.__version__} sees no CUDA device (built with CUDA {torch.version.cuda})"
    return ""
