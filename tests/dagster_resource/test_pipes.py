"""PipesGpuFabricClient: Pipes sessions whose remote side runs in a fabric container."""
import sys

import pytest
from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    DagsterInstance,
    asset,
    materialize,
)

from dagster_resource import PipesGpuFabricClient

from . import defs

pytestmark = pytest.mark.usefixtures("fabric_server")


@pytest.fixture
def pipes():
    """A client per test, closed after it (its app stops while the fabric is still up)."""
    with PipesGpuFabricClient() as client:
        yield client


def metadata_of(result, key: str) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    assert events
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


def test_pipes_function_reports_materialization_check_and_logs(pipes):
    @asset(check_specs=[AssetCheckSpec("loss_is_small", asset="trained")])
    def trained(context: AssetExecutionContext, pipes: PipesGpuFabricClient):
        return pipes.run(context=context, function=defs.pipes_train, extras={"epochs": 3}, gpu="A100").get_materialize_result()

    instance = DagsterInstance.ephemeral()
    result = materialize([trained], resources={"pipes": pipes}, instance=instance)
    assert result.success
    meta = metadata_of(result, "trained")
    assert meta["epochs"] == 3 and meta["loss"] == 0.125 and meta["container"] == "1"
    assert meta["gpu_fabric/gpu"] == "A100-80GB" and meta["gpu_fabric/call_seconds"] > 0
    assert 0 < meta["gpu_fabric/gpu_seconds"] <= meta["gpu_fabric/call_seconds"] and meta["gpu_fabric/cost_usd"] == 0.0
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 1 and checks[0].passed and checks[0].check_name == "loss_is_small"
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("training for 3 epochs on '0'" in m for m in messages), messages


def test_pipes_runs_of_one_client_share_its_app_and_report_billed_gpu_seconds():
    nap_s = 0.4

    def pipes_asset(name: str):
        @asset(name=name)
        def napped(context: AssetExecutionContext, pipes: PipesGpuFabricClient):
            return pipes.run(context=context, function=defs.pipes_nap, args=(nap_s,)).get_materialize_result()

        return napped

    with PipesGpuFabricClient(gpu="A100", app_name="dagster-pipes-reuse") as pipes:
        first = materialize([pipes_asset("first")], resources={"pipes": pipes}, instance=DagsterInstance.ephemeral())
        second = materialize([pipes_asset("second")], resources={"pipes": pipes}, instance=DagsterInstance.ephemeral())
        assert first.success and second.success
        one, two = metadata_of(first, "first"), metadata_of(second, "second")
        # The second run found the first run's warm container: one app for the client, not one per run.
        assert one["pid"] == two["pid"]
        assert len(pipes._pool._functions) == 1
        for meta in (one, two):
            assert nap_s <= meta["gpu_fabric/gpu_seconds"] < nap_s + 3.0
            assert meta["gpu_fabric/gpu"] == "A100-80GB" and meta["gpu_fabric/cost_usd"] == 0.0
    assert pipes._pool is None  # closed with the `with` block


def test_pipes_command(pipes):
    @asset
    def counted(context: AssetExecutionContext, pipes: PipesGpuFabricClient):
        return pipes.run(context=context, command=[sys.executable, "-c", defs.PIPES_SCRIPT]).get_materialize_result()

    result = materialize([counted], resources={"pipes": pipes}, instance=DagsterInstance.ephemeral())
    assert result.success
    assert metadata_of(result, "counted")["rows"] == 42


def test_remote_that_never_opens_the_session_is_a_clear_error(pipes):
    @asset
    def silent(context: AssetExecutionContext, pipes: PipesGpuFabricClient):
        return pipes.run(context=context, function=defs.pipes_never_opens).get_materialize_result()

    result = materialize([silent], resources={"pipes": pipes}, instance=DagsterInstance.ephemeral(),
                         raise_on_error=False)
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    text = failure.step_failure_data.error.to_string()
    assert "PipesSessionNotOpenedError" in text and "open_dagster_pipes" in text


def test_remote_failure_in_pipes_function(pipes):
    @asset
    def failing(context: AssetExecutionContext, pipes: PipesGpuFabricClient):
        return pipes.run(context=context, function=defs.explode, args=("pipes kaboom",)).get_materialize_result()

    result = materialize([failing], resources={"pipes": pipes}, instance=DagsterInstance.ephemeral(),
                         raise_on_error=False)
    assert not result.success
    text = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0].step_failure_data.error.to_string()
    assert "RemoteBoom" in text and "pipes kaboom" in text


def test_run_takes_function_or_command():
    client = PipesGpuFabricClient()
    with pytest.raises(TypeError, match="exactly one"):
        client.run(context=None, function=defs.square, command=["true"])  # type: ignore[arg-type]
