"""The SDK's Dict and Queue against a real control plane run in this process."""
from __future__ import annotations

import asyncio
import pickle
import queue
import threading
import time

import pytest

import core_executor as fabric
from core_executor import _client, exception
from tests.control_plane.conftest import RunningPlane


@pytest.fixture
def plane(tmp_path, monkeypatch):
    running = RunningPlane(str(tmp_path / "fabric"))
    monkeypatch.setenv("GPUFABRIC_URL", f"grpc://127.0.0.1:{running.plane.port}")
    monkeypatch.setenv("GPUFABRIC_TOKEN", "secret-token")
    monkeypatch.delenv("GPUFABRIC_IS_CONTAINER", raising=False)
    yield running
    for client in list(_client._clients.values()):
        _client.forget_client(client)
    running.stop()


def test_from_name_is_lazy_and_a_missing_object_says_how_to_create_it(monkeypatch, plane):
    monkeypatch.delenv("GPUFABRIC_URL")
    d = fabric.Dict.from_name("later")  # no fabric needed until it is used
    assert repr(d) == "Dict.from_name('later')" and d.name == "later"
    with pytest.raises(exception.ConnectionError, match="app.run"):
        d.len()
    monkeypatch.setenv("GPUFABRIC_URL", f"grpc://127.0.0.1:{plane.plane.port}")
    with pytest.raises(exception.NotFoundError, match="create_if_missing=True"):
        d.len()
    with pytest.raises(exception.InvalidError):
        fabric.Queue.from_name("no spaces allowed")


def test_dict_behaves_like_a_dict(plane):
    d = fabric.Dict.from_name("d", create_if_missing=True)
    d["a"] = 1
    d[("tuple", 2)] = {"nested": [1, 2]}
    d[3] = "three"
    assert d["a"] == 1 and d[("tuple", 2)] == {"nested": [1, 2]} and d[3] == "three"
    with pytest.raises(KeyError):
        d["missing"]
    assert d.get("missing") is None and d.get("missing", 7) == 7
    assert "a" in d and d.contains(3) and "zz" not in d
    assert len(d) == 3 == d.len()
    assert d.put("a", 100, skip_if_exists=True) is False and d["a"] == 1
    assert d.put("new", 5, skip_if_exists=True) is True
    assert d.put("a", 2) is True and d["a"] == 2
    d.update({"b": 2}, c=3)
    d.update([("e", 5)])
    assert list(d.keys()) == ["a", ("tuple", 2), 3, "new", "b", "c", "e"]
    assert list(d) == list(d.keys())
    assert dict(d.items())["c"] == 3 and 5 in list(d.values())
    assert d.pop("b") == 2 and d.pop("b", None) is None
    with pytest.raises(KeyError):
        d.pop("b")
    del d["c"]
    assert "c" not in d
    d.clear()
    assert len(d) == 0 and list(d.items()) == [] and bool(d)  # a handle stays true when empty
    # The same name from another handle is the same Dict.
    d["shared"] = True
    assert fabric.Dict.from_name("d")["shared"] is True


def test_dict_iteration_pages_through_many_entries(plane):
    d = fabric.Dict.from_name("many", create_if_missing=True)
    d.update({i: i * i for i in range(2500)})
    assert len(d) == 2500
    assert [k for k in d.keys()] == list(range(2500))
    assert sum(v for _, v in d.items()) == sum(i * i for i in range(2500))


def test_size_limits_are_checked_before_sending_and_name_the_limit(plane):
    d = fabric.Dict.from_name("d", create_if_missing=True)
    q = fabric.Queue.from_name("q", create_if_missing=True)
    with pytest.raises(exception.InvalidError, match="over the 1 MiB limit"):
        q.put(b"x" * (1024 * 1024 + 10))
    with pytest.raises(exception.InvalidError, match="over the 16 MiB limit"):
        d["big"] = b"x" * (16 * 1024 * 1024 + 10)
    with pytest.raises(exception.SerializationError, match="Dict value"):
        d["lock"] = threading.Lock()
    assert len(q) == 0 and "big" not in d


