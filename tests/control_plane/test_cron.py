"""Schedules: tick arithmetic, validation, and runs started by a real control plane in simulated time."""
from __future__ import annotations

import datetime as dt
import time

import grpc
import pytest

from core_executor import _serialization as ser
from gpu_fabric.control_plane._cron import due_tick, next_tick, validate_schedule
from gpu_fabric.control_plane._outcomes import FabricError
from gpu_fabric.proto import client_pb2, common_pb2, worker_pb2

from .conftest import RunningPlane
from .test_protocol import FakeContainer, _next_assignment, _register_worker

T0 = dt.datetime(2026, 1, 1, 12, 0, 30, tzinfo=dt.timezone.utc).timestamp()


def test_period_ticks_count_from_the_deployment():
    every_minute = common_pb2.Schedule(period_s=60)
    assert next_tick(every_minute, T0, T0) == T0 + 60
    assert due_tick(every_minute, 0, T0, T0 + 59) is None
    assert due_tick(every_minute, 0, T0, T0 + 61) == T0 + 60
    # Ten minutes of downtime: only the latest missed tick is due, once.
    assert due_tick(every_minute, T0 + 60, T0, T0 + 660) == T0 + 660
    assert due_tick(every_minute, T0 + 660, T0, T0 + 661) is None


def test_cron_ticks_in_a_timezone():
    hourly = common_pb2.Schedule(cron="0 * * * *", timezone="UTC")
    assert next_tick(hourly, T0, T0) == T0 + 3600 - 30
    paris_nine = common_pb2.Schedule(cron="0 9 * * *", timezone="Europe/Paris")
    tick = next_tick(paris_nine, T0, T0)
    assert dt.datetime.fromtimestamp(tick, dt.timezone.utc).hour == 8  # 09:00 CET is 08:00 UTC
    assert due_tick(hourly, 0, T0, T0 + 3 * 3600) == T0 - 30 + 3 * 3600


@pytest.mark.parametrize("schedule, message", [
    (common_pb2.Schedule(cron="61 * * * *"), "does not parse"),
    (common_pb2.Schedule(cron="0 * * * *", timezone="Mars/Olympus"), "unknown timezone"),
    (common_pb2.Schedule(cron="0 * * * *", period_s=60), "either a Cron or a Period"),
])
def test_bad_schedules_are_refused(schedule, message):
    with pytest.raises(FabricError, match=message):
        validate_schedule(schedule)


class FakeClock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _deploy_scheduled(plane, schedule):
    app_id = plane.client.AppCreate(client_pb2.AppCreateRequest(name="cron", kind=client_pb2.APP_KIND_DEPLOYED), metadata=plane.md).app_id
    spec = common_pb2.FunctionSpec(name="tick", schedule=schedule)
    definition = common_pb2.FunctionDefinition(kind=common_pb2.FunctionDefinition.KIND_SERIALIZED, pickled_function=b"x")
    plane.client.FunctionCreate(client_pb2.FunctionCreateRequest(app_id=app_id, spec=spec, definition=definition), metadata=plane.md)
    return app_id


def _history(plane, app_id):
    return list(plane.client.AppScheduleHistory(client_pb2.AppScheduleHistoryRequest(app_id=app_id), metadata=plane.md).runs)


def _wait(predicate, timeout=10.0):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline
        time.sleep(0.05)


def test_scheduled_runs_start_once_per_tick_across_restarts(tmp_path):
    clock = FakeClock(T0)
    data = str(tmp_path / "f")
    options = dict(clock=clock, heartbeat_timeout_s=1e9, app_heartbeat_timeout_s=1e9)
    plane = RunningPlane(data, **options)
    app_id = _deploy_scheduled(plane, common_pb2.Schedule(period_s=60))
    wid = _register_worker(plane)
    clock.now = T0 + 61
    container = FakeContainer(plane, _next_assignment(plane, wid).start.container_id)
    container.thread.start()
    _wait(lambda: any(r.finished_at for r in _history(plane, app_id)))
    (run,) = _history(plane, app_id)
    assert run.tick == T0 + 60 and run.function_name == "tick"
    assert run.status == common_pb2.RESULT_STATUS_SUCCESS
    container.stop.set()
    container.thread.join(5)
    plane.stop()

    # Ten minutes of downtime; after the restart the latest missed tick runs once, and only once.
    clock.now = T0 + 661
    plane = RunningPlane(data, **options)
    try:
        _wait(lambda: len(_history(plane, app_id)) == 2)
        time.sleep(1.0)  # several ticks of the control plane
        runs = _history(plane, app_id)
        assert [r.tick for r in runs] == [T0 + 660, T0 + 60]
    finally:
        plane.stop()
    plane = RunningPlane(data, **options)
    try:
        time.sleep(1.0)
        assert len(_history(plane, app_id)) == 2
    finally:
        plane.stop()


def test_schedules_of_ephemeral_apps_do_not_run(tmp_path):
    clock = FakeClock(T0)
    plane = RunningPlane(str(tmp_path / "f"), clock=clock, heartbeat_timeout_s=1e9, app_heartbeat_timeout_s=1e9)
    try:
        app_id = plane.client.AppCreate(client_pb2.AppCreateRequest(name="e", kind=client_pb2.APP_KIND_EPHEMERAL), metadata=plane.md).app_id
        spec = common_pb2.FunctionSpec(name="tick", schedule=common_pb2.Schedule(period_s=60))
        definition = common_pb2.FunctionDefinition(kind=common_pb2.FunctionDefinition.KIND_SERIALIZED, pickled_function=b"x")
        plane.client.FunctionCreate(client_pb2.FunctionCreateRequest(app_id=app_id, spec=spec, definition=definition), metadata=plane.md)
        clock.now = T0 + 600
        time.sleep(0.6)
        assert _history(plane, app_id) == []
        with pytest.raises(grpc.RpcError) as err:
            bad = common_pb2.FunctionSpec(name="bad", schedule=common_pb2.Schedule(cron="not cron"))
            plane.client.FunctionCreate(client_pb2.FunctionCreateRequest(app_id=app_id, spec=bad, definition=definition), metadata=plane.md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        plane.stop()
