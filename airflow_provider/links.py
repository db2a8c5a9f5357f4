"""GpuFabricCallLink: the "GPU Fabric call" button of a task, pointing at its call in the dashboard."""
from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink
from airflow.sdk.bases.xcom import BaseXCom

__all__ = ["GpuFabricCallLink"]


class GpuFabricCallLink(BaseOperatorLink):
    """Links a task to the fabric dashboard's page of the call it started.

    The operator stores the URL in XCom (`persist`) once the call exists; the UI reads it back.
    """

    name = "GPU Fabric call"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return BaseXCom.get_value(ti_key=ti_key, key=self.xcom_key) or ""

    @classmethod
    def persist(cls, context: Any, url: str) -> None:
        """Store the call's URL for this task instance."""
        context["ti"].xcom_push(key=cls().xcom_key, value=url)
