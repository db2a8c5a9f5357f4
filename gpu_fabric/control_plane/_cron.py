"""Schedules of deployed functions: when each runs next, and starting exactly one run per tick.

Policy: a deployed function with `schedule=Cron(...)` or `Period(...)` runs at each tick after its
deployment. After downtime (control plane stopped, or busy) the ticks that were missed are not
replayed one by one: the latest missed tick runs once, then the schedule goes on. The last tick
that was started is committed together with its run, so a restart never runs a tick twice.
"""
from __future__ import annotations

import datetime as dt
import logging
import pickle
import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gpu_fabric.proto import client_pb2, common_pb2

from ._outcomes import FabricError

log = logging.getLogger("gpu_fabric.control_plane")

# A scheduled run's arguments: no arguments. Plain pickle loads with cloudpickle too.
NO_ARGS = pickle.dumps(((), {}), protocol=5)


@dataclass
class ScheduleRunRecord:
    function_id: str
    tick: float
    call_id: str
    started_at: float
    finished_at: float = 0.0
    status: int = 0
    error: str = ""


def validate_schedule(schedule) -> None:
    """INVALID_ARGUMENT for a cron expression or timezone that does not parse, or a bad period."""
    if schedule.cron and schedule.period_s:
        raise FabricError("INVALID_ARGUMENT", "a schedule is either a Cron or a Period, not both")
    if schedule.period_s < 0:
        raise FabricError("INVALID_ARGUMENT", "a Period must be positive")
    if schedule.cron:
        _zone(schedule.timezone)
        from croniter import croniter

        if not croniter.is_valid(schedule.cron):
            raise FabricError("INVALID_ARGUMENT", f"cron expression {schedule.cron!r} does not parse")


def _zone(name: str):
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise FabricError("INVALID_ARGUMENT", f"unknown timezone {name!r}; use an IANA name such as 'Europe/Paris'") from None


def has_schedule(spec) -> bool:
    return bool(spec.schedule.cron or spec.schedule.period_s)


def next_tick(schedule, after: float, anchor: float) -> float:
    """The first tick strictly after `after`. Periods count from `anchor` (the deployment)."""
    if schedule.period_s:
        if after < anchor:
            return anchor + schedule.period_s
        periods = int((after - anchor) // schedule.period_s) + 1
        return anchor + periods * schedule.period_s
    from croniter import croniter

    base = dt.datetime.fromtimestamp(after, _zone(schedule.timezone))
    return croniter(schedule.cron, base).get_next(dt.datetime).timestamp()


def due_tick(schedule, last_tick: float, anchor: float, now: float) -> float | None:
    """The tick to run now: the latest tick not after `now`, if it is after the last one run and
    after the deployment (`anchor`); None when nothing is due. Missed ticks before it are skipped."""
    if schedule.period_s:
        periods = int((now - anchor) // schedule.period_s)
        latest = anchor + periods * schedule.period_s
    else:
        from croniter import croniter

        base = dt.datetime.fromtimestamp(now + 0.001, _zone(schedule.timezone))
        latest = croniter(schedule.cron, base).get_prev(dt.datetime).timestamp()
    return latest if latest > max(last_tick, anchor) else None


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


class Schedules:
    """The part of the Engine that starts scheduled runs (a mixin over the Engine's calls)."""

    def _set_schedule_position(self, function_id: str, anchor: float, last_tick: float) -> None:
        self.schedule_positions[function_id] = (anchor, last_tick)
        self._pending_schedules[function_id] = (anchor, last_tick)
        self.schedule_flush()

    def run_schedules(self, now: float) -> None:
        """Start the run that is due for each deployed scheduled function (see _cron for the policy)."""
        for function_id, (anchor, last_tick) in list(self.schedule_positions.items()):
            fn = self.functions.get(function_id)
            if fn is None or not has_schedule(fn.spec):
                continue
            app = self.apps.get(fn.app_id)
            if app is None or app.state != client_pb2.APP_STATE_DEPLOYED:
                continue
            tick = due_tick(fn.spec.schedule, last_tick, anchor, now)
            if tick is None:
                continue
            call = self.create_call(function_id, client_pb2.CALL_KIND_SCHEDULED)
            inp = common_pb2.FunctionInput(args=NO_ARGS, python_version=self.container_python(fn))
            self.put_inputs(call, [inp], True, new_call=True)
            run = ScheduleRunRecord(function_id, tick, call.call_id, now)
            self._schedule_runs[call.call_id] = run
            self._pending_schedule_runs.append(run)
            # Committed with the run's input: a restart never starts this tick again.
            self._set_schedule_position(function_id, anchor, tick)
            self.system_log(fn.app_id, f"{fn.name}: scheduled run for {_iso(tick)} started ({call.call_id})", fn.name)

    def schedule_history(self, app, limit: int) -> list[tuple[str, ScheduleRunRecord]]:
        self.flush()
        names = {fid: fn.name for fid, fn in self.functions.items() if fn.app_id == app.app_id}
        return [(names[r.function_id], r) for r in self.store.schedule_runs(list(names), limit)]
