"""get_provider_info(): what Airflow's providers manager learns about this provider."""
from __future__ import annotations

from typing import Any

__all__ = ["get_provider_info"]


def get_provider_info() -> dict[str, Any]:
    """The provider description behind the `apache_airflow_provider` entry point."""
    from core_executor import __version__

    return {
        "package-name": "gpu-fabric",
        "name": "GPU Fabric",
        "description": "Run Airflow tasks as function calls on a self-hosted gpu-fabric (deferrable).",
        "versions": [__version__],
        "integrations": [
            {"integration-name": "GPU Fabric", "external-doc-url": "https://github.com/", "tags": ["compute"]}
        ],
        "operators": [{"integration-name": "GPU Fabric", "python-modules": ["airflow_provider.operator"]}],
        "sensors": [{"integration-name": "GPU Fabric", "python-modules": ["airflow_provider.sensor"]}],
        "hooks": [{"integration-name": "GPU Fabric", "python-modules": ["airflow_provider.hook"]}],
        "triggers": [{"integration-name": "GPU Fabric", "python-modules": ["airflow_provider.trigger"]}],
        "extra-links": ["airflow_provider.links.GpuFabricCallLink"],
        "connection-types": [
            {
                "connection-type": "gpu_fabric",
                "hook-class-name": "airflow_provider.hook.GpuFabricHook",
                "hook-name": "GPU Fabric",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "extra"],
                    "relabeling": {"host": "Fabric URL", "password": "Token"},
                    "placeholders": {
                        "host": "grpc://fabric.example.internal:7373",
                        "port": "7373 (when the URL has no port)",
                        "password": "the token `gpufabric serve` printed",
                        "dashboard_url": "http://fabric.example.internal:7374",
                    },
                },
                "conn-fields": {
                    "dashboard_url": {
                        "label": "Dashboard URL",
                        "description": "Where the fabric's dashboard is; task links point at its calls.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "tls": {
                        "label": "TLS (grpcs)",
                        "description": "Connect with TLS when the URL has no scheme.",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                },
            }
        ],
        "task-decorators": [{"class-name": "airflow_provider.decorator.gpu_fabric_task", "name": "gpu_fabric"}],
    }
