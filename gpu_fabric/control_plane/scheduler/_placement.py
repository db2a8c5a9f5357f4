"""Placement on registered workers (bin-packing over an index of free capacity) and container counts."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from gpu_fabric.providers.catalog import UnknownGpuType, load_catalog

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

    @property
    def gpu_type(self) -> str:
        return self.gpus[0].type.upper() if self.gpus else ""

    @property
    def gpus_free(self) -> int:
        return sum(1 for g in self.gpus if not g.in_use)


@dataclass
class Placement:
    worker_id: str
    gpu_indices: list[int]
    gpu_type: str
    cpu: float
    memory_mb: int


def resources_of(spec) -> tuple[float, int]:
    cpu = spec.cpu if spec.cpu > 0 else DEFAULT_CPU
    memory = spec.memory_mb if spec.memory_mb > 0 else DEFAULT_MEMORY_MB
    return cpu, memory


_TYPES_CACHE: dict[str, tuple[str, ...]] = {}


def acceptable_types(requested: str) -> tuple[str, ...]:
    """Catalog GPU types that satisfy `requested`, in preference order ("H100" -> H100, H200;
    "H100!" -> H100 only; "A100" -> both A100s). A type the catalog lacks matches itself only."""
    types = _TYPES_CACHE.get(requested)
    if types is None:
        try:
            types = load_catalog().resolve(requested).types
        except UnknownGpuType:
            types = (requested.rstrip("!").upper(),)
        _TYPES_CACHE[requested] = types
    return types


def _fits(worker: WorkerCapacity, cpu: float, memory: int) -> bool:
    return worker.accepting and worker.cpu_free + 1e-9 >= cpu and worker.memory_free_mb >= memory


def _take_gpus(worker: WorkerCapacity, gpu_type: str, count: int) -> list[int]:
    chosen = [g.index for g in worker.gpus if not g.in_use and g.type.upper() == gpu_type][:count]
    return chosen if len(chosen) == count else []


class WorkerIndex:
    """Registered workers bucketed by GPU type and free GPU count, so one placement costs a few
    dictionary lookups even with tens of thousands of workers.

    Bin-packing: the worker with the fewest free GPUs (or least free CPU) that still fits wins,
    keeping other workers whole for large requests and empty ones free to scale down.
    """

    def __init__(self) -> None:
        self.workers: dict[str, WorkerCapacity] = {}
        # gpu type -> free GPUs -> ordered set of worker ids (dict keys)
        self._gpu: dict[str, dict[int, dict[str, None]]] = {}
        self._cpu_only: dict[str, None] = {}
        self._free: dict[str, int] = {}
        self._most_gpus = 0
        # Parsed specs by id(spec): reading protobuf fields costs more than the placement itself.
        self._parsed: dict[int, tuple] = {}

    def __len__(self) -> int:
        return len(self.workers)

    def add(self, worker: WorkerCapacity) -> None:
        """Index `worker` (re-adding one already known refreshes it)."""
        self.remove(worker.worker_id)
        self.workers[worker.worker_id] = worker
        if worker.gpus:
            free = worker.gpus_free
            self._most_gpus = max(self._most_gpus, len(worker.gpus))
            self._free[worker.worker_id] = free
            self._gpu.setdefault(worker.gpu_type, {}).setdefault(free, {})[worker.worker_id] = None
        else:
            self._cpu_only[worker.worker_id] = None

    def remove(self, worker_id: str) -> None:
        worker = self.workers.pop(worker_id, None)
        if worker is None:
            return
        if worker.gpus:
            free = self._free.pop(worker_id)
            self._gpu[worker.gpu_type][free].pop(worker_id, None)
        else:
            self._cpu_only.pop(worker_id, None)

    def _rebucket(self, worker: WorkerCapacity) -> None:
        if not worker.gpus or worker.worker_id not in self.workers:
            return
        old, new = self._free[worker.worker_id], worker.gpus_free
        if old != new:
            buckets = self._gpu[worker.gpu_type]
            buckets[old].pop(worker.worker_id, None)
            buckets.setdefault(new, {})[worker.worker_id] = None
            self._free[worker.worker_id] = new

    def claim(self, worker: WorkerCapacity, placement: Placement) -> None:
        claim(worker, placement)
        self._rebucket(worker)

    def release(self, worker: WorkerCapacity, placement: Placement) -> None:
        release(worker, placement)
        self._rebucket(worker)

    def _best_gpu_worker(self, gpu_type: str, count: int, cpu: float, memory: int) -> WorkerCapacity | None:
        buckets = self._gpu.get(gpu_type)
        if not buckets:
            return None
        for free in range(count, self._most_gpus + 1):
            bucket = buckets.get(free)
            if not bucket:
                continue
            for wid in bucket:
                worker = self.workers[wid]
                if _fits(worker, cpu, memory):
                    return worker
        return None

    def _best_cpu_worker(self, cpu: float, memory: int) -> WorkerCapacity | None:
        best = None
        for wid in self._cpu_only:
            worker = self.workers[wid]
            if _fits(worker, cpu, memory) and (best is None or worker.cpu_free < best.cpu_free):
                best = worker
        if best is None:  # GPU machines may host CPU-only containers when nothing else has room
            for buckets in self._gpu.values():
                for bucket in buckets.values():
                    for wid in bucket:
                        worker = self.workers[wid]
                        if _fits(worker, cpu, memory):
                            return worker
        return best

    def place(self, spec) -> tuple[Placement | None, str]:
        """Pick a worker for one container of `spec`, or say why none fits now.

        GPU requests are tried in the order given (the user's fallback list); within one, exact
        types before upgrades; among workers, the fullest that fits.
        """
        cpu, memory, requests = self._parse(spec)
        if not requests:
            worker = self._best_cpu_worker(cpu, memory)
            if worker is not None:
                return Placement(worker.worker_id, [], "", cpu, memory), ""
            return None, "no worker has room for " + _describe(None, cpu, memory)
        for count, types, _ in requests:
            for gpu_type in types or tuple(self._gpu):
                worker = self._best_gpu_worker(gpu_type, count, cpu, memory)
                if worker is not None:
                    indices = _take_gpus(worker, gpu_type, count)
                    if indices:
                        return Placement(worker.worker_id, indices, worker.gpus[0].type, cpu, memory), ""
        return None, "no worker has room for " + " or ".join(_describe(r, cpu, memory) for _, _, r in requests)

    def _parse(self, spec) -> tuple:
        cached = self._parsed.get(id(spec))
        if cached is not None and cached[0] is spec:
            return cached[1]
        cpu, memory = resources_of(spec)
        requests = []
        for request in spec.gpus:
            any_type = request.type.strip().upper() in ("ANY", "")
            requests.append((max(1, request.count), () if any_type else acceptable_types(request.type), request))
        parsed = (cpu, memory, requests)
        if len(self._parsed) > 10_000:  # specs of functions long gone
            self._parsed.clear()
        self._parsed[id(spec)] = (spec, parsed)
        return parsed

    def could_ever_fit(self, spec) -> bool:
        """True if some worker would fit `spec` once it is empty."""
        return could_ever_fit(spec, list(self.workers.values()))


def place(spec, workers: list[WorkerCapacity]) -> tuple[Placement | None, str]:
    """`WorkerIndex.place` over a plain list of workers."""
    index = WorkerIndex()
    for worker in workers:
        index.add(worker)
    return index.place(spec)


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


def desired_containers(spec, *, queued: int, running: int, avg_duration_s: float | None) -> int:
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