def test_delete_by_name_and_a_handle_with_create_if_missing_makes_it_again(plane):
    d = fabric.Dict.from_name("gone", create_if_missing=True)
    d["k"] = 1
    fabric.Dict.delete("gone")
    with pytest.raises(exception.NotFoundError):
        fabric.Dict.delete("gone")
    fabric.Dict.delete("gone", allow_missing=True)
    assert "k" not in d  # re-created, empty
    fabric.Queue.from_name("strict", create_if_missing=True).hydrate()
    fabric.Queue.delete("strict")
    with pytest.raises(exception.NotFoundError):
        fabric.Queue.from_name("strict").put(1)


def test_queue_put_get_many_partitions_len_and_clear(plane):
    q = fabric.Queue.from_name("q", create_if_missing=True)
    q.put(1)
    q.put_many([2, 3, {"four": 4}])
    q.put("p", partition="p1")
    assert q.len() == 4 == len(q) and q.len(partition="p1") == 1 and q.len(total=True) == 5
    assert q.get() == 1
    assert q.get_many(2) == [2, 3]
    assert q.get_many(10) == [{"four": 4}]
    assert q.get(block=False) is None and q.get_many(3, block=False) == []
    assert q.get(partition="p1") == "p"
    q.put_many(range(3), partition="p2")
    q.put("x")
    q.clear(partition="p2")
    assert q.len(total=True) == 1
    q.clear(all=True)
    assert q.len(total=True) == 0
    with pytest.raises(exception.InvalidError):
        q.put(1, partition="")


def test_queue_get_blocks_until_a_put_or_times_out(plane):
    q = fabric.Queue.from_name("q", create_if_missing=True)
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.3)
    assert 0.25 < time.monotonic() - started < 5
    threading.Timer(0.3, lambda: fabric.Queue.from_name("q").put("late")).start()
    started = time.monotonic()
    assert q.get(timeout=10) == "late"
    assert time.monotonic() - started < 5
    threading.Timer(0.2, lambda: fabric.Queue.from_name("q").put_many([1, 2])).start()
    assert q.get_many(5, timeout=10) in ([1, 2], [1])


def test_queue_full_partition_raises_queue_full(plane):
    plane.plane.objects.max_partition_items = 2
    q = fabric.Queue.from_name("small", create_if_missing=True)
    q.put_many([1, 2])
    with pytest.raises(queue.Full):
        q.put(3, block=False)
    started = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.3)
    assert time.monotonic() - started < 5
    threading.Timer(0.3, q.get).start()
    q.put(3, timeout=10)  # waits for room
    assert q.len() == 2


def test_queue_iterate_reads_without_removing_and_waits_for_more(plane):
    q = fabric.Queue.from_name("it", create_if_missing=True)
    q.put_many(["a", "b"])
    assert list(q.iterate()) == ["a", "b"] and q.len() == 2
    threading.Timer(0.3, lambda: q.put("c")).start()
    assert list(q.iterate(item_poll_timeout=3.0)) == ["a", "b", "c"]


def test_ephemeral_objects_live_for_the_with_block(plane):
    with fabric.Dict.ephemeral({"x": 1}) as d:
        assert d["x"] == 1 and d.name is None
        object_id = d.object_id
    with pytest.raises(exception.NotFoundError):
        fabric.Dict(object_id=object_id).len()
    with fabric.Queue.ephemeral() as q:
        q.put(1)
        assert q.get() == 1


def test_objects_pickle_as_references(plane):
    d = fabric.Dict.from_name("p", create_if_missing=True)
    d["k"] = "v"
    copy = pickle.loads(pickle.dumps(d))
    assert copy["k"] == "v" and copy.object_id == d.object_id
    with fabric.Queue.ephemeral() as q:
        pickle.loads(pickle.dumps(q)).put("through a pickle")
        assert q.get() == "through a pickle"


def test_aio_twins(plane):
    d = fabric.Dict.from_name("aio", create_if_missing=True)
    q = fabric.Queue.from_name("aio", create_if_missing=True)

    async def main():
        await d.put.aio("k", 1)
        await q.put_many.aio([1, 2])
        items = [x async for x in q.iterate.aio()]
        return await d.get.aio("k"), await q.get.aio(), items, await d.len.aio()

    assert asyncio.run(main()) == (1, 1, [1, 2], 1)
