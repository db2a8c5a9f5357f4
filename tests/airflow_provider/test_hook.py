"""GpuFabricHook: connection fields, environment fallback, errors that name what is missing."""
from __future__ import annotations

import os

import pytest

from airflow_provider.exceptions import ConnectionConfigError
from airflow_provider.hook import GpuFabricHook, fabric_url
from tests.airflow_provider.conftest import connection_json


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for key in ("GPUFABRIC_URL", "GPUFABRIC_TOKEN", "AIRFLOW_CONN_GPU_FABRIC_DEFAULT"):
        monkeypatch.delenv(key, raising=False)


@pytest.mark.parametrize(
    "host, port, tls, expected",
    [
        ("grpc://fab:7373", None, False, "grpc://fab:7373"),
        ("fab", 7373, False, "grpc://fab:7373"),
        ("fab", 7373, True, "grpcs://fab:7373"),
        ("grpcs://fab", 443, False, "grpcs://fab:443"),
        ("http://fab:7373/", None, False, "grpc://fab:7373"),
        ("", 7373, False, ""),
    ],
)
def test_fabric_url_forms(host, port, tls, expected):
    assert fabric_url(host, port, tls) == expected


def test_connection_gives_url_and_token(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GPU_FABRIC_DEFAULT", connection_json("grpc://h:1", "tok"))
    assert GpuFabricHook().get_credentials() == ("grpc://h:1", "tok")


def test_connection_uri_form(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MY_FABRIC", "gpu-fabric://:s3cret@fabric.internal:7373")
    assert GpuFabricHook("my_fabric").get_credentials() == ("grpc://fabric.internal:7373", "s3cret")


def test_missing_token_names_connection_and_field(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MY_FABRIC", connection_json("grpc://h:1", ""))
    with pytest.raises(ConnectionConfigError, match=r"connection 'my_fabric' has no token"):
        GpuFabricHook("my_fabric").get_credentials()


def test_missing_url_names_connection_and_field(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MY_FABRIC", connection_json("", "tok"))
    with pytest.raises(ConnectionConfigError, match=r"connection 'my_fabric' has no fabric URL"):
        GpuFabricHook("my_fabric").get_credentials()


def test_env_fallback_without_connection(monkeypatch):
    monkeypatch.setenv("GPUFABRIC_URL", "grpc://envhost:9")
    monkeypatch.setenv("GPUFABRIC_TOKEN", "envtok")
    assert GpuFabricHook().get_credentials() == ("grpc://envhost:9", "envtok")


def test_env_fills_a_missing_token(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GPU_FABRIC_DEFAULT", connection_json("grpc://h:1", ""))
    monkeypatch.setenv("GPUFABRIC_TOKEN", "envtok")
    assert GpuFabricHook().get_credentials() == ("grpc://h:1", "envtok")


def test_no_connection_and_no_env():
    with pytest.raises(ConnectionConfigError, match=r"connection 'gpu_fabric_default' is not defined"):
        GpuFabricHook().get_credentials()


def test_call_url_uses_dashboard_extra(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GPU_FABRIC_DEFAULT",
                       connection_json("grpc://h:1", "t", dashboard_url="https://dash.example/"))
    assert GpuFabricHook().call_url("fc-1") == "https://dash.example/calls/fc-1"
    monkeypatch.setenv("AIRFLOW_CONN_GPU_FABRIC_DEFAULT", connection_json("grpc://h:1", "t"))
    assert GpuFabricHook().call_url("fc-1") == "http://h:1/calls/fc-1"


def test_client_is_built_per_process(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GPU_FABRIC_DEFAULT", connection_json("grpc://127.0.0.1:1", "t"))
    hook = GpuFabricHook()
    first = hook.get_conn()
    assert hook.get_conn() is first
    hook._client_pid = os.getpid() + 1  # as if this hook had been built before a fork
    second = hook.get_conn()
    assert second is not first
    hook.close()
    first.close()


def test_test_connection_against_a_real_fabric(fabric_server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GPU_FABRIC_DEFAULT", connection_json(fabric_server.url, fabric_server.token))
    ok, message = GpuFabricHook().test_connection()
    assert ok, message
    assert fabric_server.url in message
    monkeypatch.setenv("AIRFLOW_CONN_GPU_FABRIC_DEFAULT", connection_json(fabric_server.url, "wrong"))
    ok, message = GpuFabricHook().test_connection()
    assert not ok and "token" in message
