"""The scheduler: a request becomes ranked placements, on registered workers first, then on new capacity."""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Callable

from gpu_fabric.providers.catalog import Catalog, UnknownGpuType, load_catalog

from ._blocklist import Block, Blocklist
from ._capacity import Candidate, Unsatisfiable, check_satisfiable, rank, slots_of
from ._placement import (
    DEFAULT_CPU, DEFAULT_MEMORY_MB, DRAIN_TARGET_S, MAX_PARALLEL_STARTS, GpuSlot, Placement, WorkerCapacity,
    WorkerIndex, acceptable_types, claim, could_ever_fit, desired_containers, place, release, resources_of,
)

__all__ = [
    "Block", "Blocklist", "Candidate", "DEFAULT_CPU", "DEFAULT_MEMORY_MB", "DRAIN_TARGET_S", "Decision",
    "GpuSlot", "MAX_PARALLEL_STARTS", "Placement", "Scheduler", "UnknownGpuType", "Unsatisfiable",
    "WorkerCapacity", "WorkerIndex", "acceptable_types", "check_satisfiable", "claim", "could_ever_fit",
    "desired_containers", "place", "rank", "release", "resources_of", "slots_of",
]


@dataclass
class Decision:
    """Why capacity was (or was not) found for a function: shown in the app's log and kept here."""

    at: float
    app_id: str
    function: str
    action: str  # "launch", "failover", "wait", "budget", "timeout", "scale-down"
    detail: str
    reasons: list[str] = field(default_factory=list)

    def text(self) -> str:
        why = f" ({'; '.join(self.reasons)})" if self.reasons else ""
        return f"scheduler: {self.action}: {self.detail}{why}"


class Scheduler:
    """Placement state of the control plane: the index of registered workers, the blocklist of
    failed places, and the recent decisions (a bounded log, newest last)."""

    def __init__(self, *, clock: Callable[[], float] = time.time, catalog: Catalog | None = None, keep_decisions: int = 2000):
        self.clock = clock
        self.catalog = catalog or load_catalog()
        self.index = WorkerIndex()
        self.blocklist = Blocklist(clock)
        self.decisions: collections.deque[Decision] = collections.deque(maxlen=keep_decisions)

    # -- registered workers
    def add_worker(self, worker: WorkerCapacity) -> None:
        self.index.add(worker)

    def remove_worker(self, worker_id: str) -> None:
        self.index.remove(worker_id)

    def place(self, spec) -> tuple[Placement | None, str]:
        return self.index.place(spec)

    def claim(self, worker: WorkerCapacity, placement: Placement) -> None:
        self.index.claim(worker, placement)

    def release(self, worker: WorkerCapacity, placement: Placement) -> None:
        self.index.release(worker, placement)

    def could_ever_fit(self, spec) -> bool:
        return self.index.could_ever_fit(spec)

    # -- new capacity
    def rank(self, spec, offerings, *, demand: int = 1) -> tuple[list[Candidate], list[str]]:
        return rank(spec, offerings, self.blocklist, demand=demand, catalog=self.catalog)

    def check(self, spec, offerings, function_name: str = "") -> None:
        check_satisfiable(spec, offerings, catalog=self.catalog, function_name=function_name)

    def record(self, app_id: str, function: str, action: str, detail: str, reasons: list[str] | None = None) -> Decision:
        decision = Decision(self.clock(), app_id, function, action, detail, list(reasons or []))
        self.decisions.append(decision)
        return decision
