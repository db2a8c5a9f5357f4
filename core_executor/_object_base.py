"""What Dict and Queue share: finding the fabric, lazy lookup by name, RPCs, pickling, ephemeral life."""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Callable, Iterator, TypeVar

from . import exception as exc_mod
from ._resources import _check_name

KIND_DICT = 1
KIND_QUEUE = 2
# What the SDK sends in one request, well under the fabric's 64 MiB message limit.
MAX_REQUEST_BYTES = 32 * 1024 * 1024
MAX_ITEMS_PER_REQUEST = 10_000
# The server holds a long-poll at most 55 s; the RPC deadline leaves room on top of it.
LONG_POLL_S = 50.0
RPC_SLACK_S = 15.0

_T = TypeVar("_T", bound="_Object")


def resolve_client() -> Any:
    """The fabric to talk to: the container's own, GPUFABRIC_URL's, or the running app's embedded one."""
    from . import _client
    from .config import NOT_CONFIGURED_HINT, Config, is_container

    if is_container():
        from ._functions import _container

        return _client.current(_container.client) if _container.client is not None else _client.get_client()
    cfg = Config.from_env()
    if cfg.url:
        return _client.get_client(cfg.url, cfg.token)
    from ._app import _embedded

    # `gpufabric run` / `app.run()` without a URL: the embedded fabric this process started.
    embedded = getattr(_embedded, "_client", None)
    if embedded is not None and not embedded.closed:
        return _client.current(embedded)
    raise exc_mod.ConnectionError(
        "no fabric for this Dict/Queue/Secret: use it inside `with app.run():` or a `gpufabric run` "
        f"entrypoint, or {NOT_CONFIGURED_HINT}"
    )


def objects_stub(client: Any) -> Any:
    """The FabricObjects stub on `client`'s channel (made once per client)."""
    stub = getattr(client, "_objects_stub", None)
    if stub is None:
        from gpu_fabric.proto import objects_pb2_grpc

        stub = client._objects_stub = objects_pb2_grpc.FabricObjectsStub(client.channel)
    return stub


def objects_pb() -> Any:
    from gpu_fabric.proto import objects_pb2

    return objects_pb2


def call(client: Any, method: str, request: Any, *, timeout: float = 30.0, idempotent: bool = True) -> Any:
    """One FabricObjects RPC; idempotent ones retry while the fabric is briefly UNAVAILABLE."""
    fn = getattr(objects_stub(client), method)
    return client._retrying(lambda: fn(request, metadata=client.metadata, timeout=timeout), idempotent)


