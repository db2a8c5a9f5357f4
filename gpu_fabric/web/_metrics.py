"""Prometheus text exposition of the fabric's state: queues, calls, containers, workers, GPU time, cost."""
from __future__ import annotations


def _labels(**labels: str) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34)).replace(chr(10), " ")}"'
                    for k, v in labels.items())
    return "{" + body + "}"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str, samples: list[tuple[dict, float]]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(**labels)} {float(value):.6g}")


def render(engine, history, web_responses) -> str:
    """The /metrics page (text format 0.0.4)."""
    out = _Writer()
    queue, containers = [], []
    for fn in engine.functions.values():
        app = engine.apps.get(fn.app_id)
        if app is None or (not fn.queue and not fn.containers):
            continue
        queued = sum(1 for i in fn.queue if (r := engine.inputs.get(i)) is not None and not r.container_id)
        queue.append(({"app": app.name, "function": fn.name}, queued))
    out.metric("gpufabric_queue_depth", "gauge", "Inputs waiting for a container, per function.", queue)
    out.metric("gpufabric_inputs_in_flight", "gauge", "Inputs queued or running.", [({}, len(engine.inputs))])
    out.metric("gpufabric_calls_finished_total", "counter", "Calls finished since the control plane started, by outcome.",
               [({"status": s}, n) for s, n in sorted(history.calls_by_status.items())])
    out.metric("gpufabric_inputs_finished_total", "counter", "Inputs finished since the control plane started, by outcome.",
               [({"status": s}, n) for s, n in sorted(history.inputs_by_status.items())])
    charges = engine.ledger.charges()
    starts: dict[str, int] = {}
    for charge in charges:
        if charge.kind == "container":
            # Reported by the container with its first ready exchange; cold until then.
            kind = getattr(charge, "start_kind", "") or "cold"
            starts[kind] = starts.get(kind, 0) + 1
    out.metric("gpufabric_container_starts_total", "counter", "Containers started, by kind of start (cold, fork_server, snapshot).",
               [({"kind": k}, n) for k, n in sorted(starts.items())] or [({"kind": "cold"}, 0)])
    for c in engine.containers.values():
        containers.append("ready" if c.ready else "starting")
    out.metric("gpufabric_containers", "gauge", "Containers now, by state.",
               [({"state": s}, containers.count(s)) for s in ("starting", "ready")])
    workers: dict[tuple[str, str], int] = {}
    for worker in engine.workers.values():
        key = (worker.info.provider or "local", "preempted" if not worker.capacity.accepting else "ready")
        workers[key] = workers.get(key, 0) + 1
    out.metric("gpufabric_workers", "gauge", "Registered workers, by provider and state.",
               [({"provider": p, "state": s}, n) for (p, s), n in sorted(workers.items())])
    out.metric("gpufabric_gpus", "gauge", "GPUs on registered workers.",
               [({}, sum(len(w.capacity.gpus) for w in engine.workers.values()))])
    out.metric("gpufabric_gpu_seconds_total", "counter", "GPU-seconds used by containers (running ones included).",
               [({}, sum(c.seconds * c.gpu_count for c in charges if c.kind == "container"))])
    cost: dict[str, float] = {}
    for charge in charges:
        cost[charge.kind] = cost.get(charge.kind, 0.0) + charge.usd
    out.metric("gpufabric_cost_usd_total", "counter", "USD charged per second, by kind (container share, launched instance).",
               [({"kind": k}, cost.get(k, 0.0)) for k in ("container", "instance")])
    out.metric("gpufabric_web_responses_total", "counter", "Web endpoint responses, by HTTP status.",
               [({"code": str(code)}, n) for code, n in sorted(web_responses.items())])
    return "\n".join(out.lines) + "\n"
