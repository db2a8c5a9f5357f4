"""GpuFunctionCallTrigger: serialize round trip, and run()/on_kill() against a real fabric."""
from __future__ import annotations

import asyncio
import importlib

import pytest

import core_executor as fabric
from airflow_provider import GpuFunctionCallTrigger, _calls
from tests.airflow_provider.conftest import connection_json


def _first_event(trigger: GpuFunctionCallTrigger, timeout: float = 120.0):
    async def first():
        agen = trigger.run()
        try:
            return await asyncio.wait_for(agen.__anext__(), timeout)
        finally:
            await agen.aclose()

    return asyncio.run(first()).payload


def test_serialize_round_trip():
    trigger = GpuFunctionCallTrigger(call_id="fc-1", gpu_fabric_conn_id="other", poll_interval=2,
                                     unreachable_timeout=30)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider.trigger.GpuFunctionCallTrigger"
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs == {"call_id": "fc-1", "gpu_fabric_conn_id": "other", "poll_interval": 2.0,
                      "unreachable_timeout": 30.0}


def test_serialized_kwargs_survive_airflow_serialization():
    from airflow.serialization.serialized_objects import BaseSerialization

    _, kwargs = GpuFunctionCallTrigger(call_id="fc-1").serialize()
    assert BaseSerialization.deserialize(BaseSerialization.serialize(kwargs)) == kwargs


def test_run_fires_when_the_call_is_done(fabric_conn, deployed_app):
    call = fabric.Function.from_name("airflow-provider-tests", "double")
    with _calls.fabric_env(fabric_conn.url, fabric_conn.token):
        call_id = call.spawn(4).object_id
    event = _first_event(GpuFunctionCallTrigger(call_id=call_id, poll_interval=2))
    assert event == {"status": "done", "state": "succeeded", "call_id": call_id, "message": ""}


def test_run_reports_a_failed_call_as_done(fabric_conn, deployed_app):
    with _calls.fabric_env(fabric_conn.url, fabric_conn.token):
        call_id = fabric.Function.from_name("airflow-provider-tests", "fail").spawn("nope").object_id
    event = _first_event(GpuFunctionCallTrigger(call_id=call_id, poll_interval=2))
    assert event["status"] == "done" and event["state"] == "failed" and "nope" in event["message"]


def test_run_unknown_call(fabric_conn):
    event = _first_event(GpuFunctionCallTrigger(call_id="fc-does-not-exist", poll_interval=1))
    assert event["status"] == "error" and "has no call fc-does-not-exist" in event["message"]


def test_run_gives_up_when_the_fabric_stays_unreachable(monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_GPU_FABRIC_DEFAULT", connection_json(f"grpc://127.0.0.1:{port}", "t"))
    event = _first_event(GpuFunctionCallTrigger(call_id="fc-1", poll_interval=1, unreachable_timeout=1), timeout=180)
    assert event["status"] == "error"
    assert "unreachable" in event["message"] and "retry the task to reconnect" in event["message"]


def test_run_with_a_bad_connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GPU_FABRIC_DEFAULT", connection_json("grpc://h:1", ""))
    monkeypatch.delenv("GPUFABRIC_TOKEN", raising=False)
    event = _first_event(GpuFunctionCallTrigger(call_id="fc-1"))
    assert event["status"] == "error" and "has no token" in event["message"]


def test_on_kill_cancels_but_cleanup_does_not(fabric_conn, deployed_app, client):
    with _calls.fabric_env(fabric_conn.url, fabric_conn.token):
        call_id = fabric.Function.from_name("airflow-provider-tests", "slow").spawn(30.0).object_id
    trigger = GpuFunctionCallTrigger(call_id=call_id, poll_interval=1)
    asyncio.run(trigger.cleanup())  # what a triggerer restart runs
    assert _calls.call_status(client, call_id).state == "running"
    asyncio.run(trigger.on_kill())  # what a user's mark-failed runs
    assert _calls.call_status(client, call_id).state == "cancelled"
