"""examples/dagster/definitions.py: it validates, its schedule evaluates, and its assets materialize."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from dagster import DagsterInstance, build_schedule_context, materialize

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "dagster", "definitions.py")


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("dagster_definitions_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_definitions_validate():
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    proc = subprocess.run([dagster, "definitions", "validate", "-f", EXAMPLE], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "GPUFABRIC_URL": ""})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "passed validation" in proc.stdout + proc.stderr


def test_schedule_evaluates(example):
    schedule = example.nightly_embeddings
    assert schedule.cron_schedule == "0 3 * * *"
    data = schedule.evaluate_tick(build_schedule_context())
    assert len(data.run_requests) == 1
    assert example.defs.resolve_job_def("embeddings_job").name == schedule.job_name


def test_example_assets_materialize(example, fabric_server):
    defs = example.defs
    with example.PipesGpuFabricClient(url=fabric_server.url, token=fabric_server.token) as pipes:
        resources = {"gpu_fabric": example.GpuFabricResource(url=fabric_server.url, token=fabric_server.token), "pipes": pipes}
        result = materialize([example.documents, example.embeddings, example.model], resources=resources,
                             instance=DagsterInstance.ephemeral())
    assert result.success
    assert result.output_for_node("embeddings") == [example.embed(t) for t in example.documents()]
    checks = result.get_asset_check_evaluations()
    assert checks and checks[0].passed
    assert defs.resolve_job_def("finetune_job").executor_def.name == "gpu_fabric"
