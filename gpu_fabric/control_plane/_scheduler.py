"""Placement of containers on workers and how many containers a function needs (pure logic)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

DEFAULT_CPU = 0.125
DEFAULT_MEMORY_MB = 128
# Containers a function may have starting at once: starts are expensive (a Python process each),
# and a burst of short inputs is often drained by the first containers before more would help.
MAX_PARALLEL_STARTS = 4
# Aim to drain the queue within this many seconds, given the measured time per input.
DRAIN_TARGET_S = 2.0


@dataclass
class GpuSlot:
    index: int
    type: str
    in_use: bool = False


@dataclass
class WorkerCapacity:
    """What one worker has free for new containers."""

    worker_id: str
    cpu_total: float
    memory_total_mb: int
    gpus: list[GpuSlot] = field(default_factory=list)
    cpu_used: float = 0.0
    memory_used_mb: int = 0
    accepting: bool = True

    @property
    def cpu_free(self) -> float:
        return self.cpu_total - self.cpu_used

    @property
    def memory_free_mb(self) -> int:
        return self.memory_total_mb - self.memory_used_mb


@dataclass
class Placement:
    worker_id: str
    gpu_indices: list[int]
    gpu_type: str
    cpu: float
    memory_mb: int


def _gpu_matches(requested: str, offered: str) -> bool:
    requested, offered = requested.upper(), offered.upper()
    if requested in ("ANY", ""):
        return True
    # "A100" accepts either A100 variant; "A100-80GB" only that one.
    return offered == requested or offered.startswith(requested + "-")


def resources_of(spec) -> tuple[float, int]:
    cpu = spec.cpu if spec.cpu > 0 else DEFAULT_CPU
    memory = spec.memory_mb if spec.memory_mb > 0 else DEFAULT_MEMORY_MB
    return cpu, memory


def place(spec, workers: list[WorkerCapacity]) -> tuple[Placement | None, str]:
    """Pick a worker for one container of `spec`, or say why none fits now.

    GPU requests are tried in the order given (the user's fallback list); among workers that fit,
    the one with the most free CPU wins, spreading load.
    """
    cpu, memory = resources_of(spec)
    requests = list(spec.gpus) or [None]
    reasons = []
    for request in requests:
        best: tuple[float, Placement] | None = None
        for worker in workers:
            if not worker.accepting:
                continue
            if worker.cpu_free + 1e-9 < cpu or worker.memory_free_mb < memory:
                continue
            indices: list[int] = []
            gpu_type = ""
            if request is not None:
                free = [g for g in worker.gpus if not g.in_use and _gpu_matches(request.type, g.type)]
                if len(free) < max(1, request.count):
                    continue
                chosen = free[: max(1, request.count)]
                indices = [g.index for g in chosen]
                gpu_type = chosen[0].type
            candidate = Placement(worker.worker_id, indices, gpu_type, cpu, memory)
            if best is None or worker.cpu_free > best[0]:
                best = (worker.cpu_free, candidate)
        if best is not None:
            return best[1], ""
        reasons.append(_describe(request, cpu, memory))
    return None, "no worker has room for " + " or ".join(reasons)


def _describe(request, cpu: float, memory: int) -> str:
    gpu = f"{max(1, request.count)}x {request.type} GPU, " if request is not None else ""
    return f"{gpu}{cpu:g} CPU and {memory} MiB"


def could_ever_fit(spec, workers: list[WorkerCapacity]) -> bool:
    """True if some worker would fit `spec` once it is empty."""
    empty = [
        WorkerCapacity(w.worker_id, w.cpu_total, w.memory_total_mb, [GpuSlot(g.index, g.type) for g in w.gpus])
        for w in workers
        if w.accepting
    ]
    return place(spec, empty)[0] is not None


def claim(worker: WorkerCapacity, placement: Placement) -> None:
    worker.cpu_used += placement.cpu
    worker.memory_used_mb += placement.memory_mb
    for g in worker.gpus:
        if g.index in placement.gpu_indices:
            g.in_use = True


def release(worker: WorkerCapacity, placement: Placement) -> None:
    worker.cpu_used = max(0.0, worker.cpu_used - placement.cpu)
    worker.memory_used_mb = max(0, worker.memory_used_mb - placement.memory_mb)
    for g in worker.gpus:
        if g.index in placement.gpu_indices:
            g.in_use = False


def desired_containers(
    spec, *, queued: int, running: int, avg_duration_s: float | None
) -> int:
    """How many containers the function should have now.

    Each container runs `max_concurrent_inputs` at once. With no timing yet every input may need a
    container; once durations are known, only as many as drain the queue within DRAIN_TARGET_S.
    """
    per_container = max(1, spec.target_concurrent_inputs or spec.max_concurrent_inputs or 1)
    busy = math.ceil(running / per_container)
    if queued:
        if avg_duration_s is None:
            extra = math.ceil(queued / per_container)
        else:
            extra = math.ceil(queued * avg_duration_s / (DRAIN_TARGET_S * per_container))
        need = busy + max(1, extra)
    else:
        need = busy
    if need or spec.min_containers:
        need += spec.buffer_containers
    need = max(need, spec.min_containers)
    if spec.max_containers:
        need = min(need, spec.max_containers)
    return need
