"""The fabric's HTTP side: web endpoint gateway, dashboard and Prometheus metrics (see docs/web.md)."""
from ._gateway import WebGateway

__all__ = ["WebGateway"]
