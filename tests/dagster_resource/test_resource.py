"""GpuFabricResource in real materializations against a real fabric."""
from __future__ import annotations

import os

import pytest
from dagster import (
    DagsterInstance,
    DagsterInvalidConfigError,
    EnvVar,
    asset,
    build_init_resource_context,
    materialize,
)

import core_executor as fabric
from dagster_resource import GpuFabricResource

from . import defs

pytestmark = pytest.mark.usefixtures("fabric_server")


def materialization_metadata(result, key: str) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    assert events, f"no materialization of {key}"
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


def test_call_map_spawn_values_and_metadata(fabric_server):
    @asset
    def squares(gpu_fabric: GpuFabricResource) -> list:
        one = gpu_fabric.call(defs.square, 7)
        many = gpu_fabric.map(defs.square, [1, 2, 3])
        later = gpu_fabric.spawn(defs.square, 5).get(timeout=120)
        return [one, *many, later]

    @asset
    def gpu_info(gpu_fabric: GpuFabricResource) -> dict:
        return gpu_fabric.options(gpu="A100").call(defs.where)

    resource = GpuFabricResource(url=fabric_server.url, token=EnvVar("GPUFABRIC_TOKEN"))
    result = materialize([squares, gpu_info], resources={"gpu_fabric": resource}, instance=DagsterInstance.ephemeral())
    assert result.success
    assert result.output_for_node("squares") == [49, 1, 4, 9, 25]
    assert result.output_for_node("gpu_info") == {"container": "1", "cuda": "0"}
    squares_meta = materialization_metadata(result, "squares")
    assert squares_meta["gpu_fabric/calls"] == 4  # spawn is not timed: it returns at once
    assert squares_meta["gpu_fabric/call_seconds"] > 0
    gpu_meta = materialization_metadata(result, "gpu_info")
    # The GPU the fabric ran it on (the simulated worker's A100-80GB for an "A100" request).
    assert gpu_meta["gpu_fabric/gpu"] == "A100-80GB" and gpu_meta["gpu_fabric/gpu_seconds"] > 0
    assert squares_meta["gpu_fabric/gpu_seconds"] == 0 and "gpu_fabric/gpu" not in squares_meta  # CPU only


NAP_S = 0.5


def test_gpu_seconds_metadata_is_what_the_fabric_billed(fabric_server):
    """gpu_seconds and cost_usd come from the fabric's usage report, not from the caller's clock."""
    usages = []

    @asset
    def napped(gpu_fabric: GpuFabricResource) -> list:
        gpu = gpu_fabric.options(gpu="A100")
        out = [gpu.call(defs.nap, NAP_S), *gpu.map(defs.nap, [NAP_S, NAP_S])]
        spawned = gpu.spawn(defs.nap, NAP_S)  # spawn is the caller's to account for
        spawned.get(timeout=120)
        usages.append(spawned.get_usage())
        return out

    resource = GpuFabricResource(url=fabric_server.url, token=fabric_server.token)
    result = materialize([napped], resources={"gpu_fabric": resource}, instance=DagsterInstance.ephemeral())
    assert result.success and result.output_for_node("napped") == [NAP_S] * 3
    meta = materialization_metadata(result, "napped")
    assert meta["gpu_fabric/calls"] == 3 and meta["gpu_fabric/gpu"] == "A100-80GB"
    # Three naps on one GPU each: billed from input handed over to output back, so a little over
    # the naps, and under the wall time the step waited (which includes starting a container).
    assert 3 * NAP_S <= meta["gpu_fabric/gpu_seconds"] < 3 * NAP_S + 3.0
    assert meta["gpu_fabric/container_seconds"] == pytest.approx(meta["gpu_fabric/gpu_seconds"])
    assert meta["gpu_fabric/gpu_seconds"] <= meta["gpu_fabric/call_seconds"]
    assert meta["gpu_fabric/cost_usd"] == 0.0  # the local worker's GPUs are priced $0
    (usage,) = usages
    assert isinstance(usage, fabric.CallUsage) and (usage.gpu_type, usage.gpu_count) == ("A100-80GB", 1)
    assert NAP_S <= usage.gpu_seconds < NAP_S + 3.0


def test_defaults_from_the_environment_and_a_deployed_function(fabric_server):
    app = fabric.App("dagster-deployed")
    app.function(name="triple")(defs.square)  # a deployed function, called by name
    app.deploy()

    @asset
    def from_deployed(gpu_fabric: GpuFabricResource) -> list:
        return [gpu_fabric.call("dagster-deployed/triple", 3), *gpu_fabric.map("dagster-deployed/triple", [4])]

    result = materialize([from_deployed], resources={"gpu_fabric": GpuFabricResource()}, instance=DagsterInstance.ephemeral())
    assert result.success
    assert result.output_for_node("from_deployed") == [9, 16]


def test_remote_failure_fails_the_step_with_the_remote_traceback():
    @asset
    def broken(gpu_fabric: GpuFabricResource) -> None:
        gpu_fabric.call(defs.explode, "kaboom from the fabric")

    result = materialize([broken], resources={"gpu_fabric": GpuFabricResource()},
                         instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    error = failure.step_failure_data.error
    text = str(error.to_string())
    assert "RemoteBoom" in text and "kaboom from the fabric" in text
    assert "explode" in text  # the remote frame is in the traceback


def test_missing_token_is_a_config_error_naming_the_field():
    resource = GpuFabricResource(url="grpc://127.0.0.1:1")
    with pytest.raises(DagsterInvalidConfigError, match="'token'"):
        resource.setup_for_execution(build_init_resource_context())

    @asset
    def needs_fabric(gpu_fabric: GpuFabricResource) -> int:
        return 1

    with pytest.raises(DagsterInvalidConfigError, match="'token'"):
        materialize([needs_fabric], resources={"gpu_fabric": resource}, instance=DagsterInstance.ephemeral())


def test_unset_env_var_token_names_the_variable():
    os.environ.pop("GPUFABRIC_TEST_UNSET_TOKEN", None)

    @asset
    def needs_fabric(gpu_fabric: GpuFabricResource) -> int:
        return 1

    resource = GpuFabricResource(url="grpc://127.0.0.1:1", token=EnvVar("GPUFABRIC_TEST_UNSET_TOKEN"))
    with pytest.raises(Exception, match="GPUFABRIC_TEST_UNSET_TOKEN"):
        materialize([needs_fabric], resources={"gpu_fabric": resource}, instance=DagsterInstance.ephemeral())


def test_container_output_lands_in_compute_logs(tmp_path):
    from dagster import instance_for_test

    @asset
    def printed(gpu_fabric: GpuFabricResource) -> int:
        return gpu_fabric.call(defs.square, 12)

    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = materialize([printed], resources={"gpu_fabric": GpuFabricResource()}, instance=instance)
        assert result.success
        captured = [e for e in result.all_events if e.event_type_value == "LOGS_CAPTURED"][0]
        file_key = captured.logs_captured_data.file_key
        log_key = [result.run_id, "compute_logs", file_key]
        stdout = instance.compute_log_manager.get_log_data(log_key).stdout or b""
    assert b"squaring 12 in the container" in stdout, stdout[-2000:]
