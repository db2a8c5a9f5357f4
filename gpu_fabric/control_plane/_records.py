"""In-memory records of the control plane's live state (apps, functions, calls, inputs, containers, workers)."""
from __future__ import annotations

import asyncio
import collections
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from .scheduler import Placement, WorkerCapacity


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


class Notifier:
    """Wakes every coroutine waiting on it; a waiter that arrives later waits for the next notify."""

    __slots__ = ("_fut",)

    def __init__(self) -> None:
        self._fut: asyncio.Future | None = None

    async def wait(self, timeout: float) -> None:
        if timeout <= 0:
            return
        loop = asyncio.get_running_loop()
        if self._fut is None or self._fut.done():
            self._fut = loop.create_future()
        fut = self._fut
        woken = loop.create_future()

        def wake(_=None) -> None:
            if not woken.done():
                woken.set_result(None)

        # Cheaper than wait_for(shield(...)): this sits on the path of every call.
        fut.add_done_callback(wake)
        timer = loop.call_later(timeout, wake)
        try:
            await woken
        finally:
            timer.cancel()
            fut.remove_done_callback(wake)

    def notify(self) -> None:
        fut, self._fut = self._fut, None
        if fut is not None and not fut.done():
            fut.set_result(None)


@dataclass
class AppRec:
    app_id: str
    name: str
    kind: int
    state: int
    created_at: float
    stopped_at: float = 0.0
    last_heartbeat: float = 0.0
    function_ids: dict[str, str] = field(default_factory=dict)
    log_seq: int = 0
    logs: collections.deque = field(default_factory=lambda: collections.deque(maxlen=5000))
    log_notifier: Notifier = field(default_factory=Notifier)
    version: int = 1
    workspace: str = "main"  # the owning workspace (_tokens.py); persisted as meta "workspace:<app_id>"


@dataclass
class FunctionRec:
    function_id: str
    app_id: str
    name: str
    spec: Any  # common_pb2.FunctionSpec
    definition: Any  # common_pb2.FunctionDefinition
    queue: collections.deque = field(default_factory=collections.deque)
    containers: set = field(default_factory=set)
    avg_duration_s: float | None = None
    start_failures: int = 0
    unplaceable_since: float = 0.0
    unplaceable_reason: str = ""
    last_reason_logged: str = ""
    # Wakes exchanges of @batched functions that are filling a batch.
    input_notifier: Notifier = field(default_factory=Notifier)
    # (definition, its digest): `definition_digest` computes it once per definition.
    _digest: Any = field(default=None, repr=False, compare=False)

    @property
    def definition_digest(self) -> str:
        """SHA-256 (hex) of the definition, deterministically serialized; computed once per definition."""
        if self._digest is None or self._digest[0] is not self.definition:
            data = self.definition.SerializeToString(deterministic=True)
            self._digest = (self.definition, hashlib.sha256(data).hexdigest())
        return self._digest[1]

    @property
    def bound(self) -> bool:
        """True for a class bound to constructor parameters (see Engine.bind_params)."""
        return BOUND_SEPARATOR in self.name


BOUND_SEPARATOR = "::"


@dataclass
class CallRec:
    call_id: str
    function_id: str
    kind: int
    created_at: float
    num_inputs: int = 0
    num_done: int = 0
    closed: bool = False
    cancelled: bool = False
    # Outputs not yet acknowledged, by seq (insertion order is seq order).
    outputs: dict[int, Any] = field(default_factory=dict)
    next_seq: int = 1
    pending: set = field(default_factory=set)
    notifier: Notifier = field(default_factory=Notifier)
    usage: Any = None  # _usage.CallUsage, made when its first attempt ends


@dataclass
class InputRec:
    input_id: str
    call_id: str
    function_id: str
    idx: int
    proto: Any  # common_pb2.FunctionInput
    payload: bytes
    attempts: int = 0  # failed attempts so far
    lost: int = 0  # times its container or worker was lost under it
    container_id: str = ""
    claimed_at: float = 0.0
    waiting_retry: bool = False
    rate: Any = None  # _usage.Rate of the container that holds it (set with container_id)


@dataclass
class ContainerRec:
    container_id: str
    worker_id: str
    function_id: str
    app_id: str
    placement: Placement
    started_at: float
    ready: bool = False
    held: dict = field(default_factory=dict)  # input_id -> claimed_at, in claim order
    waiter: asyncio.Future | None = None
    waiter_max: int = 0
    idle_since: float = 0.0
    shutdown: bool = False
    stop_requested: bool = False
    cancelled: list = field(default_factory=list)
    rate: Any = None  # _usage.Rate: its GPUs and price, read from the ledger when it first takes an input


@dataclass
class WorkerRec:
    worker_id: str
    capacity: WorkerCapacity
    info: Any  # worker_pb2.WorkerRegisterRequest
    last_heartbeat: float
    assignments: asyncio.Queue = field(default_factory=asyncio.Queue)
    containers: set = field(default_factory=set)
