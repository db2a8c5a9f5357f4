"""FabricObjects over real gRPC: Dicts, Queues (long-polled gets, partitions, limits), persistence."""
from __future__ import annotations

import threading
import time

import grpc
import pytest

from gpu_fabric.proto import objects_pb2 as pb
from gpu_fabric.proto import objects_pb2_grpc

from .conftest import RunningPlane

DICT, QUEUE = pb.OBJECT_KIND_DICT, pb.OBJECT_KIND_QUEUE


class Objects:
    """The FabricObjects stub with the plane's token on every call."""

    def __init__(self, plane):
        self._stub = objects_pb2_grpc.FabricObjectsStub(plane.channel)
        self._md = plane.md

    def __getattr__(self, method):
        fn = getattr(self._stub, method)
        return lambda request, **kw: fn(request, metadata=self._md, **kw)


@pytest.fixture
def objects(plane):
    return Objects(plane)


def _named(objects, kind, name):
    return objects.ObjectGetOrCreate(pb.ObjectGetOrCreateRequest(kind=kind, name=name, create_if_missing=True)).object_id


def _code(call):
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


def test_named_objects_are_found_created_listed_and_deleted(objects):
    code, details = _code(lambda: objects.ObjectGetOrCreate(pb.ObjectGetOrCreateRequest(kind=DICT, name="d")))
    assert code == grpc.StatusCode.NOT_FOUND and "create_if_missing=True" in details
    created = objects.ObjectGetOrCreate(pb.ObjectGetOrCreateRequest(kind=DICT, name="d", create_if_missing=True))
    again = objects.ObjectGetOrCreate(pb.ObjectGetOrCreateRequest(kind=DICT, name="d"))
    assert created.created and not again.created and created.object_id == again.object_id
    # Kinds have separate namespaces.
    assert _named(objects, QUEUE, "d") != created.object_id
    assert [o.name for o in objects.ObjectList(pb.ObjectListRequest(kind=DICT)).objects] == ["d"]
    code, _ = _code(lambda: objects.ObjectGetOrCreate(pb.ObjectGetOrCreateRequest(kind=DICT, name="bad name!", create_if_missing=True)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    objects.ObjectDelete(pb.ObjectDeleteRequest(kind=DICT, name="d"))
    code, _ = _code(lambda: objects.DictLen(pb.DictLenRequest(object_id=created.object_id)))
    assert code == grpc.StatusCode.NOT_FOUND
    objects.ObjectDelete(pb.ObjectDeleteRequest(kind=DICT, name="d", allow_missing=True))
    assert _code(lambda: objects.ObjectDelete(pb.ObjectDeleteRequest(kind=DICT, name="d")))[0] == grpc.StatusCode.NOT_FOUND


def test_dict_entries_compare_and_set_pages_and_limits(objects):
    oid = _named(objects, DICT, "d")
    put = lambda entries, skip=False: objects.DictPut(pb.DictPutRequest(  # noqa: E731
        object_id=oid, entries=[pb.DictEntry(key=k, value=v) for k, v in entries], skip_if_exists=skip)).stored
    assert put([(b"a", b"1"), (b"b", b"2")]) == 2
    assert put([(b"a", b"one")], skip=True) == 0  # compare-and-set: the key exists
    assert put([(b"c", b"3"), (b"a", b"x")], skip=True) == 1
    assert objects.DictGet(pb.DictGetRequest(object_id=oid, key=b"a")).value == b"1"
    assert put([(b"a", b"uno")]) == 1
    got = objects.DictGet(pb.DictGetRequest(object_id=oid, key=b"a"))
    assert got.found and got.value == b"uno"
    assert not objects.DictGet(pb.DictGetRequest(object_id=oid, key=b"zz")).found
    assert objects.DictContains(pb.DictContainsRequest(object_id=oid, key=b"b")).found
    assert objects.DictLen(pb.DictLenRequest(object_id=oid)).len == 3
    # Pages in insertion order; an updated key keeps its place.
    seen, cursor = [], 0
    while True:
        page = objects.DictContents(pb.DictContentsRequest(object_id=oid, cursor=cursor, max_entries=2))
        seen += [(e.key, e.value) for e in page.entries]
        cursor = page.cursor
        if page.done:
            break
    assert seen == [(b"a", b"uno"), (b"b", b"2"), (b"c", b"3")]
    keys = objects.DictContents(pb.DictContentsRequest(object_id=oid, keys_only=True))
    assert [(e.key, e.value) for e in keys.entries] == [(b"a", b""), (b"b", b""), (b"c", b"")]
    popped = objects.DictPop(pb.DictPopRequest(object_id=oid, key=b"b"))
    assert popped.found and popped.value == b"2"
    assert not objects.DictPop(pb.DictPopRequest(object_id=oid, key=b"b")).found
    code, details = _code(lambda: put([(b"big", b"x" * (16 * 1024 * 1024 + 1))]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "16 MiB" in details
    objects.DictClear(pb.DictClearRequest(object_id=oid))
    assert objects.DictLen(pb.DictLenRequest(object_id=oid)).len == 0
    # A Queue id is not a Dict.
    assert _code(lambda: objects.DictLen(pb.DictLenRequest(object_id=_named(objects, QUEUE, "q"))))[0] == grpc.StatusCode.NOT_FOUND


def test_queue_fifo_partitions_len_clear_and_limits(plane, objects):
    oid = _named(objects, QUEUE, "q")
    put = lambda values, partition="": objects.QueuePut(pb.QueuePutRequest(object_id=oid, partition=partition, values=values))  # noqa: E731
    get = lambda n=1, partition="", timeout=0.0: list(objects.QueueGet(  # noqa: E731
        pb.QueueGetRequest(object_id=oid, partition=partition, max_items=n, timeout_s=timeout)).values)
    put([b"1", b"2", b"3"])
    put([b"p1"], partition="p")
    assert objects.QueueLen(pb.QueueLenRequest(object_id=oid)).len == 3
    assert objects.QueueLen(pb.QueueLenRequest(object_id=oid, partition="p")).len == 1
    assert objects.QueueLen(pb.QueueLenRequest(object_id=oid, total=True)).len == 4
    peek = objects.QueueNextItems(pb.QueueNextItemsRequest(object_id=oid))
    assert [i.value for i in peek.items] == [b"1", b"2", b"3"]
    after = objects.QueueNextItems(pb.QueueNextItemsRequest(object_id=oid, after_id=peek.items[0].item_id))
    assert [i.value for i in after.items] == [b"2", b"3"]
    assert get() == [b"1"]
    assert get(5) == [b"2", b"3"]
    assert get() == []
    assert get(partition="p") == [b"p1"]
    code, details = _code(lambda: put([b"x" * (1024 * 1024 + 1)]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "1 MiB" in details
    code, _ = _code(lambda: put([b"x"], partition="p" * 65))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    plane.plane.objects.max_partition_items = 2
    put([b"a", b"b"])
    assert _code(lambda: put([b"c"]))[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    put([b"c"], partition="other")  # partitions fill up on their own
    objects.QueueClear(pb.QueueClearRequest(object_id=oid))
    assert objects.QueueLen(pb.QueueLenRequest(object_id=oid, total=True)).len == 1
    objects.QueueClear(pb.QueueClearRequest(object_id=oid, all=True))
    assert objects.QueueLen(pb.QueueLenRequest(object_id=oid, total=True)).len == 0


def test_queue_get_long_polls_until_a_put_or_the_timeout(objects):
    oid = _named(objects, QUEUE, "q")
    got = {}

    def blocked_get():
        started = time.monotonic()
        resp = objects.QueueGet(pb.QueueGetRequest(object_id=oid, max_items=10, timeout_s=10.0))
        got["values"], got["waited"] = list(resp.values), time.monotonic() - started

    thread = threading.Thread(target=blocked_get)
    thread.start()
    time.sleep(0.3)
    objects.QueuePut(pb.QueuePutRequest(object_id=oid, values=[b"late"]))
    thread.join(5)
    assert got["values"] == [b"late"] and 0.2 < got["waited"] < 3
    started = time.monotonic()
    assert list(objects.QueueGet(pb.QueueGetRequest(object_id=oid, timeout_s=0.4)).values) == []
    assert 0.35 < time.monotonic() - started < 3
    # A put on another partition does not satisfy the wait.
    started = time.monotonic()
    threading.Timer(0.1, lambda: objects.QueuePut(pb.QueuePutRequest(object_id=oid, partition="x", values=[b"1"]))).start()
    assert list(objects.QueueGet(pb.QueueGetRequest(object_id=oid, timeout_s=0.6)).values) == []
    assert time.monotonic() - started > 0.5


def test_deleting_a_queue_wakes_its_blocked_gets(objects):
    oid = _named(objects, QUEUE, "q")
    errors = []

    def blocked_get():
        try:
            objects.QueueGet(pb.QueueGetRequest(object_id=oid, timeout_s=10.0))
        except grpc.RpcError as err:
            errors.append(err.code())

    thread = threading.Thread(target=blocked_get)
    thread.start()
    time.sleep(0.3)
    objects.ObjectDelete(pb.ObjectDeleteRequest(object_id=oid))
    thread.join(5)
    assert errors == [grpc.StatusCode.NOT_FOUND]


def test_ephemeral_objects_expire_without_heartbeats(plane, objects):
    servicer = plane.plane.objects
    now = [time.time()]
    servicer.clock = lambda: now[0]
    kept = objects.ObjectGetOrCreate(pb.ObjectGetOrCreateRequest(kind=DICT, ephemeral=True))
    dropped = objects.ObjectGetOrCreate(pb.ObjectGetOrCreateRequest(kind=QUEUE, ephemeral=True))
    assert kept.ephemeral_ttl_s > 0 and kept.object_id != dropped.object_id
    assert objects.ObjectList(pb.ObjectListRequest(kind=DICT)).objects == []  # unnamed: not listed
    now[0] += servicer.ephemeral_ttl_s - 10
    objects.ObjectHeartbeat(pb.ObjectHeartbeatRequest(object_ids=[kept.object_id]))
    now[0] += 20
    servicer._last_collect = 0  # collect on the next call
    assert objects.DictLen(pb.DictLenRequest(object_id=kept.object_id)).len == 0
    code, _ = _code(lambda: objects.QueueLen(pb.QueueLenRequest(object_id=dropped.object_id)))
    assert code == grpc.StatusCode.NOT_FOUND


def test_objects_survive_a_control_plane_restart(tmp_path):
    data_dir = str(tmp_path / "fabric")
    plane = RunningPlane(data_dir)
    objects = Objects(plane)
    did, qid = _named(objects, DICT, "d"), _named(objects, QUEUE, "q")
    objects.DictPut(pb.DictPutRequest(object_id=did, entries=[pb.DictEntry(key=b"k", value=b"v")]))
    objects.QueuePut(pb.QueuePutRequest(object_id=qid, values=[b"1", b"2"]))
    plane.stop()
    plane = RunningPlane(data_dir)
    try:
        objects = Objects(plane)
        assert _named(objects, DICT, "d") == did
        assert objects.DictGet(pb.DictGetRequest(object_id=did, key=b"k")).value == b"v"
        assert list(objects.QueueGet(pb.QueueGetRequest(object_id=qid, max_items=5)).values) == [b"1", b"2"]
    finally:
        plane.stop()


def test_objects_need_the_token(plane):
    stub = objects_pb2_grpc.FabricObjectsStub(plane.channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.SecretList(pb.SecretListRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
