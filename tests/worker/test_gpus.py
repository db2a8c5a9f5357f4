"""GPU discovery: name mapping, nvidia-smi parsing, simulated GPUs (no GPU needed)."""
from __future__ import annotations

import pytest

from gpu_fabric.proto import common_pb2
from gpu_fabric.worker._gpus import (
    GpuDiscoveryError,
    catalog_type,
    discover_gpus,
    parse_nvidia_smi,
    parse_nvidia_smi_versions,
    parse_simulated,
)


@pytest.mark.parametrize(
    "name, memory_mb, expected",
    [
        ("NVIDIA H100 80GB HBM3", 81559, "H100"),
        ("NVIDIA H100 PCIe", 81559, "H100"),
        ("NVIDIA H100 NVL", 95830, "H100"),
        ("NVIDIA H200", 143771, "H200"),
        ("NVIDIA GH200 480GB", 97871, "GH200"),
        ("NVIDIA A100-SXM4-80GB", 81920, "A100-80GB"),
        ("NVIDIA A100 80GB PCIe", 81920, "A100-80GB"),
        ("NVIDIA A100-SXM4-40GB", 40960, "A100-40GB"),
        ("NVIDIA A100-PCIE-40GB", 40536, "A100-40GB"),
        ("NVIDIA A100-PCIE", 40536, "A100-40GB"),
        ("Tesla T4", 15360, "T4"),
        ("NVIDIA L4", 23034, "L4"),
        ("NVIDIA L40S", 46068, "L40S"),
        ("NVIDIA L40", 46068, "L40"),
        ("NVIDIA A10G", 23028, "A10G"),
        ("NVIDIA A10", 23028, "A10"),
        ("NVIDIA B200", 183359, "B200"),
        ("Tesla V100-SXM2-16GB", 16384, "V100"),
        ("NVIDIA GeForce RTX 4090", 24564, "NVIDIA GeForce RTX 4090"),
    ],
)
def test_catalog_type(name, memory_mb, expected):
    assert catalog_type(name, memory_mb) == expected


RECORDED_SMI = """\
0, NVIDIA H100 80GB HBM3, 81559, GPU-6f0c1f5e-6a1c-4b5e-9d2a-000000000000
1, NVIDIA H100 80GB HBM3, 81559, GPU-6f0c1f5e-6a1c-4b5e-9d2a-000000000001

"""


def test_parse_nvidia_smi():
    gpus = parse_nvidia_smi(RECORDED_SMI)
    assert [(g.index, g.type, g.name, g.memory_mb, g.uuid, g.simulated) for g in gpus] == [
        (0, "H100", "NVIDIA H100 80GB HBM3", 81559, "GPU-6f0c1f5e-6a1c-4b5e-9d2a-000000000000", False),
        (1, "H100", "NVIDIA H100 80GB HBM3", 81559, "GPU-6f0c1f5e-6a1c-4b5e-9d2a-000000000001", False),
    ]


def test_parse_nvidia_smi_skips_garbage():
    text = "0, Tesla T4, 15360, GPU-a\nNo devices were found\nx, Tesla T4, 1, GPU-b\n"
    assert [g.type for g in parse_nvidia_smi(text)] == ["T4"]


def test_parse_simulated():
    gpus = parse_simulated("H100:2, T4:1")
    assert [(g.index, g.type, g.simulated) for g in gpus] == [
        (0, "H100", True), (1, "H100", True), (2, "T4", True),
    ]
    assert gpus[0].memory_mb > 80000 and len({g.uuid for g in gpus}) == 3
    assert [g.type for g in parse_simulated("L4")] == ["L4"]


@pytest.mark.parametrize("bad", ["H100:x", "H100:0", ":2"])
def test_parse_simulated_rejects_bad_values(bad):
    with pytest.raises(GpuDiscoveryError):
        parse_simulated(bad)


def test_discover_prefers_simulated_then_nvml_then_smi():
    nvml_gpu = common_pb2.GpuInfo(index=0, type="L4", name="NVIDIA L4")

    def no_smi():
        raise AssertionError("nvidia-smi must not run")

    assert [g.type for g in discover_gpus("T4:1", nvml=lambda: [nvml_gpu], run_nvidia_smi=no_smi)] == ["T4"]
    assert discover_gpus(nvml=lambda: [nvml_gpu], run_nvidia_smi=no_smi) == [nvml_gpu]
    assert [g.index for g in discover_gpus(nvml=lambda: None, run_nvidia_smi=lambda: RECORDED_SMI)] == [0, 1]
    assert discover_gpus(nvml=lambda: None, run_nvidia_smi=lambda: None) == []


def test_discover_on_this_machine_does_not_crash():
    assert isinstance(discover_gpus(), list)


SMI_HEADER = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
"""


def test_driver_and_cuda_versions_from_the_nvidia_smi_header():
    assert parse_nvidia_smi_versions(SMI_HEADER) == ("550.54.15", "12.4")
    assert parse_nvidia_smi_versions("No devices were found") == ("", "")
    gpus = discover_gpus(nvml=lambda: None, run_nvidia_smi=lambda: RECORDED_SMI, run_nvidia_smi_header=lambda: SMI_HEADER)
    assert {(g.driver_version, g.cuda_version) for g in gpus} == {("550.54.15", "12.4")}
    assert discover_gpus(nvml=lambda: None, run_nvidia_smi=lambda: "", run_nvidia_smi_header=lambda: 1 / 0) == []
