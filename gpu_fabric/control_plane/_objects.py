"""The FabricObjects servicer: Dicts, Queues (with long-polled gets) and secrets over the object store."""
from __future__ import annotations

import functools
import os
import re
import time
from typing import Any, Callable

import grpc

from gpu_fabric.proto import client_pb2, objects_pb2, objects_pb2_grpc

from ._engine import FabricError
from ._object_store import KIND_DICT, KIND_QUEUE, ObjectStore, SQLiteObjectStore, StoredObject
from ._records import Notifier, new_id
from ._secrets import SecretVault
from ._tokens import DEFAULT_WORKSPACE, current_workspace, listed_here, name_owner, scoped_name, visible

OBJECTS_FILE_NAME = "objects.sqlite3"
MAX_QUEUE_ITEM_BYTES = 1024 * 1024
MAX_DICT_VALUE_BYTES = 16 * 1024 * 1024
MAX_KEY_BYTES = 1024 * 1024
MAX_QUEUE_PARTITION_ITEMS = 100_000
MAX_ITEMS_PER_REQUEST = 10_000
# A response stays well under the 64 MiB message limit however large the items are.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
LONG_POLL_MAX_S = 55.0
EPHEMERAL_TTL_S = 300.0
COLLECT_EVERY_S = 30.0

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KIND_NAMES = {KIND_DICT: "Dict", KIND_QUEUE: "Queue"}
_ID_PREFIX = {KIND_DICT: "di", KIND_QUEUE: "qu"}


def _status(func):
    """Turn FabricError into the gRPC status it names; collect expired objects first."""

    @functools.wraps(func)
    async def wrapper(self, request, context):
        try:
            self._maybe_collect()
            return await func(self, request, context)
        except FabricError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.code), str(exc))

    return wrapper


