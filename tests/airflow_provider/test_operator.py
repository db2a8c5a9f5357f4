"""GpuFunctionOperator outside a DAG run: arguments, deferral, reconnection, results and errors."""
from __future__ import annotations

import pytest
from airflow.sdk.exceptions import TaskDeferred

import core_executor as fabric
from airflow_provider import GpuFunctionCallTrigger, GpuFunctionOperator
from airflow_provider.exceptions import CallFailedError, GpuFabricAirflowError
from airflow_provider.operator import CALL_ID_STATE_KEY, CALL_ID_XCOM_KEY
from tests.airflow_provider.helpers import FakeStateStore, context


def triple(x: int) -> int:
    return 3 * x


# ---- arguments (no fabric) ----

def test_needs_a_function():
    with pytest.raises(ValueError, match="app_name and function_name .* or python_callable"):
        GpuFunctionOperator(task_id="t")
    with pytest.raises(ValueError):
        GpuFunctionOperator(task_id="t", app_name="only-app")


def test_rejects_bad_argument_types():
    with pytest.raises(TypeError, match="function_args"):
        GpuFunctionOperator(task_id="t", python_callable=triple, function_args="abc")
    with pytest.raises(TypeError, match="function_kwargs"):
        GpuFunctionOperator(task_id="t", python_callable=triple, function_kwargs=[1])
    with pytest.raises(TypeError, match="python_callable"):
        GpuFunctionOperator(task_id="t", python_callable=42)


def test_overrides_become_function_options():
    op = GpuFunctionOperator(task_id="t", python_callable=triple, gpu="A100", timeout="60", function_retries="2",
                             memory=1024, function_options={"max_containers": 3})
    assert op._overrides() == {"gpu": "A100", "timeout": 60, "retries": 2, "memory": 1024, "max_containers": 3}


def test_override_given_twice_is_an_error():
    op = GpuFunctionOperator(task_id="t", python_callable=triple, gpu="A100", function_options={"gpu": "H100"})
    with pytest.raises(ValueError, match="gpu given both"):
        op._overrides()


def test_templated_fields_cover_arguments_and_overrides():
    fields = set(GpuFunctionOperator.template_fields)
    assert {"function_args", "function_kwargs", "map_inputs", "gpu", "timeout", "function_retries"} <= fields


def test_rendered_arguments_must_have_the_right_shape():
    op = GpuFunctionOperator(task_id="t", python_callable=triple)
    op.function_args = "rendered-to-a-string"
    with pytest.raises(GpuFabricAirflowError, match="function_args rendered to str"):
        op._call_arguments()


def test_import_path_callable():
    op = GpuFunctionOperator(task_id="t", python_callable="tests.airflow_provider.test_operator:triple")
    assert op.python_callable == "tests.airflow_provider.test_operator:triple"
    from airflow_provider.operator import _import_callable

    assert _import_callable("tests.airflow_provider.test_operator:triple") is triple
    assert _import_callable("tests.airflow_provider.test_operator.triple") is triple


# ---- against a real fabric ----

def test_deferrable_execute_spawns_then_defers(fabric_conn, deployed_app):
    op = GpuFunctionOperator(task_id="t", app_name="airflow-provider-tests", function_name="double",
                             function_args=[21], poll_interval=3, unreachable_timeout=7)
    ctx = context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    trigger = deferred.value.trigger
    assert isinstance(trigger, GpuFunctionCallTrigger)
    assert deferred.value.method_name == "execute_complete"
    call_id = ctx["ti"].xcoms[CALL_ID_XCOM_KEY]
    assert trigger.call_id == call_id and call_id.startswith("fc-")
    assert (trigger.gpu_fabric_conn_id, trigger.poll_interval, trigger.unreachable_timeout) == ("gpu_fabric_default", 3, 7)
    assert ctx["task_state_store"].get(CALL_ID_STATE_KEY) == call_id
    assert ctx["ti"].xcoms["_link_GpuFabricCallLink"].endswith(f"/calls/{call_id}")
    # Back from the trigger: the result, and the stored call id is cleared.
    assert op.execute_complete(ctx, {"status": "done", "state": "succeeded", "call_id": call_id}) == 42
    assert ctx["task_state_store"].get(CALL_ID_STATE_KEY) is None


