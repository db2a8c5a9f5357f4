"""DAGs the provider's tests run with dag.test(): a remote failure and the sensor."""
from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_provider import GpuFunctionOperator, GpuFunctionSensor

START = pendulum.datetime(2025, 1, 1, tz="UTC")

with DAG(dag_id="gpu_fabric_remote_failure", schedule=None, start_date=START, catchup=False):
    GpuFunctionOperator(task_id="fails", app_name="airflow-provider-tests", function_name="fail",
                        function_args=["remote boom"], poll_interval=2)

with DAG(dag_id="gpu_fabric_sensor", schedule=None, start_date=START, catchup=False):

    @task
    def start() -> str:
        from airflow_provider import GpuFabricHook
        from airflow_provider._calls import lookup_function

        return lookup_function(GpuFabricHook().get_conn(), "airflow-provider-tests", "double").spawn(8).object_id

    call_id = start()
    deferred = GpuFunctionSensor(task_id="wait_deferred", call_id="{{ ti.xcom_pull(task_ids='start') }}",
                                 poll_interval=2)
    poked = GpuFunctionSensor(task_id="wait_poking", call_id="{{ ti.xcom_pull(task_ids='start') }}",
                              deferrable=False, poke_interval=1, timeout=120)
    call_id >> [deferred, poked]
