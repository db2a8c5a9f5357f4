"""Real `dag.test()` runs of the example DAGs and the test DAGs against a real fabric."""
from __future__ import annotations

import pytest

from tests.airflow_provider.conftest import DAGS_FOLDER, EXAMPLES
from tests.airflow_provider.helpers import task_states, xcom_values

pytestmark = pytest.mark.orchestrators


def _dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(DAGS_FOLDER)
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id)


def test_example_dags_import_cleanly():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(EXAMPLES)
    assert not bag.import_errors, bag.import_errors
    assert {"gpu_fabric_cron", "gpu_fabric_taskflow", "gpu_fabric_mapped"} <= set(bag.dag_ids)
    cron = bag.get_dag("gpu_fabric_cron")
    assert cron.timetable.expression == "0 3 * * *"


def test_cron_dag_defers_and_returns_the_result(fabric_conn, capfd):
    run = _dag("gpu_fabric_cron").test()
    assert str(run.state) == "success", task_states(run)
    assert xcom_values(run, "embed") == {-1: [[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]]}
    assert xcom_values(run, "report") == {-1: 3}
    call_id = xcom_values(run, "embed", key="gpu_fabric_call_id")[-1]
    assert xcom_values(run, "embed", key="_link_GpuFabricCallLink")[-1].endswith(f"/calls/{call_id}")
    out = capfd.readouterr().out
    assert "Pausing task as DEFERRED" in out and "[embed] embedding 3 texts" in out


def test_taskflow_dag(fabric_conn):
    run = _dag("gpu_fabric_taskflow").test()
    assert str(run.state) == "success", task_states(run)
    assert xcom_values(run, "train") == {-1: {"loss": 0.5905, "steps": 5}}
    assert xcom_values(run, "evaluate") == {-1: "good"}  # the non-deferrable task


def test_mapped_dag(fabric_conn):
    run = _dag("gpu_fabric_mapped").test()
    assert str(run.state) == "success", task_states(run)
    assert xcom_values(run, "square") == {0: 1, 1: 4, 2: 9, 3: 16}
    assert xcom_values(run, "score_all") == {-1: [10, 40, 90, 160]}
    assert xcom_values(run, "total") == {-1: 330}


def test_remote_failure_fails_the_task_with_the_remote_traceback(fabric_conn, deployed_app, capfd):
    run = _dag("gpu_fabric_remote_failure").test()
    assert str(run.state) == "failed"
    assert task_states(run)[("fails", -1)] == "failed"
    out = capfd.readouterr()
    text = out.out + out.err
    assert "ValueError" in text and "remote boom" in text
    assert "fabric_apps.py" in text  # a frame of the remote traceback


def test_sensor_dag(fabric_conn, deployed_app):
    run = _dag("gpu_fabric_sensor").test()
    assert str(run.state) == "success", task_states(run)
    assert xcom_values(run, "wait_deferred") == {-1: 16}
    assert xcom_values(run, "wait_poking") == {-1: 16}
