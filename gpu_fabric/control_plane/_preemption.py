"""Preemption in the control plane: draining a noticed worker and not charging its losses to users."""
from __future__ import annotations

import logging

from checkpointing import charge_attempt, classify_exit

log = logging.getLogger("gpu_fabric.control_plane")


def on_notice(engine, worker, deadline_s: float) -> None:
    """The worker will go away in `deadline_s`: no new containers or inputs go to it, and what its
    containers run is re-queued for free when they exit (they keep running through the grace)."""
    worker.preempting = True
    for cid in list(worker.containers):
        container = engine.containers.get(cid)
        if container is not None:
            # Shut down, not stopped: the container finishes or checkpoints what it holds, takes nothing new.
            engine._shutdown_container(container)
            fn = engine.functions.get(container.function_id)
            if fn is not None and container.held:
                engine.system_log(fn.app_id, f"{fn.name}: worker {worker.worker_id} got a preemption notice "
                                  f"({deadline_s:.0f}s); its inputs will re-run elsewhere without spending retries", fn.name)
    for fn in engine.functions.values():
        if fn.queue:
            engine.autoscale(fn)


def charge_exit(engine, container, req) -> bool:
    """False when the container's exit must not spend the user's retries (preemption, outside SIGKILL)."""
    worker = engine.workers.get(container.worker_id)
    kind = classify_exit(req.exit_code, preempting=bool(getattr(worker, "preempting", False)), requested=req.requested,
                         oom="out of memory" in (req.stderr_tail or "").lower())
    # A SIGKILL that is not an out-of-memory kill (the sandbox reports those) comes from outside the
    # user's code (an operator, a dying host): it is the infrastructure's loss, not the user's.
    if not charge_attempt(kind, free_kills=True):
        log.info("container %s exit (%s) re-queues its input for free", container.container_id, kind.value)
        return False
    return True
