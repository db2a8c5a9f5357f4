"""gpu_fabric_executor: every step of a job runs as a fabric call, per-step resources from tags."""
from __future__ import annotations

import os

import pytest
from dagster import execute_job, instance_for_test, reconstructable

from dagster_resource._executor import options_from_tags

from . import defs

pytestmark = pytest.mark.usefixtures("fabric_server")


def test_options_from_tags():
    assert options_from_tags({"gpu_fabric/gpu": "A100", "gpu_fabric/memory": "2048", "other": "x"}) == {
        "gpu": "A100",
        "memory": 2048,
    }
    assert options_from_tags({}) == {}


def test_job_steps_run_on_the_fabric_with_per_step_gpus(tmp_path):
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        with execute_job(reconstructable(defs.gpu_job), instance=instance) as result:
            assert result.success, [e.message for e in result.all_events if e.is_failure]
            out = result.output_for_node("on_gpu")
            events = result.all_events
        assert out["value"] == 21
        assert out["container"] == "1" and out["cuda"] == "0"
        assert out["pid"] != os.getpid()
        starting = [e for e in events if e.event_type_value == "STEP_WORKER_STARTING"]
        assert {e.step_key for e in starting} == {"produce", "on_gpu"}
        gpu_event = [e for e in starting if e.step_key == "on_gpu"][0]
        assert gpu_event.event_specific_data.metadata["gpu_fabric/gpu"].value == "A100"
        # What the fabric billed for each step arrives as an engine event of that step.
        logged = [entry.dagster_event for entry in instance.all_logs(result.run_id) if entry.dagster_event]
        billed = {e.step_key: e.event_specific_data.metadata for e in logged
                  if e.event_type_value == "ENGINE_EVENT" and "gpu_fabric/gpu_seconds" in (e.event_specific_data.metadata or {})}
        assert set(billed) == {"produce", "on_gpu"}, billed
        on_gpu = billed["on_gpu"]
        assert on_gpu["gpu_fabric/gpu"].value.startswith("A100") and on_gpu["gpu_fabric/gpu_seconds"].value > 0
        assert on_gpu["gpu_fabric/container_seconds"].value >= on_gpu["gpu_fabric/gpu_seconds"].value / 8
        assert billed["produce"]["gpu_fabric/gpu_seconds"].value == 0 and "gpu_fabric/gpu" not in billed["produce"]


def test_failing_step_fails_the_run_with_the_remote_error(tmp_path):
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = execute_job(reconstructable(defs.failing_job), instance=instance, raise_on_error=False)
        assert not result.success
        failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        assert failures and failures[0].step_key == "fails_remotely"
        text = failures[0].step_failure_data.error.to_string()
        assert "RemoteBoom" in text and "step failed in its container" in text


def test_ephemeral_instance_is_refused():
    from dagster import DagsterInstance

    instance = DagsterInstance.ephemeral()
    result = execute_job(reconstructable(defs.gpu_job), instance=instance, raise_on_error=False)
    assert not result.success
    text = " ".join(str(entry.message) + str(getattr(entry.dagster_event, "event_specific_data", ""))
                    for entry in instance.all_logs(result.run_id))
    assert "non-ephemeral instance" in text