def _size_text(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n % (1024 * 1024) == 0 else f"{n:,} bytes"


def _check_size(data: bytes, limit: int, what: str, hint: str) -> None:
    if len(data) > limit:
        raise FabricError(
            "INVALID_ARGUMENT", f"{what} is {len(data):,} bytes, over the {_size_text(limit)} limit; {hint}"
        )


def _check_partition(partition: str) -> str:
    if len(partition) > 64:
        raise FabricError("INVALID_ARGUMENT", f"a queue partition key is at most 64 characters, got {len(partition)}")
    return partition


class ObjectsServicer(objects_pb2_grpc.FabricObjectsServicer):
    """Serves FabricObjects from an SQLite object store in the data dir (objects.sqlite3).

    `engine` (optional) tells which apps still exist, so anonymous secrets of stopped apps go.
    Runs on the control plane's event loop, like the other servicers.
    """

    def __init__(self, data_dir: str, engine: Any = None, *, clock: Callable[[], float] = time.time,
                 ephemeral_ttl_s: float = EPHEMERAL_TTL_S, max_partition_items: int = MAX_QUEUE_PARTITION_ITEMS,
                 store: ObjectStore | None = None):
        # `store`: a PostgresObjectStore for a shared fabric (gpufabric serve --database).
        self.store = store if store is not None else SQLiteObjectStore(os.path.join(data_dir, OBJECTS_FILE_NAME))
        self.secrets = SecretVault(self.store, data_dir, clock=clock)
        self.engine = engine
        self.clock = clock
        self.ephemeral_ttl_s = ephemeral_ttl_s
        self.max_partition_items = max_partition_items
        self._waiters: dict[tuple[str, str], Notifier] = {}
        now = clock()
        # After a restart every ephemeral object gets a full TTL for its owner to heartbeat again.
        self._heartbeats: dict[str, float] = {o.object_id: now for o in self.store.ephemeral_objects()}
        # The first call collects: anonymous secrets of apps that stopped while the plane was down go.
        self._last_collect = 0.0

    def close(self) -> None:
        self.store.close()

    # -- housekeeping
    def _maybe_collect(self) -> None:
        now = self.clock()
        if now - self._last_collect < COLLECT_EVERY_S:
            return
        self._last_collect = now
        for object_id, beat in list(self._heartbeats.items()):
            if now - beat > self.ephemeral_ttl_s:
                self._delete(object_id)
        if self.engine is not None:
            stopped = client_pb2.APP_STATE_STOPPED
            apps = self.engine.apps
            self.secrets.drop_anonymous(lambda app_id: app_id in apps and apps[app_id].state != stopped)

    def _delete(self, object_id: str) -> bool:
        self._heartbeats.pop(object_id, None)
        existed = self.store.delete_object(object_id)
        # Wake blocked gets so they see the object is gone.
        for key in [k for k in self._waiters if k[0] == object_id]:
            self._waiters.pop(key).notify()
        return existed

    def _object(self, object_id: str, kind: int) -> StoredObject:
        obj = self.store.get_object(object_id) if object_id else None
        # Another workspace's object answers as if it did not exist (names are "workspace/name").
        if obj is None or obj.kind != kind or not visible(name_owner(obj.name)[0]):
            what = _KIND_NAMES.get(kind, "object")
            raise FabricError("NOT_FOUND", f"{what} {object_id!r} not found (it was deleted, or it was ephemeral and expired)")
        return obj

    def _visible_id(self, object_id: str) -> bool:
        if current_workspace() is None:
            return True
        obj = self.store.get_object(object_id)
        return obj is not None and visible(name_owner(obj.name)[0])

    def _notifier(self, object_id: str, partition: str) -> Notifier:
        key = (object_id, partition)
        notifier = self._waiters.get(key)
        if notifier is None:
            notifier = self._waiters[key] = Notifier()
        return notifier

    # -- objects
    @_status
    async def ObjectGetOrCreate(self, request, context):
        kind = request.kind
        if kind not in _KIND_NAMES:
            raise FabricError("INVALID_ARGUMENT", "object kind must be DICT or QUEUE")
        what = _KIND_NAMES[kind]
        ttl = self.ephemeral_ttl_s
        if request.ephemeral:
            if request.name:
                raise FabricError("INVALID_ARGUMENT", f"an ephemeral {what} has no name")
            obj = StoredObject(new_id(_ID_PREFIX[kind]), kind, "", self.clock(), True)
            if (current_workspace() or DEFAULT_WORKSPACE) != DEFAULT_WORKSPACE:
                # Records the owner; "~" is not allowed in names, so no lookup by name finds it.
                obj.name = scoped_name("~" + obj.object_id)
            self.store.create_object(obj)
            self._heartbeats[obj.object_id] = self.clock()
            return objects_pb2.ObjectGetOrCreateResponse(object_id=obj.object_id, created=True, ephemeral_ttl_s=ttl)
        if not _NAME.match(request.name):
            raise FabricError(
                "INVALID_ARGUMENT",
                f"{what} name must be 1-64 letters, digits, '.', '_' or '-' starting with a letter or digit; got {request.name!r}",
            )
        obj = self.store.find_object(kind, scoped_name(request.name))
        if obj is not None:
            return objects_pb2.ObjectGetOrCreateResponse(object_id=obj.object_id, ephemeral_ttl_s=ttl)
        if not request.create_if_missing:
            raise FabricError(
                "NOT_FOUND",
                f"no {what} named {request.name!r}; use {what}.from_name({request.name!r}, create_if_missing=True) to create it",
            )
        obj = StoredObject(new_id(_ID_PREFIX[kind]), kind, scoped_name(request.name), self.clock(), False)
        self.store.create_object(obj)
        return objects_pb2.ObjectGetOrCreateResponse(object_id=obj.object_id, created=True, ephemeral_ttl_s=ttl)

    @_status
    async def ObjectDelete(self, request, context):
        object_id = request.object_id
        if not object_id:
            obj = self.store.find_object(request.kind, scoped_name(request.name)) if request.name else None
        else:
            obj = self.store.get_object(object_id)
        object_id = obj.object_id if obj is not None and visible(name_owner(obj.name)[0]) else ""
        if not (object_id and self._delete(object_id)) and not request.allow_missing:
            what = _KIND_NAMES.get(request.kind, "object")
            raise FabricError("NOT_FOUND", f"no {what} {request.name or request.object_id!r} to delete")
        return objects_pb2.ObjectsEmpty()

    @_status
    async def ObjectHeartbeat(self, request, context):
        now = self.clock()
        for object_id in request.object_ids:
            if object_id in self._heartbeats and self._visible_id(object_id):
                self._heartbeats[object_id] = now
        return objects_pb2.ObjectsEmpty()

    @_status
    async def ObjectList(self, request, context):
        infos = []
        for obj in self.store.list_objects(request.kind):
            if obj.ephemeral or not listed_here(obj.name):
                continue
            size = self.store.dict_len(obj.object_id) if obj.kind == KIND_DICT else self.store.queue_len(obj.object_id, None)
            infos.append(objects_pb2.ObjectInfo(object_id=obj.object_id, kind=obj.kind, name=name_owner(obj.name)[1],
                                                created_at=obj.created_at, size=size))
        return objects_pb2.ObjectListResponse(objects=infos)

    # -- dicts
    @_status
    async def DictGet(self, request, context):
        value = self.store.dict_get(self._object(request.object_id, KIND_DICT).object_id, request.key)
        return objects_pb2.DictGetResponse(found=value is not None, value=value or b"")

    @_status
    async def DictPut(self, request, context):
        obj = self._object(request.object_id, KIND_DICT)
        if len(request.entries) > MAX_ITEMS_PER_REQUEST:
            raise FabricError("INVALID_ARGUMENT", f"at most {MAX_ITEMS_PER_REQUEST} entries per request; split the update")
        for entry in request.entries:
            _check_size(entry.key, MAX_KEY_BYTES, "a Dict key", "use a shorter key")
            _check_size(entry.value, MAX_DICT_VALUE_BYTES, "a Dict value", "store large data on a Volume and keep its path")
        stored = self.store.dict_put(obj.object_id, [(e.key, e.value) for e in request.entries], request.skip_if_exists)
        return objects_pb2.DictPutResponse(stored=stored)

    @_status
    async def DictPop(self, request, context):
        value = self.store.dict_pop(self._object(request.object_id, KIND_DICT).object_id, request.key)
        return objects_pb2.DictGetResponse(found=value is not None, value=value or b"")

    @_status
    async def DictContains(self, request, context):
        value = self.store.dict_get(self._object(request.object_id, KIND_DICT).object_id, request.key)
        return objects_pb2.DictContainsResponse(found=value is not None)

    @_status
    async def DictLen(self, request, context):
        return objects_pb2.DictLenResponse(len=self.store.dict_len(self._object(request.object_id, KIND_DICT).object_id))

    @_status
    async def DictContents(self, request, context):
        obj = self._object(request.object_id, KIND_DICT)
        limit = min(request.max_entries or 1000, MAX_ITEMS_PER_REQUEST)
        rows = self.store.dict_page(obj.object_id, request.cursor, limit, request.keys_only)
        entries, cursor, size = [], request.cursor, 0
        for pos, key, value in rows:
            size += len(key) + len(value)
            if entries and size > MAX_RESPONSE_BYTES:
                break
            entries.append(objects_pb2.DictEntry(key=key, value=value))
            cursor = pos
        done = len(entries) == len(rows) and len(rows) < limit
        return objects_pb2.DictContentsResponse(entries=entries, cursor=cursor, done=done)

    @_status
    async def DictClear(self, request, context):
        self.store.dict_clear(self._object(request.object_id, KIND_DICT).object_id)
        return objects_pb2.ObjectsEmpty()

    # -- queues
    @_status
    async def QueuePut(self, request, context):
        obj = self._object(request.object_id, KIND_QUEUE)
        partition = _check_partition(request.partition)
        values = list(request.values)
        if len(values) > MAX_ITEMS_PER_REQUEST:
            raise FabricError("INVALID_ARGUMENT", f"at most {MAX_ITEMS_PER_REQUEST} items per request; split the batch")
        for value in values:
            _check_size(value, MAX_QUEUE_ITEM_BYTES, "a Queue item", "store large data on a Volume or in a Dict and queue its key")
        if self.store.queue_len(obj.object_id, partition) + len(values) > self.max_partition_items:
            raise FabricError(
                "RESOURCE_EXHAUSTED",
                f"the queue partition holds at most {self.max_partition_items:,} items; consume some first",
            )
        self.store.queue_put(obj.object_id, partition, values)
        self._notifier(obj.object_id, partition).notify()
        return objects_pb2.QueuePutResponse(stored=len(values))

    async def _wait(self, object_id: str, partition: str, deadline: float) -> bool:
        """Wait for a put on the partition until `deadline`; False when the time is up."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await self._notifier(object_id, partition).wait(remaining)
        self._object(object_id, KIND_QUEUE)  # NOT_FOUND if it was deleted meanwhile
        return True

    @_status
    async def QueueGet(self, request, context):
        obj = self._object(request.object_id, KIND_QUEUE)
        partition = _check_partition(request.partition)
        limit = max(1, min(request.max_items or 1, MAX_ITEMS_PER_REQUEST))
        deadline = time.monotonic() + min(max(request.timeout_s, 0.0), LONG_POLL_MAX_S)
        while True:
            values = self._take(obj.object_id, partition, limit)
            if values or not await self._wait(obj.object_id, partition, deadline):
                return objects_pb2.QueueGetResponse(values=values)

    def _take(self, object_id: str, partition: str, limit: int) -> list[bytes]:
        # Peek first so the byte budget decides how many items leave the queue.
        rows = self.store.queue_peek(object_id, partition, 0, limit)
        count, size = 0, 0
        for _, value in rows:
            size += len(value)
            if count and size > MAX_RESPONSE_BYTES:
                break
            count += 1
        return self.store.queue_take(object_id, partition, count) if count else []

    @_status
    async def QueueLen(self, request, context):
        obj = self._object(request.object_id, KIND_QUEUE)
        partition = None if request.total else _check_partition(request.partition)
        return objects_pb2.QueueLenResponse(len=self.store.queue_len(obj.object_id, partition))

    @_status
    async def QueueNextItems(self, request, context):
        obj = self._object(request.object_id, KIND_QUEUE)
        partition = _check_partition(request.partition)
        limit = max(1, min(request.max_items or 100, MAX_ITEMS_PER_REQUEST))
        deadline = time.monotonic() + min(max(request.timeout_s, 0.0), LONG_POLL_MAX_S)
        while True:
            items, size = [], 0
            for item_id, value in self.store.queue_peek(obj.object_id, partition, request.after_id, limit):
                size += len(value)
                if items and size > MAX_RESPONSE_BYTES:
                    break
                items.append(objects_pb2.QueueItem(item_id=item_id, value=value))
            if items or not await self._wait(obj.object_id, partition, deadline):
                return objects_pb2.QueueNextItemsResponse(items=items)

    @_status
    async def QueueClear(self, request, context):
        obj = self._object(request.object_id, KIND_QUEUE)
        self.store.queue_clear(obj.object_id, None if request.all else _check_partition(request.partition))
        return objects_pb2.ObjectsEmpty()

    # -- secrets
    @_status
    async def SecretCreate(self, request, context):
        if request.app_id and self.engine is not None:
            self.engine.app(request.app_id)  # NOT_FOUND for an unknown app
        name = self.secrets.create(request.name, dict(request.env), overwrite=request.overwrite, app_id=request.app_id)
        return objects_pb2.SecretCreateResponse(name=name)

    @_status
    async def SecretList(self, request, context):
        return objects_pb2.SecretListResponse(secrets=[
            objects_pb2.SecretInfo(name=s.name, keys=s.keys, created_at=s.created_at, updated_at=s.updated_at, app_id=s.app_id)
            for s in self.secrets.list(include_anonymous=request.include_anonymous)
        ])

    @_status
    async def SecretDelete(self, request, context):
        self.secrets.delete(request.name, allow_missing=request.allow_missing)
        return objects_pb2.ObjectsEmpty()
