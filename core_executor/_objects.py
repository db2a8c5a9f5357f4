"""Named objects kept by the fabric: `Dict` (a distributed dict) and `Queue` (a distributed FIFO)."""
from __future__ import annotations

import contextlib
import queue as _queue
import time
from typing import Any, Iterable, Iterator, Mapping

from . import _object_base as base
from ._aio import blocking
from .exception import InvalidError, ResourceExhaustedError

__all__ = ["Dict", "Queue", "DICT_VALUE_LIMIT", "QUEUE_ITEM_LIMIT"]

DICT_VALUE_LIMIT = 16 * 1024 * 1024
DICT_KEY_LIMIT = 1024 * 1024
QUEUE_ITEM_LIMIT = 1024 * 1024
_PAGE = 1000
LONG_POLL = base.LONG_POLL_S
_MISSING = object()


def deserialize(data: bytes) -> Any:
    # cloudpickle loads on first use: `import core_executor` stays light.
    from ._serialization import deserialize as loads

    return loads(data)


def _pickle(obj: Any, what: str) -> bytes:
    from ._serialization import serialize

    try:
        return serialize(obj)
    except Exception as exc:
        from .exception import SerializationError

        raise SerializationError(f"cannot pickle {what} ({type(obj).__name__}): {exc}") from exc


@base.register
class Dict(base._Object):
    """A dict kept by the fabric, shared by every process and container that names it.

    `d = Dict.from_name("cache", create_if_missing=True)`, then `d[key] = value`, `d[key]`,
    `d.get(key, default)`, `d.put(key, value, skip_if_exists=True)`, `key in d`, `len(d)`,
    `d.items()`. Keys and values are pickled with cloudpickle (any picklable key works; two keys
    are the same key when their pickles are equal, so prefer str, int and tuples of them).
    Values are at most 16 MiB. Entries survive a control plane restart.
    """

    _kind = base.KIND_DICT
    _what = "Dict"

    @classmethod
    @contextlib.contextmanager
    def ephemeral(cls, data: Mapping | None = None, *, client: Any = None) -> Iterator["Dict"]:
        """A new unnamed Dict for the duration of the `with` block (deleted after), filled from `data`."""
        with cls._ephemeral(client) as d:
            if data:
                d.update(data)
            yield d

    @staticmethod
    def delete(name: str, *, allow_missing: bool = False, client: Any = None) -> None:
        """Delete the Dict called `name` and every entry in it."""
        Dict._delete_named(name, allow_missing=allow_missing, client=client)

    def _key(self, key: Any) -> bytes:
        data = _pickle(key, "a Dict key")
        base.check_size(data, DICT_KEY_LIMIT, "a Dict key", "use a shorter key")
        return data

    @blocking
    def get(self, key: Any, default: Any = None) -> Any:
        """The value of `key`, or `default` when it is absent."""
        pb = base.objects_pb()
        k = self._key(key)
        resp = self._call("DictGet", lambda oid: pb.DictGetRequest(object_id=oid, key=k))
        return deserialize(resp.value) if resp.found else default

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    @blocking
    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
        """Store `value` under `key`; returns whether it was stored.

        With `skip_if_exists=True` an existing key keeps its value and `put` returns False: a
        compare-and-set that exactly one of many concurrent writers wins.
        """
        return self._put([(self._key(key), self._value(value))], skip_if_exists) == 1

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def _value(self, value: Any) -> bytes:
        data = _pickle(value, "a Dict value")
        base.check_size(data, DICT_VALUE_LIMIT, "a Dict value", "store large data on a Volume and keep its path in the Dict")
        return data

    def _put(self, entries: list[tuple[bytes, bytes]], skip_if_exists: bool) -> int:
        pb = base.objects_pb()
        stored = 0
        for batch in base.batches(entries, lambda e: len(e[0]) + len(e[1])):
            msgs = [pb.DictEntry(key=k, value=v) for k, v in batch]
            resp = self._call(
                "DictPut", lambda oid: pb.DictPutRequest(object_id=oid, entries=msgs, skip_if_exists=skip_if_exists),
                timeout=120.0, idempotent=not skip_if_exists,  # a retried compare-and-set would report a loss
            )
            stored += resp.stored
        return stored

    @blocking
    def update(self, other: Mapping | Iterable[tuple[Any, Any]] = (), /, **kwargs: Any) -> None:
        """Store many entries at once (like dict.update), in as few requests as fit."""
        pairs = list(other.items()) if isinstance(other, Mapping) else list(other)
        pairs += list(kwargs.items())
        self._put([(self._key(k), self._value(v)) for k, v in pairs], False)

    @blocking
    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        """Remove `key` and return its value (KeyError when absent and no default is given)."""
        pb = base.objects_pb()
        k = self._key(key)
        resp = self._call("DictPop", lambda oid: pb.DictPopRequest(object_id=oid, key=k), idempotent=False)
        if resp.found:
            return deserialize(resp.value)
        if default is _MISSING:
            raise KeyError(key)
        return default

    def __delitem__(self, key: Any) -> None:
        self.pop(key)

    @blocking
    def contains(self, key: Any) -> bool:
        """True when `key` is in the Dict."""
        pb = base.objects_pb()
        k = self._key(key)
        return self._call("DictContains", lambda oid: pb.DictContainsRequest(object_id=oid, key=k)).found

    def __contains__(self, key: Any) -> bool:
        return self.contains(key)

    @blocking
    def len(self) -> int:
        """Number of entries."""
        pb = base.objects_pb()
        return int(self._call("DictLen", lambda oid: pb.DictLenRequest(object_id=oid)).len)

    def __len__(self) -> int:
        return self.len()

    def _entries(self, keys_only: bool) -> Iterator[tuple[bytes, bytes]]:
        pb = base.objects_pb()
        cursor = 0
        while True:
            resp = self._call(
                "DictContents",
                lambda oid: pb.DictContentsRequest(object_id=oid, cursor=cursor, max_entries=_PAGE, keys_only=keys_only),
                timeout=120.0,
            )
            for entry in resp.entries:
                yield entry.key, entry.value
            if resp.done or not resp.entries:
                return
            cursor = resp.cursor

    @blocking(iterator=True)
    def keys(self) -> Iterator[Any]:
        """The keys, in insertion order (fetched a page at a time)."""
        return (deserialize(k) for k, _ in self._entries(True))

    @blocking(iterator=True)
    def values(self) -> Iterator[Any]:
        """The values, in insertion order."""
        return (deserialize(v) for _, v in self._entries(False))

    @blocking(iterator=True)
    def items(self) -> Iterator[tuple[Any, Any]]:
        """(key, value) pairs, in insertion order."""
        return ((deserialize(k), deserialize(v)) for k, v in self._entries(False))

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    @blocking
    def clear(self) -> None:
        """Remove every entry."""
        pb = base.objects_pb()
        self._call("DictClear", lambda oid: pb.DictClearRequest(object_id=oid))


