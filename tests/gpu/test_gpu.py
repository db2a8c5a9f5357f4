"""The fabric on a real NVIDIA GPU: discovery, pinned containers running PyTorch, placement
refusals and fallbacks with their reasons, and GPU seconds in the billing ledger."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from gpu_fabric.providers.catalog import load_catalog

pytestmark = pytest.mark.gpu

GPUFABRIC = os.path.join(os.path.dirname(sys.executable), "gpufabric")


def _smi(*fields: str) -> list[list[str]]:
    out = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return [[p.strip() for p in line.split(",")] for line in out.splitlines() if line.strip()]


def test_discovery_gives_model_memory_driver_cuda_and_the_catalog_type(gpus):
    catalog_types = set(load_catalog().gpu_types)
    for g in gpus:
        print(f"GPU {g.index}: {g.name} -> {g.type}, {g.memory_mb} MiB, driver {g.driver_version}, CUDA {g.cuda_version}, {g.uuid}")
        assert not g.simulated and g.name and g.uuid
        assert g.memory_mb > 1024
        assert re.fullmatch(r"\d+(\.\d+)+", g.driver_version), g
        assert re.fullmatch(r"\d+\.\d+", g.cuda_version), g
        assert g.type in catalog_types, f"{g.name!r} maps to {g.type!r}, which the catalog does not know"
    if shutil.which("nvidia-smi"):  # NVML and nvidia-smi agree (whichever discovery used)
        rows = _smi("index", "name", "memory.total", "uuid", "driver_version")
        assert [(int(r[0]), r[-2], r[-1]) for r in rows] == [(g.index, g.uuid, g.driver_version) for g in gpus]
        assert all(abs(int(float(r[-3])) - g.memory_mb) <= 1 for r, g in zip(rows, gpus))


def test_worker_ls_shows_the_gpu(gpu_fabric_env, gpus):
    out = subprocess.run([GPUFABRIC, "worker", "ls"], capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    print(out.stdout)
    g = gpus[0]
    assert f"{g.index}:{g.type} ({g.name}, {g.memory_mb} MiB, driver {g.driver_version}, CUDA {g.cuda_version})" in out.stdout


def test_matmul_on_cuda_in_a_container_that_sees_exactly_its_gpu(gpu_fabric_env, gpus, torch_cuda):
    from . import gpu_apps

    with gpu_apps.app.run(show_logs=False):
        got = gpu_apps.matmul.remote(2048)
    print(got)
    pinned = got["cuda_visible_devices"]
    assert re.fullmatch(r"\d+", pinned or ""), f"exactly one GPU index expected in CUDA_VISIBLE_DEVICES, got {pinned!r}"
    g = next(g for g in gpus if g.index == int(pinned))
    assert g.type == gpu_apps.GPU_TYPE
    assert got["device_count"] == 1 and got["name"] == g.name and got["device"] == "cuda:0"
    assert abs(got["memory_mb"] - g.memory_mb) <= 1024
    torch_uuid = got["uuid"].lower().removeprefix("gpu-")
    if re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", torch_uuid):  # PyTorch's lacks the "GPU-" prefix
        assert g.uuid.lower().removeprefix("gpu-") == torch_uuid, (g.uuid, got["uuid"])
    assert got["max_abs_err"] <= 1e-2 * got["scale"], got  # float32 (TF32 where the machine turns it on)


def _logs_until(capsys, needle: str, timeout: float) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        captured = capsys.readouterr()
        seen += captured.out + captured.err
        if needle in seen:
            break
        time.sleep(0.2)
    return seen


def test_more_gpus_than_the_machine_has_is_refused_or_waits_with_a_reason(gpu_fabric_env, gpus, capsys):
    from core_executor import exception

    from . import gpu_apps

    wanted = f"{gpu_apps.GPU_COUNT + 1}x {gpu_apps.GPU_TYPE}"
    try:
        with gpu_apps.app.run(show_logs=True):
            call = gpu_apps.too_many.spawn()
            seen = _logs_until(capsys, f"no worker in this fabric can run too_many ({wanted} GPU", 30)
            print(seen)
            assert f"no worker in this fabric can run too_many ({wanted} GPU" in seen, seen
            with pytest.raises(TimeoutError):
                call.get(timeout=2)  # it waits: it did not run somewhere with fewer GPUs
            call.cancel()
    except exception.Error as err:  # refused when the app is created: fine too, if it says why
        assert gpu_apps.GPU_TYPE in str(err), err


def test_a_gpu_list_lands_on_the_machines_type_and_the_reason_is_recorded(gpu_fabric_env, gpus, torch_cuda, capsys):
    from . import gpu_apps

    with gpu_apps.app.run(show_logs=True):
        got = gpu_apps.fallback.remote()
        seen = _logs_until(capsys, "scheduler: fallback: fallback:", 10)
    print(got)
    assert got["name"] == gpus[int(got["cuda_visible_devices"])].name and got["ones"] == 4.0
    assert f"scheduler: fallback: fallback: 1x {gpu_apps.GPU_TYPE}" in seen, seen
    assert f"first choice 1x {gpu_apps.OTHER_TYPE}" in seen, seen
    decisions = _billing("function").decisions
    assert any("fallback: fallback:" in d and gpu_apps.OTHER_TYPE in d for d in decisions), decisions


def _billing(group_by: str, baseline: str = "aws"):
    from core_executor._client import Client
    from gpu_fabric.proto import billing_pb2, billing_pb2_grpc

    client = Client.from_env()
    stub = billing_pb2_grpc.FabricBillingStub(client.channel)
    return stub.BillingReport(billing_pb2.BillingReportRequest(group_by=group_by, baseline_cloud=baseline, decisions=50),
                              metadata=client.metadata, timeout=30)


def test_gpu_seconds_are_billed_under_the_catalog_type_at_the_catalog_price(gpu_fabric_env, gpus, torch_cuda):
    from . import gpu_apps

    t0 = time.monotonic()
    with gpu_apps.app.run(show_logs=False):
        gpu_apps.matmul.remote(512)
        time.sleep(2.0)
    ran = time.monotonic() - t0
    catalog = load_catalog()
    per_gpu = min((o.on_demand / o.gpu_count for o in catalog.offerings
                   if o.cloud == "aws" and o.gpu == gpu_apps.GPU_TYPE), default=None)
    if per_gpu is None:
        pytest.skip(f"the catalog has no aws on-demand price for {gpu_apps.GPU_TYPE}")
    report = _billing("gpu")
    rows = {r.name: r for r in report.rows}
    print(f"ledger by GPU: {[(r.name, round(r.seconds, 2), round(r.usd, 6)) for r in report.rows]}; "
          f"aws on-demand replay ${report.baseline_usd:.6f} at ${per_gpu}/GPU-hour")
    row = rows.get(gpu_apps.GPU_TYPE)
    assert row is not None and row.seconds >= 2.0, rows
    gpu_seconds = sum(r.seconds for name, r in rows.items() if name != "cpu")
    assert gpu_seconds >= min(ran, 2.0)
    # Every GPU-second is priced at the catalog's on-demand rate for this type (one GPU per container
    # here); the local provider itself charges nothing, so the fabric's own cost is $0.
    assert report.baseline_usd == pytest.approx(gpu_seconds * per_gpu / 3600, rel=1e-2)
    assert report.actual_usd == pytest.approx(sum(r.usd for name, r in rows.items() if name != "cpu"), rel=1e-2, abs=1e-9)
