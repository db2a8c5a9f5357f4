"""Small fakes for calling operators outside a DAG run, and reading XComs after `dag.test()`."""
from __future__ import annotations

from typing import Any


class FakeTI:
    """Records xcom_push calls like a RuntimeTaskInstance."""

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


class FakeStateStore:
    """`task_state_store` of one task instance, kept across 'tries'."""

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        self.values = dict(values or {})

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


def context(store: FakeStateStore | None = None) -> dict[str, Any]:
    """The parts of an Airflow context the provider's operators use."""
    return {"ti": FakeTI(), "task_state_store": store if store is not None else FakeStateStore()}


def xcom_values(dag_run: Any, task_id: str, key: str = "return_value") -> dict[int, Any]:
    """{map_index: value} of a finished DAG run's XComs for one task."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(
            XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key=key)
        ).scalars().all()
        return {row.map_index: XComModel.deserialize_value(row) for row in rows}


def task_states(dag_run: Any) -> dict[tuple[str, int], str]:
    """{(task_id, map_index): state} of a finished DAG run."""
    return {(ti.task_id, ti.map_index): str(ti.state) for ti in dag_run.get_task_instances()}