def _partition(partition: str | None) -> str:
    if partition is None:
        return ""
    if not isinstance(partition, str) or not partition or len(partition) > 64:
        raise InvalidError(f"a Queue partition is a non-empty string of at most 64 characters, got {partition!r}")
    return partition


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if timeout < 0:
        raise InvalidError(f"timeout must be >= 0 seconds, got {timeout!r}")
    return time.monotonic() + timeout


def _remaining(deadline: float | None) -> float:
    return LONG_POLL if deadline is None else max(0.0, min(LONG_POLL, deadline - time.monotonic()))



@base.register
class Queue(base._Object):
    """A FIFO queue kept by the fabric, shared by every process and container that names it.

    `q = Queue.from_name("jobs", create_if_missing=True)`; `q.put(x)`, `q.put_many(xs)`,
    `q.get()` (blocks, long-polling the fabric; `timeout=` raises queue.Empty), `q.get_many(n)`,
    `q.len()`, `q.iterate()`. `partition="key"` keeps independent FIFOs in one Queue. Items are
    pickled with cloudpickle and at most 1 MiB each; they survive a control plane restart.
    """

    _kind = base.KIND_QUEUE
    _what = "Queue"

    @classmethod
    @contextlib.contextmanager
    def ephemeral(cls, *, client: Any = None) -> Iterator["Queue"]:
        """A new unnamed Queue for the duration of the `with` block (deleted after)."""
        with cls._ephemeral(client) as q:
            yield q

    @staticmethod
    def delete(name: str, *, allow_missing: bool = False, client: Any = None) -> None:
        """Delete the Queue called `name` and every item in it."""
        Queue._delete_named(name, allow_missing=allow_missing, client=client)

    @staticmethod
    def _item(value: Any) -> bytes:
        data = _pickle(value, "a Queue item")
        base.check_size(data, QUEUE_ITEM_LIMIT, "a Queue item",
                        "store large data on a Volume or in a Dict and put its key on the Queue")
        return data

    @blocking
    def put(self, v: Any, block: bool = True, timeout: float | None = None, *, partition: str | None = None,
            partition_ttl: int | None = None) -> None:
        """Add `v` to the end of the queue (queue.Full when the partition stays full past `timeout`).

        `partition_ttl` is accepted for Modal compatibility; partitions live until cleared.
        """
        self._put_values([self._item(v)], block, timeout, _partition(partition))

    @blocking
    def put_many(self, vs: Iterable[Any], block: bool = True, timeout: float | None = None, *,
                 partition: str | None = None, partition_ttl: int | None = None) -> None:
        """Add every item of `vs`, in order, in as few requests as fit."""
        self._put_values([self._item(v) for v in vs], block, timeout, _partition(partition))

    def _put_values(self, values: list[bytes], block: bool, timeout: float | None, partition: str) -> None:
        pb = base.objects_pb()
        deadline = _deadline(timeout)
        for batch in base.batches(values, len):
            delay = 0.05
            while True:
                try:
                    self._call("QueuePut", lambda oid: pb.QueuePutRequest(object_id=oid, partition=partition, values=batch),
                               timeout=120.0, idempotent=False)  # a retried put would queue items twice
                    break
                except ResourceExhaustedError as exc:
                    if not block or (deadline is not None and time.monotonic() + delay > deadline):
                        raise _queue.Full(str(exc)) from None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _get(self, n: int, block: bool, timeout: float | None, partition: str | None) -> list[Any]:
        pb = base.objects_pb()
        part = _partition(partition)
        deadline = _deadline(timeout) if block else time.monotonic()
        while True:
            wait = _remaining(deadline) if block else 0.0
            resp = self._call(
                "QueueGet", lambda oid: pb.QueueGetRequest(object_id=oid, partition=part, max_items=n, timeout_s=wait),
                timeout=wait + base.RPC_SLACK_S, idempotent=False,  # a retry could drop the items taken
            )
            if resp.values:
                return [deserialize(v) for v in resp.values]
            if not block:
                return []
            if deadline is not None and time.monotonic() >= deadline:
                raise _queue.Empty(f"no item arrived within {timeout:g} s")

    @blocking
    def get(self, block: bool = True, timeout: float | None = None, *, partition: str | None = None) -> Any:
        """Remove and return the next item.

        Blocks until one arrives (up to `timeout` seconds, then queue.Empty); with
        `block=False` returns None at once when the queue is empty, like Modal's Queue.
        """
        values = self._get(1, block, timeout, partition)
        return values[0] if values else None

    @blocking
    def get_many(self, n_values: int, block: bool = True, timeout: float | None = None, *,
                 partition: str | None = None) -> list[Any]:
        """Remove and return up to `n_values` items, once at least one is there (see `get`)."""
        if not isinstance(n_values, int) or n_values < 1:
            raise InvalidError(f"n_values must be a positive int, got {n_values!r}")
        return self._get(min(n_values, base.MAX_ITEMS_PER_REQUEST), block, timeout, partition)

    @blocking
    def len(self, *, partition: str | None = None, total: bool = False) -> int:
        """Items in the partition (the default one unless named), or in all of them with `total=True`."""
        pb = base.objects_pb()
        part = "" if total else _partition(partition)
        return int(self._call("QueueLen", lambda oid: pb.QueueLenRequest(object_id=oid, partition=part, total=total)).len)

    def __len__(self) -> int:
        return self.len()

    @blocking(iterator=True)
    def iterate(self, *, partition: str | None = None, item_poll_timeout: float = 0.0) -> Iterator[Any]:
        """Yield the items in order without removing them; after the last one, wait up to
        `item_poll_timeout` seconds for another before stopping."""
        pb = base.objects_pb()
        part = _partition(partition)
        if item_poll_timeout < 0:
            raise InvalidError(f"item_poll_timeout must be >= 0, got {item_poll_timeout!r}")

        def items() -> Iterator[Any]:
            after = 0
            while True:
                deadline = time.monotonic() + item_poll_timeout
                while True:
                    wait = max(0.0, min(LONG_POLL, deadline - time.monotonic()))
                    resp = self._call(
                        "QueueNextItems",
                        lambda oid: pb.QueueNextItemsRequest(object_id=oid, partition=part, after_id=after, timeout_s=wait),
                        timeout=wait + base.RPC_SLACK_S,
                    )
                    if resp.items or time.monotonic() >= deadline:
                        break
                if not resp.items:
                    return
                for item in resp.items:
                    after = item.item_id
                    yield deserialize(item.value)

        return items()

    @blocking
    def clear(self, *, partition: str | None = None, all: bool = False) -> None:  # noqa: A002 - Modal's name
        """Remove every item of the partition (the default one unless named), or of all with `all=True`."""
        pb = base.objects_pb()
        part = "" if all else _partition(partition)
        self._call("QueueClear", lambda oid: pb.QueueClearRequest(object_id=oid, partition=part, all=all))
