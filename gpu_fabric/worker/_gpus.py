"""GPU discovery for the worker agent: NVML, nvidia-smi, or simulated GPUs."""
from __future__ import annotations

import logging
import re
import shutil
import subprocess
from typing import Callable, Optional, Sequence

from gpu_fabric.proto import common_pb2

logger = logging.getLogger(__name__)

__all__ = [
    "GpuDiscoveryError",
    "catalog_type",
    "discover_gpus",
    "parse_nvidia_smi",
    "parse_nvidia_smi_versions",
    "parse_simulated",
]

NVIDIA_SMI_QUERY = [
    "nvidia-smi",
    "--query-gpu=index,name,memory.total,uuid",
    "--format=csv,noheader,nounits",
]


_DRIVER_VERSION = re.compile(r"Driver Version:\s*([0-9][0-9.]*)")
_CUDA_VERSION = re.compile(r"CUDA Version:\s*([0-9][0-9.]*)")


class GpuDiscoveryError(ValueError):
    """Raised for a malformed `--simulate-gpus` value; fix the flag (e.g. `H100:2,T4:1`)."""


# Ordered: more specific names first (L40S before L40 before L4, GH200 before H200).
_NAME_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p, re.IGNORECASE), t)
    for p, t in [
        (r"\bGH200\b", "GH200"),
        (r"\bH200\b", "H200"),
        (r"\bH100\b", "H100"),
        (r"\bH800\b", "H800"),
        (r"\bB200\b", "B200"),
        (r"\bB100\b", "B100"),
        (r"\bL40S\b", "L40S"),
        (r"\bL40\b", "L40"),
        (r"\bL4\b", "L4"),
        (r"\bA10G\b", "A10G"),
        (r"\bA10\b", "A10"),
        (r"\bA40\b", "A40"),
        (r"\bT4\b", "T4"),
        (r"\bV100\b", "V100"),
    ]
]
_A100 = re.compile(r"\bA100\b", re.IGNORECASE)

# Memory (MiB) advertised for simulated GPUs, so placement by memory behaves like the real thing.
_SIMULATED_MEMORY_MB = {
    "H100": 81559, "H200": 143771, "B200": 183359, "A100-80GB": 81920, "A100-40GB": 40960,
    "L40S": 46068, "L4": 23034, "A10G": 23028, "T4": 15360, "V100": 16384,
}


def catalog_type(name: str, memory_mb: int = 0) -> str:
    """Maps a device name ("NVIDIA H100 80GB HBM3") to its catalog type ("H100")."""
    name = name.strip()
    if _A100.search(name):
        if "80GB" in name.upper().replace(" ", ""):
            return "A100-80GB"
        if "40GB" in name.upper().replace(" ", ""):
            return "A100-40GB"
        # Names without the size ("NVIDIA A100-PCIE"): decide by memory.
        return "A100-80GB" if memory_mb > 60_000 else "A100-40GB"
    for pattern, gpu_type in _NAME_RULES:
        if pattern.search(name):
            return gpu_type
    return name


def parse_nvidia_smi(text: str) -> list[common_pb2.GpuInfo]:
    """Parses `nvidia-smi --query-gpu=index,name,memory.total,uuid --format=csv,noheader,nounits`."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4:
            logger.warning("ignoring unparsable nvidia-smi line %r", line)
            continue
        # A name could hold a comma; index is first, memory and uuid are last.
        index, name, memory, uuid = parts[0], ",".join(parts[1:-2]), parts[-2], parts[-1]
        try:
            index_i = int(index)
            memory_mb = int(float(memory))
        except ValueError:
            logger.warning("ignoring unparsable nvidia-smi line %r", line)
            continue
        gpus.append(
            common_pb2.GpuInfo(
                index=index_i, type=catalog_type(name, memory_mb), name=name,
                memory_mb=memory_mb, uuid=uuid,
            )
        )
    return gpus


def parse_nvidia_smi_versions(text: str) -> tuple[str, str]:
    """(driver, CUDA) versions from the header of plain `nvidia-smi` output; "" for what it lacks."""
    driver = _DRIVER_VERSION.search(text)
    cuda = _CUDA_VERSION.search(text)
    return (driver.group(1) if driver else "", cuda.group(1) if cuda else "")


def _cuda_version(encoded: int) -> str:
    """NVML's CUDA driver version (12040) as "12.4"."""
    return f"{encoded // 1000}.{encoded % 1000 // 10}" if encoded > 0 else ""


