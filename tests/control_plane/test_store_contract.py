"""The StateStore and ObjectStore contracts, run against SQLite and PostgreSQL alike."""
from __future__ import annotations

import pytest

from gpu_fabric.control_plane._cron import ScheduleRunRecord
from gpu_fabric.control_plane._object_store import KIND_DICT, KIND_QUEUE, SQLiteObjectStore, StoredObject, StoredSecret
from gpu_fabric.control_plane._store import SQLiteStore, StoredApp, StoredCall, StoredFunction, StoredInput, StoredOutput
from tests.pg_server import pg_url  # noqa: F401 - fixture


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    """(kind, url-or-dir) of a fresh database."""
    if request.param == "sqlite":
        return "sqlite", str(tmp_path)
    return "postgres", request.getfixturevalue("pg_url")


def open_state(backend):
    kind, where = backend
    if kind == "sqlite":
        return SQLiteStore(f"{where}/state.sqlite3")
    from gpu_fabric.control_plane._store_pg import PostgresStore

    return PostgresStore(where)


def open_objects(backend):
    kind, where = backend
    if kind == "sqlite":
        return SQLiteObjectStore(f"{where}/objects.sqlite3")
    from gpu_fabric.control_plane._object_store_pg import PostgresObjectStore

    return PostgresObjectStore(where)


def test_apps_functions_and_meta(backend):
    store = open_state(backend)
    store.put_app(StoredApp("ap-1", "demo", 1, 1, 10.0, 0.0))
    store.put_app(StoredApp("ap-1", "demo", 1, 3, 10.0, 12.5, version=2))
    store.put_function(StoredFunction("fu-1", "ap-1", "f", b"spec", b"def"))
    store.set_meta("token", "a")
    store.set_meta("token", "b")
    store.close()
    store = open_state(backend)  # everything survives a reopen
    assert store.apps() == [StoredApp("ap-1", "demo", 1, 3, 10.0, 12.5, version=2)]
    assert store.functions() == [StoredFunction("fu-1", "ap-1", "f", b"spec", b"def")]
    assert store.get_meta("token") == "b" and store.get_meta("missing") is None
    store.close()


def test_write_batch_inputs_outputs_and_order(backend):
    store = open_state(backend)
    call = StoredCall("fc-1", "fu-1", 2, 3, 0, False, False, 5.0)
    inputs = [StoredInput(f"in-{i}", "fc-1", "fu-1", i, b"p%d" % i, 0, 0) for i in (2, 0, 1)]
    store.write_batch(calls=[call], inputs=inputs)
    assert [i.input_id for i in store.pending_inputs()] == ["in-2", "in-0", "in-1"]  # arrival order
    store.write_batch(retried=[StoredInput("in-0", "fc-1", "fu-1", 0, b"", 2, 1)])
    assert {i.input_id: (i.attempts, i.lost) for i in store.pending_inputs()}["in-0"] == (2, 1)
    item = StoredOutput("fc-1", 1, "in-2", 2, b"gen", 1, 0, 6.0, final=False)
    done = StoredOutput("fc-1", 2, "in-2", 2, b"r", 1, 7, 6.0)
    call.num_done, call.next_seq, call.closed = 1, 3, True
    store.write_batch(calls=[call], outputs=[item, done], logs=[("ap-1", 1, b"line"), ("ap-1", 2, b"two")])
    assert [i.input_id for i in store.pending_inputs()] == ["in-0", "in-1"]
    assert [(o.seq, o.result) for o in store.outputs()] == [(1, b"gen"), (2, b"r")]
    (stored,) = store.calls()
    assert (stored.num_done, stored.closed, stored.next_seq) == (1, True, 3)
    assert store.logs("ap-1", 0, 10) == [(1, b"line"), (2, b"two")]
    assert store.logs("ap-1", 1, 10) == [(2, b"two")] and store.max_log_seq("ap-1") == 2 and store.max_log_seq("x") == 0
    # A replayed batch (a commit whose outcome was unknown) changes nothing.
    store.write_batch(calls=[call], outputs=[item, done])
    assert len(list(store.outputs())) == 2
    store.delete_outputs("fc-1", 1)
    assert [o.seq for o in store.outputs()] == [2]
    store.close()