def test_execute_complete_raises_the_remote_exception(fabric_conn, deployed_app):
    op = GpuFunctionOperator(task_id="t", app_name="airflow-provider-tests", function_name="fail",
                             function_args=["boom on the fabric"])
    ctx = context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    call_id = deferred.value.trigger.call_id
    with pytest.raises(ValueError, match="boom on the fabric") as raised:
        op.execute_complete(ctx, {"status": "done", "state": "failed", "call_id": call_id})
    assert "Traceback" in str(raised.value.__cause__)  # the remote traceback travels along


def test_execute_complete_error_event_fails_the_task(fabric_conn):
    op = GpuFunctionOperator(task_id="t", app_name="a", function_name="f")
    with pytest.raises(GpuFabricAirflowError, match="unreachable for 300 s"):
        op.execute_complete(context(), {"status": "error", "call_id": "fc-x", "message": "unreachable for 300 s"})
    with pytest.raises(CallFailedError, match="was cancelled"):
        op.execute_complete(context(), {"status": "done", "state": "cancelled", "call_id": "fc-x",
                                        "message": "call fc-x was cancelled"})


def test_not_deferrable_returns_the_result_and_logs(fabric_conn, deployed_app, capsys):
    op = GpuFunctionOperator(task_id="t", app_name="airflow-provider-tests", function_name="double",
                             function_kwargs={"x": 5}, deferrable=False)
    assert op.execute(context()) == 10
    assert "[double] doubling 5" in capsys.readouterr().out  # Airflow's task logger writes there


def test_not_deployed_app_lists_deployed_apps(fabric_conn, deployed_app):
    op = GpuFunctionOperator(task_id="t", app_name="no-such-app", function_name="double", deferrable=False)
    with pytest.raises(fabric.exception.NotFoundError, match=r"not deployed .*airflow-provider-tests"):
        op.execute(context())


def test_missing_function_lists_the_apps_functions(fabric_conn, deployed_app):
    op = GpuFunctionOperator(task_id="t", app_name="airflow-provider-tests", function_name="triple", deferrable=False)
    with pytest.raises(fabric.exception.NotFoundError, match=r"no function 'triple'.*double, fail, slow"):
        op.execute(context())


def test_overrides_on_a_deployed_function_are_refused(fabric_conn, deployed_app):
    if hasattr(fabric.Function, "with_options"):
        pytest.skip("the SDK can override a deployed function's options")
    op = GpuFunctionOperator(task_id="t", app_name="airflow-provider-tests", function_name="double",
                             function_args=[1], gpu="H100", deferrable=False)
    with pytest.raises(GpuFabricAirflowError, match="deployed with"):
        op.execute(context())


def test_callable_runs_on_the_fabric(fabric_conn):
    op = GpuFunctionOperator(task_id="triple_it", python_callable=triple, function_args=[7], gpu="H100",
                             deferrable=False)
    assert op.execute(context()) == 21


def test_map_inputs_fan_out_in_one_call(fabric_conn):
    op = GpuFunctionOperator(task_id="triple_all", python_callable=triple, map_inputs=[1, 2, 3], deferrable=False)
    assert op.execute(context()) == [3, 6, 9]
    with pytest.raises(GpuFabricAirflowError, match="empty"):
        GpuFunctionOperator(task_id="x", python_callable=triple, map_inputs=[], deferrable=False).execute(context())


def test_retry_reconnects_to_the_running_call(fabric_conn, deployed_app, client):
    op = GpuFunctionOperator(task_id="t", app_name="airflow-provider-tests", function_name="slow",
                             function_args=[2.0])
    store = FakeStateStore()
    with pytest.raises(TaskDeferred) as try1:
        op.execute(context(store))
    started = try1.value.trigger.call_id
    # Try 2 (the worker died, say): the same call, not a second one.
    with pytest.raises(TaskDeferred) as try2:
        GpuFunctionOperator(task_id="t", app_name="airflow-provider-tests", function_name="slow",
                            function_args=[2.0]).execute(context(store))
    assert try2.value.trigger.call_id == started
    # Once the call has failed, a retry starts afresh.
    fabric.FunctionCall.from_id(started, client=client).cancel()
    with pytest.raises(TaskDeferred) as try3:
        op.execute(context(store))
    assert try3.value.trigger.call_id != started
    fabric.FunctionCall.from_id(try3.value.trigger.call_id, client=client).cancel()


def test_on_kill_cancels_the_call(fabric_conn, deployed_app, client):
    from airflow_provider import _calls

    op = GpuFunctionOperator(task_id="t", app_name="airflow-provider-tests", function_name="slow",
                             function_args=[30.0])
    with pytest.raises(TaskDeferred):
        op.execute(context())
    op.on_kill()
    assert _calls.call_status(client, op.call_id).state == "cancelled"