def parse_simulated(spec: str) -> list[common_pb2.GpuInfo]:
    """Parses `H100:2,T4:1` into simulated GpuInfo entries with consecutive indices."""
    gpus: list[common_pb2.GpuInfo] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        gpu_type, _, count_s = item.partition(":")
        gpu_type = gpu_type.strip()
        try:
            count = int(count_s) if count_s.strip() else 1
        except ValueError:
            raise GpuDiscoveryError(f"bad GPU count in {item!r}; expected TYPE:COUNT") from None
        if not gpu_type or count < 1:
            raise GpuDiscoveryError(f"bad simulated GPU {item!r}; expected TYPE:COUNT")
        for _ in range(count):
            index = len(gpus)
            gpus.append(
                common_pb2.GpuInfo(
                    index=index, type=gpu_type, name=f"Simulated {gpu_type}",
                    memory_mb=_SIMULATED_MEMORY_MB.get(gpu_type, 16384),
                    uuid=f"GPU-simulated-{index}", simulated=True,
                )
            )
    return gpus


def _nvml_gpus() -> Optional[list[common_pb2.GpuInfo]]:
    try:
        import pynvml  # nvidia-ml-py; optional
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # no driver: NVMLError_LibraryNotFound, etc.
        logger.debug("NVML unavailable: %s", exc)
        return None
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        try:
            cuda = _cuda_version(int(pynvml.nvmlSystemGetCudaDriverVersion()))
        except Exception:  # older drivers or bindings: the driver version is still worth having
            cuda = ""
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            # Older nvidia-ml-py returns bytes.
            name = name.decode() if isinstance(name, bytes) else name
            uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
            memory_mb = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total // (1024 * 1024))
            gpus.append(
                common_pb2.GpuInfo(
                    index=index, type=catalog_type(name, memory_mb), name=name,
                    memory_mb=memory_mb, uuid=uuid, driver_version=driver, cuda_version=cuda,
                )
            )
        return gpus
    except Exception as exc:
        logger.warning("NVML query failed, trying nvidia-smi: %s", exc)
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _run_nvidia_smi(argv: Sequence[str] = tuple(NVIDIA_SMI_QUERY)) -> Optional[str]:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("nvidia-smi failed: %s", exc)
        return None
    if done.returncode != 0:
        logger.warning("nvidia-smi exited %s: %s", done.returncode, done.stderr.strip())
        return None
    return done.stdout


def discover_gpus(
    simulate: str = "",
    *,
    nvml: Callable[[], Optional[Sequence[common_pb2.GpuInfo]]] = _nvml_gpus,
    run_nvidia_smi: Callable[[], Optional[str]] = _run_nvidia_smi,
    run_nvidia_smi_header: Callable[[], Optional[str]] = lambda: _run_nvidia_smi(("nvidia-smi",)),
) -> list[common_pb2.GpuInfo]:
    """The GPUs this worker advertises: simulated ones when asked, else NVML, else nvidia-smi."""
    if simulate:
        return parse_simulated(simulate)
    found = nvml()
    if found is not None:
        return list(found)
    text = run_nvidia_smi()
    if text is None:
        return []
    gpus = parse_nvidia_smi(text)
    if gpus:  # the versions are in plain nvidia-smi's header, not in the per-GPU query
        driver, cuda = parse_nvidia_smi_versions(run_nvidia_smi_header() or "")
        for gpu in gpus:
            gpu.driver_version, gpu.cuda_version = driver, cuda
    return gpus
