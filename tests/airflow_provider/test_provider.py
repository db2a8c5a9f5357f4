"""Provider registration: the entry point, the schema, and what Airflow's providers manager sees."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import airflow_provider


def test_provider_info_matches_airflow_schema():
    import jsonschema
    from airflow import providers_manager

    schema_path = os.path.join(os.path.dirname(providers_manager.__file__), "provider_info.schema.json")
    with open(schema_path) as f:
        jsonschema.validate(airflow_provider.get_provider_info(), json.load(f))


def test_entry_point_points_at_get_provider_info():
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_provider")]
    assert [ep.value for ep in eps] == ["airflow_provider:get_provider_info"]
    assert eps[0].load() is airflow_provider.get_provider_info


def test_providers_manager_registers_everything():
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "gpu-fabric" in pm.providers
    hook = pm.hooks["gpu_fabric"]
    assert hook.hook_class_name == "airflow_provider.hook.GpuFabricHook"
    assert hook.connection_id_attribute_name == "gpu_fabric_conn_id"
    behaviour = pm.field_behaviours["gpu_fabric"]
    assert behaviour["relabeling"]["password"] == "Token"
    assert "extra__gpu_fabric__dashboard_url" in pm.connection_form_widgets
    assert "airflow_provider.links.GpuFabricCallLink" in pm.extra_links_class_names
    assert any(t.trigger_class_name == "airflow_provider.trigger" for t in pm.trigger)


def test_task_decorator_is_available_as_task_gpu_fabric():
    from airflow.sdk import task

    from airflow_provider.decorator import gpu_fabric_task

    assert task.gpu_fabric is gpu_fabric_task


def test_airflow_providers_list_shows_it():
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    if not os.path.exists(airflow):
        pytest.skip("the airflow CLI is not next to this Python")
    out = subprocess.run([airflow, "providers", "list", "-o", "json"], capture_output=True, text=True, timeout=120,
                         env=os.environ.copy())
    assert out.returncode == 0, out.stderr[-2000:]
    assert "gpu-fabric" in out.stdout


def test_import_is_light():
    # Airflow reads get_provider_info in many processes; it must not pull in the operators.
    code = ("import sys, airflow_provider; airflow_provider.get_provider_info(); "
            "print('airflow_provider.operator' in sys.modules, 'grpc' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr[-2000:]