def test_expire_drops_old_outputs_and_finished_calls(backend):
    store = open_state(backend)
    old = StoredCall("fc-old", "fu", 2, 1, 1, True, False, 1.0)
    live = StoredCall("fc-live", "fu", 2, 2, 1, False, False, 1.0)
    store.write_batch(calls=[old, live], outputs=[StoredOutput("fc-old", 1, "in", 0, b"r", 1, 0, 1.0)])
    assert store.expire(before=100.0) == 2  # the output, then its finished call
    assert [c.call_id for c in store.calls()] == ["fc-live"]
    store.close()


def test_schedules_and_runs(backend):
    store = open_state(backend)
    runs = [ScheduleRunRecord("fu-1", float(t), f"fc-{t}", float(t), 0.0, 0, "") for t in (1, 2, 3)]
    store.write_batch(schedules=[("fu-1", 0.5, 3.0)], schedule_runs=runs)
    assert store.schedules() == [("fu-1", 0.5, 3.0)]
    assert [r.tick for r in store.schedule_runs(["fu-1"], 2)] == [3.0, 2.0]
    assert store.schedule_runs([], 5) == []
    store.close()


def test_objects_dicts_queues_secrets(backend):
    store = open_objects(backend)
    store.create_object(StoredObject("di-1", KIND_DICT, "d", 1.0, False))
    store.create_object(StoredObject("qu-1", KIND_QUEUE, "", 2.0, True))
    assert store.find_object(KIND_DICT, "d").object_id == "di-1" and store.get_object("nope") is None
    assert [o.object_id for o in store.list_objects(KIND_DICT)] == ["di-1"]
    assert [o.object_id for o in store.ephemeral_objects()] == ["qu-1"]
    assert store.dict_put("di-1", [(b"a", b"1"), (b"b", b"2")], False) == 2
    assert store.dict_put("di-1", [(b"a", b"x"), (b"c", b"3")], True) == 1
    store.dict_put("di-1", [(b"a", b"9")], False)
    assert store.dict_get("di-1", b"a") == b"9" and store.dict_len("di-1") == 3
    assert [k for _, k, _ in store.dict_page("di-1", 0, 10, True)] == [b"a", b"b", b"c"]  # insertion order
    assert store.dict_pop("di-1", b"b") == b"2" and store.dict_pop("di-1", b"b") is None
    store.queue_put("qu-1", "", [b"1", b"2", b"3"])
    store.queue_put("qu-1", "p", [b"x"])
    assert store.queue_len("qu-1", "") == 3 and store.queue_len("qu-1", None) == 4
    assert [v for _, v in store.queue_peek("qu-1", "", 0, 2)] == [b"1", b"2"]
    assert store.queue_take("qu-1", "", 2) == [b"1", b"2"]
    store.queue_clear("qu-1", "p")
    assert store.queue_len("qu-1", None) == 1
    store.put_secret(StoredSecret("s", ["K"], b"cipher", 1.0, 2.0))
    assert store.get_secret("s").ciphertext == b"cipher" and [s.name for s in store.list_secrets()] == ["s"]
    assert store.delete_secret("s") and not store.delete_secret("s")
    assert store.delete_object("di-1") and not store.delete_object("di-1")
    assert store.dict_len("di-1") == 0
    store.close()


def test_postgres_refuses_a_second_control_plane(pg_url):  # noqa: F811
    from gpu_fabric.control_plane._store_pg import DatabaseInUse, PostgresStore

    first = PostgresStore(pg_url)
    with pytest.raises(DatabaseInUse, match="another gpu-fabric control plane"):
        PostgresStore(pg_url)
    first.close()
    PostgresStore(pg_url).close()  # free again once the first is gone


def test_postgres_survives_a_dropped_connection(pg_url):  # noqa: F811
    import psycopg

    from gpu_fabric.control_plane._store_pg import PostgresStore

    store = PostgresStore(pg_url)
    store.set_meta("k", "1")
    pid = store.db.conn.info.backend_pid
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    store.set_meta("k", "2")  # reconnects (and takes the serve lock again)
    assert store.get_meta("k") == "2" and store.db.conn.info.backend_pid != pid
    store.close()
