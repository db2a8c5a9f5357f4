"""The dashboard's JSON: apps, functions, calls, workers, schedules, volumes, endpoints and cost."""
from __future__ import annotations

from gpu_fabric.proto import client_pb2, common_pb2

from ._history import STATUS_NAMES, CallHistory

_APP_KINDS = {client_pb2.APP_KIND_EPHEMERAL: "ephemeral", client_pb2.APP_KIND_DEPLOYED: "deployed"}
_APP_STATES = {client_pb2.APP_STATE_RUNNING: "running", client_pb2.APP_STATE_DEPLOYED: "deployed",
               client_pb2.APP_STATE_STOPPED: "stopped"}
_STREAMS = {common_pb2.LOG_STREAM_STDOUT: "stdout", common_pb2.LOG_STREAM_STDERR: "stderr", common_pb2.LOG_STREAM_SYSTEM: "system"}
COST_POINTS = 60


def _schedule_text(schedule) -> str:
    if schedule.cron:
        return f"cron {schedule.cron}" + (f" ({schedule.timezone})" if schedule.timezone else "")
    return f"every {schedule.period_s:g}s" if schedule.period_s else ""


class Dashboard:
    """Snapshots of the engine's state for the page (every read runs on the event loop)."""

    def __init__(self, engine, history: CallHistory, endpoints, url_for):
        self.engine = engine
        self.history = history
        self.endpoints = endpoints  # EndpointIndex
        self.url_for = url_for  # label -> URL

    def state(self) -> dict:
        """Everything the page shows, in one JSON object."""
        engine = self.engine
        return {
            "now": engine.clock(),
            "apps": self.apps(),
            "functions": self.functions(),
            "calls": self.history.recent(200),
            "workers": self.workers(),
            "schedules": self.schedules(),
            "volumes": self.volumes(),
            "endpoints": [
                {"label": ep.label, "url": self.url_for(ep.label), "app": ep.app_name, "function": ep.function_name,
                 "method": ep.method_name, "type": ep.config.get("type", ""), "requires_token": ep.requires_token}
                for ep in sorted(self.endpoints.endpoints().values(), key=lambda e: e.label)
            ],
            "cost": self.cost(),
        }

    def apps(self) -> list[dict]:
        engine = self.engine
        out = []
        for app in sorted(engine.apps.values(), key=lambda a: -a.created_at):
            fns = [f for f in engine.functions.values() if f.app_id == app.app_id]
            out.append({
                "app_id": app.app_id, "name": app.name, "kind": _APP_KINDS.get(app.kind, "?"),
                "state": _APP_STATES.get(app.state, "?"), "created_at": app.created_at, "stopped_at": app.stopped_at,
                "version": app.version, "functions": sorted(app.function_ids),
                "containers": sum(len(f.containers) for f in fns), "spend_usd": engine.ledger.spend(app=app.name),
            })
        return out

    def functions(self) -> list[dict]:
        engine = self.engine
        out = []
        for fn in engine.functions.values():
            app = engine.apps.get(fn.app_id)
            if app is None or app.state == client_pb2.APP_STATE_STOPPED:
                continue
            live = [engine.containers[c] for c in fn.containers if c in engine.containers]
            out.append({
                "function_id": fn.function_id, "app": app.name, "name": fn.name,
                "gpu": ", ".join(f"{g.type}:{g.count}" for g in fn.spec.gpus) or "-",
                "queued": len(fn.queue), "running": sum(len(c.held) for c in live),
                "containers": len(live), "ready": sum(1 for c in live if c.ready),
                "min_containers": fn.spec.min_containers, "web": bool(fn.spec.webhook_config_json),
                "schedule": _schedule_text(fn.spec.schedule), "avg_duration_s": fn.avg_duration_s,
            })
        return sorted(out, key=lambda f: (f["app"], f["name"]))

    def workers(self) -> list[dict]:
        engine = self.engine
        now = engine.clock()
        out = []
        for worker in engine.workers.values():
            info, capacity = worker.info, worker.capacity
            gpus: dict[str, int] = {}
            for slot in capacity.gpus:
                gpus[slot.type] = gpus.get(slot.type, 0) + 1
            out.append({
                "worker_id": worker.worker_id, "hostname": info.hostname, "provider": info.provider or "local",
                "region": info.region or "-", "instance_type": info.instance_type or "-",
                "gpus": ", ".join(f"{n}x {t}" for t, n in gpus.items()) or "-", "cpu": capacity.cpu_total,
                "price_per_hour": info.price_per_hour, "preemptible": info.preemptible,
                "preempted": not getattr(capacity, "accepting", True), "containers": len(worker.containers),
                "heartbeat_age_s": now - worker.last_heartbeat,
            })
        return sorted(out, key=lambda w: w["worker_id"])

    def schedules(self) -> list[dict]:
        engine = self.engine
        out = []
        for function_id, (anchor, last_tick) in engine.schedule_positions.items():
            fn = engine.functions.get(function_id)
            app = engine.apps.get(fn.app_id) if fn else None
            if fn is None or app is None or app.state == client_pb2.APP_STATE_STOPPED:
                continue
            runs = [
                {"tick": r.tick, "call_id": r.call_id, "started_at": r.started_at, "finished_at": r.finished_at,
                 "status": STATUS_NAMES.get(r.status, "running") if r.status else "running", "error": r.error}
                for _, r in engine.schedule_history(app, 50) if r.function_id == function_id
            ][:10]
            out.append({"app": app.name, "function": fn.name, "schedule": _schedule_text(fn.spec.schedule),
                        "last_tick": last_tick, "runs": runs})
        return out

    def volumes(self) -> list[dict]:
        # Volumes are listed when the control plane has a volume store (a later part of the fabric).
        store = getattr(self.engine, "volumes", None)
        lister = getattr(store, "list", None)
        if not callable(lister):
            return []
        try:
            return [v if isinstance(v, dict) else {"name": str(v)} for v in lister()]
        except Exception:  # noqa: BLE001 - the page shows the rest
            return []

    def cost(self) -> dict:
        """Cumulative USD over time (containers and launched machines), COST_POINTS points."""
        now = self.engine.clock()
        charges = self.engine.ledger.charges()
        start = min((c.started_at for c in charges), default=now - 60)
        start = max(start, now - 24 * 3600)
        span = max(now - start, 60.0)
        points = []
        for i in range(COST_POINTS + 1):
            t = now - span + span * i / COST_POINTS
            usd = sum(c.price_per_hour / 3600 * min(max(t - c.started_at, 0.0), c.seconds) for c in charges)
            points.append([t, usd])
        gpu_s = sum(c.seconds * c.gpu_count for c in charges if c.kind == "container")
        return {"points": points, "total_usd": points[-1][1], "gpu_seconds": gpu_s}

    def call_logs(self, call_id: str, limit: int = 2000) -> list[dict] | None:
        """The log lines of one call (None when the call is unknown)."""
        engine = self.engine
        call = engine.calls.get(call_id)
        summary = self.history.calls.get(call_id)
        app_id = summary.app_id if summary else ""
        if not app_id and call is not None:
            fn = engine.functions.get(call.function_id)
            app_id = fn.app_id if fn else ""
        app = engine.apps.get(app_id)
        if app is None:
            return None
        entries = [e for e in engine.logs_after(app, 0, 100_000) if e.call_id == call_id]
        return [{"t": e.timestamp, "stream": _STREAMS.get(e.stream, "?"), "function": e.function_name, "text": e.data}
                for e in entries[-limit:]]