def size_text(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n % (1024 * 1024) == 0 else f"{n:,} bytes"


def check_size(data: bytes, limit: int, what: str, hint: str) -> None:
    """InvalidError naming the limit when `data` is over it (checked before anything is sent)."""
    if len(data) > limit:
        raise exc_mod.InvalidError(f"{what} is {len(data):,} bytes, over the {size_text(limit)} limit; {hint}")


def batches(items: list, size_of: Callable[[Any], int]) -> Iterator[list]:
    """Split `items` into requests of at most MAX_ITEMS_PER_REQUEST items and MAX_REQUEST_BYTES."""
    batch: list = []
    total = 0
    for item in items:
        size = size_of(item)
        if batch and (len(batch) >= MAX_ITEMS_PER_REQUEST or total + size > MAX_REQUEST_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += size
    if batch:
        yield batch


class _Heartbeat:
    """Keeps an ephemeral object alive while its `with` block runs."""

    def __init__(self, client: Any, object_id: str, interval_s: float):
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(client, object_id, interval_s), name=f"gpufabric-heartbeat-{object_id}", daemon=True
        )
        self._thread.start()

    def _run(self, client: Any, object_id: str, interval_s: float) -> None:
        req = objects_pb().ObjectHeartbeatRequest(object_ids=[object_id])
        while not self._stop.wait(interval_s):
            try:
                call(client, "ObjectHeartbeat", req, timeout=max(5.0, interval_s))
            except Exception:  # noqa: BLE001 - keep trying; the object outlives a few missed beats
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


class _Object:
    """A Dict or Queue on the fabric, found lazily: nothing connects until the first operation."""

    _kind = 0
    _what = "object"

    def __init__(self, name: str = "", *, object_id: str = "", create_if_missing: bool = False, client: Any = None):
        self._name = name
        self._object_id = object_id
        self._create_if_missing = create_if_missing
        self._given_client = client
        self._client: Any = None
        self._lock = threading.Lock()

    # -- construction
    @classmethod
    def from_name(cls: type[_T], name: str, *, create_if_missing: bool = False, environment_name: str | None = None,
                  client: Any = None) -> _T:
        """Refer to the object called `name` (created on first use when `create_if_missing`).

        Lazy: the fabric is asked on the first operation, so this works at import time.
        `environment_name` is accepted for Modal compatibility; a fabric has one environment.
        """
        return cls(_check_name(name, cls._what), create_if_missing=create_if_missing, client=client)

    @classmethod
    @contextlib.contextmanager
    def _ephemeral(cls: type[_T], client: Any = None) -> Iterator[_T]:
        client = client or resolve_client()
        pb = objects_pb()
        resp = call(client, "ObjectGetOrCreate", pb.ObjectGetOrCreateRequest(kind=cls._kind, ephemeral=True), idempotent=False)
        obj = cls(object_id=resp.object_id, client=client)
        heartbeat = _Heartbeat(client, resp.object_id, max(1.0, (resp.ephemeral_ttl_s or 300.0) / 3))
        try:
            yield obj
        finally:
            heartbeat.stop()
            try:
                call(client, "ObjectDelete", pb.ObjectDeleteRequest(object_id=resp.object_id, allow_missing=True), timeout=10.0)
            except exc_mod.Error:
                pass  # the fabric deletes it anyway once heartbeats stop

    @classmethod
    def _delete_named(cls, name: str, *, allow_missing: bool = False, client: Any = None) -> None:
        client = client or resolve_client()
        req = objects_pb().ObjectDeleteRequest(kind=cls._kind, name=_check_name(name, cls._what), allow_missing=allow_missing)
        call(client, "ObjectDelete", req)

    # -- identity
    @property
    def name(self) -> str | None:
        """The object's name (None for an ephemeral one)."""
        return self._name or None

    @property
    def object_id(self) -> str:
        """The fabric's id of the object (looks it up by name if needed)."""
        self.hydrate()
        return self._object_id

    def hydrate(self: _T, client: Any = None) -> _T:
        """Look the object up now (creating it if asked), instead of on first use."""
        self._ready(client)
        return self

    def _ready(self, client: Any = None) -> Any:
        from . import _client

        client = client or self._given_client
        if client is not None:
            client = _client.current(client)
        elif self._client is not None and not self._client.closed and self._client.pid == os.getpid():
            client = self._client
        else:
            # First use, or the fabric it used went away (an embedded fabric stops with its run).
            client = resolve_client()
        with self._lock:
            if self._client is not client and self._name:
                self._object_id = ""  # another fabric (or a reconnect): find it again by name
            self._client = client
            if not self._object_id:
                req = objects_pb().ObjectGetOrCreateRequest(kind=self._kind, name=self._name, create_if_missing=self._create_if_missing)
                self._object_id = call(client, "ObjectGetOrCreate", req).object_id
        return client

    def _call(self, method: str, make_request: Callable[[str], Any], *, timeout: float = 30.0, idempotent: bool = True) -> Any:
        client = self._ready()
        try:
            return call(client, method, make_request(self._object_id), timeout=timeout, idempotent=idempotent)
        except exc_mod.NotFoundError:
            if not (self._name and self._create_if_missing):
                raise
        # Deleted and to be created again by name (e.g. `Dict.delete` ran elsewhere).
        with self._lock:
            self._object_id = ""
        client = self._ready()
        return call(client, method, make_request(self._object_id), timeout=timeout, idempotent=idempotent)

    def __bool__(self) -> bool:
        # A handle is always true: `if d:` must not cost a round trip (or be False when empty).
        return True

    # -- pickling: into a container, a reference travels, never a connection
    def __reduce__(self):
        return (_object_from_ref, (type(self).__name__, self._name, self._object_id, self._create_if_missing))

    def __repr__(self) -> str:
        return f"{type(self).__name__}.from_name({self._name!r})" if self._name else f"{type(self).__name__}({self._object_id or 'ephemeral'})"


_classes: dict[str, type] = {}


def register(cls: type) -> type:
    """Let pickled references of `cls` find their class again."""
    _classes[cls.__name__] = cls
    return cls


def _object_from_ref(cls_name: str, name: str, object_id: str, create_if_missing: bool) -> Any:
    if cls_name not in _classes:
        from . import _objects  # noqa: F401 - registers Dict and Queue
    return _classes[cls_name](name, object_id=object_id, create_if_missing=create_if_missing)
