"""GpuFabricHook: the `gpu_fabric` connection (fabric URL and token) and a client per process."""
from __future__ import annotations

import os
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

import core_executor as fabric

from .exceptions import ConnectionConfigError

__all__ = ["GpuFabricHook", "fabric_url"]


def fabric_url(host: str, port: int | None, tls: bool = False) -> str:
    """`grpc://HOST:PORT` from a connection's host (a bare host or a full URL) and port."""
    host = (host or "").strip().rstrip("/")
    if not host:
        return ""
    if "://" in host:
        scheme, _, rest = host.partition("://")
        if scheme in ("http", "gpu_fabric", "gpu-fabric"):
            scheme = "grpc"
        elif scheme == "https":
            scheme = "grpcs"
        if port and ":" not in rest:
            rest = f"{rest}:{port}"
        return f"{scheme}://{rest}"
    if port and ":" not in host:
        host = f"{host}:{port}"
    return f"{'grpcs' if tls else 'grpc'}://{host}"


class GpuFabricHook(BaseHook):
    """Talks to a gpu-fabric control plane.

    The connection (type `gpu_fabric`, default id `gpu_fabric_default`) holds the fabric's URL in
    `host` (`grpc://HOST:PORT`, or a host plus `port`; `grpcs://` or extra `tls: true` for TLS) and
    its token in `password`. Extras: `dashboard_url` (where the call links point).
    Without such a connection the hook uses GPUFABRIC_URL / GPUFABRIC_TOKEN, like the SDK.
    The gRPC client is built per process (a channel does not survive fork).

    :param gpu_fabric_conn_id: the Airflow connection id.
    """

    conn_name_attr = "gpu_fabric_conn_id"
    default_conn_name = "gpu_fabric_default"
    conn_type = "gpu_fabric"
    hook_name = "GPU Fabric"

    def __init__(self, gpu_fabric_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gpu_fabric_conn_id = gpu_fabric_conn_id
        self._credentials: tuple[str, str, dict[str, Any]] | None = None
        self._client: fabric.Client | None = None
        self._client_pid = 0

    # ---- settings ----

    def _from_connection(self, conn: Any | None) -> tuple[str, str, dict[str, Any]]:
        extra: dict[str, Any] = {}
        url = token = ""
        if conn is not None:
            extra = dict(conn.extra_dejson or {})
            tls = str(extra.get("tls", "")).lower() in ("1", "true", "yes")
            url = fabric_url(conn.host or extra.get("url", ""), conn.port, tls)
            token = conn.password or extra.get("token", "") or ""
        env_url = os.environ.get("GPUFABRIC_URL", "").strip()
        env_token = os.environ.get("GPUFABRIC_TOKEN", "").strip()
        where = f"connection {self.gpu_fabric_conn_id!r}"
        if conn is None and not env_url:
            raise ConnectionConfigError(
                f"{where} is not defined and GPUFABRIC_URL is not set: create a `gpu_fabric` connection "
                f"(host grpc://HOST:PORT, password = the token `gpufabric serve` printed) or set "
                f"GPUFABRIC_URL and GPUFABRIC_TOKEN"
            )
        url = url or env_url
        token = token or env_token
        if not url:
            raise ConnectionConfigError(f"{where} has no fabric URL: set its host to grpc://HOST:PORT (or set GPUFABRIC_URL)")
        if not token:
            raise ConnectionConfigError(
                f"{where} has no token: set its password to the token `gpufabric serve` printed (or set GPUFABRIC_TOKEN)"
            )
        return url, token, extra

    def _connection_or_none(self) -> Any | None:
        try:
            return self.get_connection(self.gpu_fabric_conn_id)
        except AirflowNotFoundException:
            return None

    async def _aconnection_or_none(self) -> Any | None:
        try:
            return await self.aget_connection(self.gpu_fabric_conn_id)
        except AirflowNotFoundException:
            return None

    def get_credentials(self) -> tuple[str, str]:
        """The fabric's (url, token); ConnectionConfigError names what is missing."""
        if self._credentials is None:
            self._credentials = self._from_connection(self._connection_or_none())
        return self._credentials[0], self._credentials[1]

    async def aget_credentials(self) -> tuple[str, str]:
        """`get_credentials` for async code (the triggerer)."""
        if self._credentials is None:
            self._credentials = self._from_connection(await self._aconnection_or_none())
        return self._credentials[0], self._credentials[1]

    @property
    def url(self) -> str:
        """The fabric's gRPC URL."""
        return self.get_credentials()[0]

    def dashboard_url(self) -> str:
        """Where the fabric's dashboard is: the `dashboard_url` extra, else http:// on the fabric's host."""
        self.get_credentials()
        assert self._credentials is not None
        configured = str(self._credentials[2].get("dashboard_url") or "").rstrip("/")
        if configured:
            return configured
        url = self._credentials[0]
        scheme, _, rest = url.partition("://")
        return f"{'https' if scheme == 'grpcs' else 'http'}://{rest}"

    def call_url(self, call_id: str) -> str:
        """The dashboard page of one call."""
        return f"{self.dashboard_url()}/calls/{call_id}"

    # ---- client ----

    def get_conn(self) -> fabric.Client:
        """This process's client for the fabric (built again after a fork)."""
        if self._client is None or self._client_pid != os.getpid() or self._client.closed:
            url, token = self.get_credentials()
            self._client = fabric.Client(url, token)
            self._client_pid = os.getpid()
        return self._client

    def test_connection(self) -> tuple[bool, str]:
        """Ask the fabric for its version with the token (what the UI's Test button runs)."""
        try:
            client = fabric.Client(*self.get_credentials())
            try:
                hello = client.hello()
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 - the UI shows the message
            return False, str(exc)
        return True, f"connected to gpu-fabric {hello.server_version} at {client.url}"

    def close(self) -> None:
        """Close this process's client."""
        if self._client is not None and self._client_pid == os.getpid():
            self._client.close()
        self._client = None
