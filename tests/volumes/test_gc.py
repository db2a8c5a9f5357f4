"""Volume garbage collection on the local, S3 (moto) and OCI backends: what is kept, what is freed,
deleted volumes, and commits racing the sweep (deterministic interleavings, then threads)."""
from __future__ import annotations

import random
import threading
import time

import pytest

from gpu_fabric.control_plane.volumes import GcPolicy, VolumeError, VolumeStore
from gpu_fabric.control_plane.volumes import _gc

# Everything not referenced by HEAD is garbage at once: only the commit-safety mechanisms protect.
AGGRESSIVE = GcPolicy(keep_versions=0, retention_s=0, grace_s=0)


def _put(store, name, path, data: bytes):
    digests = store.put_blocks(name, [data])
    return {"path": path, "size": len(data), "blocks": digests, "mode": 0o644, "mtime": 1.0}


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _blocks(backend, name="v"):
    return {k.rsplit("/", 1)[1] for k in backend.list(f"vol/{name}/b/")}


def _versions(backend, name="v"):
    return sorted(int(k.rsplit("/", 1)[1][:-5]) for k in backend.list(f"vol/{name}/v/"))


def test_keeps_head_recent_versions_and_young_blocks_then_frees_the_rest(backend, clock):
    store = VolumeStore(backend, clock=clock)
    policy = GcPolicy(keep_versions=1, retention_s=60, grace_s=120)
    store.get_or_create("v", True)
    for i in range(5):
        store.commit("v", [_put(store, "v", "f", b"content %d" % i), _put(store, "v", "same", b"unchanged")], [])
    [fresh] = store.collect(policy)
    assert (fresh.versions_kept, fresh.versions_freed, fresh.blocks_freed) == (5, 0, 0)  # all superseded < 60 s ago
    assert (fresh.blocks_kept, fresh.blocks_pending) == (6, 0)
    clock.advance(200)
    [result] = store.collect(policy)
    assert result.name == "v" and not result.error
    assert (result.versions_kept, result.versions_freed) == (2, 3)
    assert (result.blocks_kept, result.blocks_freed, result.blocks_pending) == (3, 3, 0)
    assert result.bytes_freed == 3 * len(b"content 0") and result.bytes_kept == 2 * len(b"content 0") + len(b"unchanged")
    assert _versions(backend) == [4, 5]
    assert _blocks(backend) == {_digest(b"content 3"), _digest(b"content 4"), _digest(b"unchanged")}
    assert store.read_file("v", "f") == b"content 4" and store.read_file("v", "same") == b"unchanged"
    assert store.collect(policy)[0].blocks_freed == 0  # nothing left to free


def test_garbage_goes_in_batches(backend, clock, monkeypatch):
    store = VolumeStore(backend, clock=clock)
    store.get_or_create("v", True)
    store.put_blocks("v", [b"block %d" % i for i in range(20)])
    clock.advance(10)
    monkeypatch.setattr(backend, "delete_batch", 7)
    batches = []
    real = backend.delete_many
    monkeypatch.setattr(backend, "delete_many", lambda keys: (batches.append(list(keys)), real(batches[-1])))
    assert store.collect(AGGRESSIVE)[0].blocks_freed == 20
    assert [len(b) for b in batches if b] == [7, 7, 6] and _blocks(backend) == set()


def test_a_long_sweep_lets_uploads_and_commits_in_between_its_batches(backend, clock, monkeypatch):
    """Deleting in batches must not hold the volume for the whole sweep: an upload and a commit that
    arrive during it finish before it does (locks are not fair: the sweep pauses between batches)."""
    if type(backend).__name__ != "LocalBackend":
        pytest.skip("ordering only: the local backend shows it")
    store = VolumeStore(backend, clock=clock)
    store.get_or_create("v", True)
    store.put_blocks("v", [b"garbage %d" % i for i in range(60)])
    clock.advance(10)
    monkeypatch.setattr(backend, "delete_batch", 5)
    real = backend.delete_many
    started = threading.Event()

    def slow_delete_many(keys):
        started.set()
        time.sleep(0.02)
        real(keys)

    monkeypatch.setattr(backend, "delete_many", slow_delete_many)
    events = []

    def sweep():
        store.collect(AGGRESSIVE)
        events.append("sweep done")

    def write():
        started.wait(10)
        store.commit("v", [_put(store, "v", "f", b"written during the sweep")], [])
        events.append("commit done")

    threads = [threading.Thread(target=sweep), threading.Thread(target=write)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert events == ["commit done", "sweep done"]
    assert store.read_file("v", "f") == b"written during the sweep"


def test_dry_run_reports_the_same_and_deletes_nothing(backend, clock):
    store = VolumeStore(backend, clock=clock)
    store.get_or_create("v", True)
    for i in range(3):
        store.commit("v", [_put(store, "v", "f", b"%d" % i)], [])
    clock.advance(10)
    before = sorted(backend.list("vol/v/"))
    [dry] = store.collect(AGGRESSIVE, dry_run=True)
    assert sorted(backend.list("vol/v/")) == before
    [real] = store.collect(AGGRESSIVE)
    assert (dry.blocks_freed, dry.bytes_freed, dry.versions_freed) == (real.blocks_freed, real.bytes_freed, real.versions_freed) == (2, 2, 2)


def test_unreferenced_blocks_wait_out_the_grace_period(backend, clock):
    store = VolumeStore(backend, clock=clock)
    policy = GcPolicy(keep_versions=0, retention_s=0, grace_s=300)
    store.get_or_create("v", True)
    store.put_blocks("v", [b"uploaded, commit still to come"])
    [result] = store.collect(policy)
    assert (result.blocks_pending, result.blocks_freed) == (1, 0)
    clock.advance(301)
    [result] = store.collect(policy)
    assert (result.blocks_pending, result.blocks_freed) == (0, 1) and _blocks(backend) == set()


def test_a_deleted_volumes_storage_is_collected(backend, clock):
    store = VolumeStore(backend, clock=clock)
    for name in ("gone", "kept"):
        store.get_or_create(name, True)
        store.commit(name, [_put(store, name, "f", name.encode() * 10)], [])
    manifest_bytes = len(backend.get("vol/gone/v/000000000001.json"))
    backend.delete("vol/gone/meta")  # a deletion cut short right after its first step
    results = {r.name: r for r in store.collect(GcPolicy())}
    assert results["gone"].deleted and results["gone"].blocks_freed == 1 and results["gone"].versions_freed == 1
    assert results["gone"].bytes_freed == len(b"gone" * 10) + manifest_bytes + len(b"1")  # block, manifest, HEAD
    assert list(backend.list("vol/gone/")) == [] and not results["kept"].deleted
    assert store.read_file("kept", "f") == b"kept" * 10
    store.delete("kept")  # an ordinary deletion takes everything at once
    assert list(backend.list("vol/kept/")) == [] and store.collect(GcPolicy()) == []


def test_a_crashed_commits_manifest_above_head_is_removed(backend, clock):
    store = VolumeStore(backend, clock=clock)
    store.get_or_create("v", True)
    store.commit("v", [_put(store, "v", "f", b"one")], [])
    backend.put("vol/v/v/000000000002.json", b'{"version": 2, "files": {}}')  # written, HEAD never moved
    [result] = store.collect(GcPolicy())
    assert result.versions_freed == 1 and _versions(backend) == [1]
    assert store.commit("v", [_put(store, "v", "f", b"two")], []) == 2 and store.read_file("v", "f") == b"two"


def test_one_volume_by_name_and_workspaces_apart(backend, clock):
    store = VolumeStore(backend, clock=clock)
    for name in ("a", "b", "team/a"):
        store.get_or_create(name, True)
        store.commit(name, [_put(store, name, "f", b"1")], [])
        store.commit(name, [_put(store, name, "f", b"2")], [])
    clock.advance(10)
    assert [r.name for r in store.collect(AGGRESSIVE, name="a")] == ["a"]
    assert [r.name for r in store.collect(AGGRESSIVE, workspace="")] == ["a", "b"]
    assert [r.name for r in store.collect(AGGRESSIVE, workspace="team")] == ["team/a"]
    assert {r.name for r in store.collect(AGGRESSIVE)} == {"a", "b", "team/a"}
    with pytest.raises(VolumeError) as err:
        store.collect(AGGRESSIVE, name="nothing")
    assert err.value.code == "NOT_FOUND"


def test_a_missing_head_manifest_skips_the_volume(backend, clock):
    store = VolumeStore(backend, clock=clock)
    store.get_or_create("v", True)
    store.commit("v", [_put(store, "v", "f", b"x")], [])
    backend.delete("vol/v/v/000000000001.json")
    clock.advance(10)
    [result] = store.collect(AGGRESSIVE)
    assert "manifest of HEAD version 1 is missing" in result.error and _blocks(backend) == {_digest(b"x")}


# --- commits racing the sweep: each interleaving forced at the dangerous moment -------------------

def _garbage_block(store, clock, data=b"reused"):
    """A volume whose only block `data` was committed and then overwritten: unreferenced and old."""
    store.get_or_create("v", True)
    store.commit("v", [_put(store, "v", "f", data)], [])
    store.commit("v", [_put(store, "v", "f", b"other")], [])
    clock.advance(10)
    return _digest(data)


def test_a_sweep_between_a_commits_check_and_its_manifest_spares_the_pinned_block(backend, clock, monkeypatch):
    store = VolumeStore(backend, clock=clock)
    digest = _garbage_block(store, clock)
    assert store.missing_blocks("v", [digest]) == []
    real_write = store._write_version
    swept = []

    def write_after_a_sweep(*args):
        thread = threading.Thread(target=lambda: swept.extend(store.collect(AGGRESSIVE)))
        thread.start()
        thread.join(30)
        return real_write(*args)

    monkeypatch.setattr(store, "_write_version", write_after_a_sweep)
    store.commit("v", [{"path": "g", "size": 6, "blocks": [digest]}], [])
    assert swept and swept[0].blocks_pending == 1 and swept[0].blocks_freed == 0
    assert store.read_file("v", "g") == b"reused"


def test_a_commit_landing_during_a_sweep_is_seen_before_anything_is_deleted(backend, clock, monkeypatch):
    store = VolumeStore(backend, clock=clock)
    digest = _garbage_block(store, clock)
    real_leases = _gc._leases

    def commit_then_read_leases(*args):
        # The sweep has listed the blocks and computed what HEAD references; now a commit reuses one.
        assert store.missing_blocks("v", [digest]) == []
        store.commit("v", [{"path": "g", "size": 6, "blocks": [digest]}], [])
        store.prune_claims(float("inf"))  # as if its claim were older than any grace: only the recheck of HEAD saves the block
        return real_leases(*args)

    monkeypatch.setattr(_gc, "_leases", commit_then_read_leases)
    [result] = store.collect(AGGRESSIVE)
    assert result.blocks_freed == 0 and store.read_file("v", "g") == b"reused"


def test_a_block_swept_before_the_commit_checked_fails_it_cleanly_and_a_retry_uploads_it(backend, clock):
    store = VolumeStore(backend, clock=clock)
    digest = _garbage_block(store, clock)
    assert store.missing_blocks("v", [digest]) == []  # "present": the client will not upload it
    clock.advance(1)
    assert store.collect(AGGRESSIVE)[0].blocks_freed == 1  # grace 0: the claim does not hold it
    with pytest.raises(VolumeError) as err:
        store.commit("v", [{"path": "g", "size": 6, "blocks": [digest]}], [])
    assert err.value.code == "FAILED_PRECONDITION" and "retry the commit" in str(err.value)
    assert store.manifest("v")[0] == 2 and store.read_file("v", "f") == b"other"
    assert store.missing_blocks("v", [digest]) == [digest]  # the retry uploads it again
    store.put_blocks("v", [b"reused"])
    store.commit("v", [{"path": "g", "size": 6, "blocks": [digest]}], [])
    assert store.read_file("v", "g") == b"reused"


def test_with_a_grace_period_the_claim_of_an_upload_keeps_its_block(backend, clock):
    store = VolumeStore(backend, clock=clock)
    digest = _garbage_block(store, clock)
    assert store.missing_blocks("v", [digest]) == []
    clock.advance(1)
    [result] = store.collect(GcPolicy(keep_versions=0, retention_s=0, grace_s=60))
    assert (result.blocks_freed, result.blocks_pending) == (0, 1)
    store.commit("v", [{"path": "g", "size": 6, "blocks": [digest]}], [])
    assert store.read_file("v", "g") == b"reused"


def test_a_lease_keeps_a_confirmed_block_across_a_control_plane_restart(backend, clock):
    store = VolumeStore(backend, clock=clock)
    digest = _garbage_block(store, clock)
    assert store.missing_blocks("v", [digest]) == []  # leased: present, and HEAD does not reference it
    restarted = VolumeStore(backend, clock=clock)  # in-memory claims are gone
    clock.advance(1)
    policy = GcPolicy(keep_versions=0, retention_s=0, grace_s=60)
    assert restarted.collect(policy)[0].blocks_pending == 1
    restarted.commit("v", [{"path": "g", "size": 6, "blocks": [digest]}], [])
    clock.advance(61)
    restarted.collect(policy)
    assert list(backend.list("vol/v/leases/")) == []  # expired leases go
    assert restarted.read_file("v", "g") == b"reused"


def test_an_upload_check_waits_for_the_sweep_batch_in_progress(backend, clock, monkeypatch):
    store = VolumeStore(backend, clock=clock)
    digest = _garbage_block(store, clock)
    real_delete_many = backend.delete_many
    seen = {}

    def delete_many_while_an_upload_checks(keys):
        keys = list(keys)
        if any("/b/" in k for k in keys):
            check = threading.Thread(target=lambda: seen.update(missing=store.missing_blocks("v", [digest])))
            check.start()
            check.join(0.3)
            seen["blocked"] = check.is_alive()  # the sweep holds the gate: the check cannot answer yet
            real_delete_many(keys)
            seen["thread"] = check
        else:
            real_delete_many(keys)

    monkeypatch.setattr(backend, "delete_many", delete_many_while_an_upload_checks)
    assert store.collect(AGGRESSIVE)[0].blocks_freed == 1
    seen["thread"].join(10)
    assert seen["blocked"] and seen["missing"] == [digest]  # answered after the delete: "upload it"


def test_gate_shares_and_excludes():
    from gpu_fabric.control_plane.volumes._gate import Gate

    gate, order, release = Gate(), [], threading.Event()

    def hold(kind: str) -> None:
        with getattr(gate, kind)():
            order.append(kind)
            release.wait(5)

    with gate.shared(), gate.shared():  # shared holders do not wait for each other
        writer = threading.Thread(target=hold, args=("exclusive",), daemon=True)
        writer.start()
        writer.join(0.1)
        assert writer.is_alive() and order == []  # waits for the shared holders
        reader = threading.Thread(target=hold, args=("shared",), daemon=True)
        reader.start()
        reader.join(0.1)
        assert order == []  # a waiting exclusive holder goes first
    for _ in range(500):
        if order:
            break
        time.sleep(0.01)
    assert order == ["exclusive"]  # and holds the gate alone
    release.set()
    writer.join(5)
    reader.join(5)
    assert order == ["exclusive", "shared"]


# --- and with real threads -------------------------------------------------------------------------

@pytest.mark.parametrize("grace_s", [0, 600])
def test_commits_racing_a_sweep_loop_never_lose_a_block(backend, clock, grace_s, monkeypatch):
    """Writers commit files drawn from a few shared contents (so blocks keep going unreferenced and
    coming back) while GC runs in a loop. Right after every deletion (for a batch of blocks, inside
    the sweep, which still holds the volume's lock and gate) and after every commit, a check asserts
    that HEAD's manifest and every block it references exist: deleting is the only way an object goes and committing the
    only way HEAD moves, so the invariant is checked everywhere it could break. With grace 0 a commit
    may fail cleanly and is retried; with a grace period no commit fails.

    The check takes no lock: HEAD only grows, so a HEAD read the same before and after the checks was
    that version throughout them. (A checker thread looping on the volume's lock starved commits and
    sweeps: a thread that releases a threading.Lock and takes it again at once nearly always gets it
    back first, and on moto a run took minutes.)"""
    store = VolumeStore(backend, clock=clock)
    store.get_or_create("v", True)
    policy = GcPolicy(keep_versions=0, retention_s=0, grace_s=grace_s)
    clock.advance(1000)  # every block is "old" when stored: only claims and pins protect one
    contents = [b"alpha", b"beta", b"gamma", b"delta"]
    rounds = 25 if type(backend).__name__ == "LocalBackend" else 10
    done, errors, failures, last = threading.Event(), [], [], {}
    checks, sweeps = [], []  # appended to (atomic) from several threads

    def check_head() -> None:
        while True:
            version = store.head("v")
            stored = store.read_manifest("v", version) if version else {"files": {}}
            lost = [(path, h) for path, entry in (stored or {"files": {}})["files"].items()
                    for h in entry["blocks"] if not backend.exists(f"vol/v/b/{h}")]
            if store.head("v") == version:
                break
        assert stored is not None, f"HEAD's manifest (version {version}) was deleted"
        assert not lost, f"HEAD (version {version}) lost blocks: " + ", ".join(f"{p}: {h[:12]}" for p, h in lost)
        checks.append(version)

    inside = threading.local()

    def checked(delete):
        """`delete` or `delete_many`, then the check (once: the base delete_many calls delete per key)."""
        def wrapper(keys) -> None:
            if getattr(inside, "delete", False):
                return delete(keys)
            keys = keys if isinstance(keys, str) else list(keys)
            inside.delete = True
            try:
                delete(keys)
            finally:
                inside.delete = False
            if keys:
                check_head()
        return wrapper

    monkeypatch.setattr(backend, "delete", checked(backend.delete))
    monkeypatch.setattr(backend, "delete_many", checked(backend.delete_many))

    def writer(w: int) -> None:
        rng = random.Random(w)
        try:
            for _ in range(rounds):
                data = rng.choice(contents)
                while True:
                    digest = _digest(data)
                    if store.missing_blocks("v", [digest]):
                        store.put_blocks("v", [data])
                    time.sleep(rng.random() * 0.004)  # the upload-to-commit window a sweep can fall into
                    try:
                        store.commit("v", [{"path": f"w{w}", "size": len(data), "blocks": [digest]}], [])
                        break
                    except VolumeError as exc:
                        if exc.code != "FAILED_PRECONDITION":
                            raise
                        failures.append(w)
                last[w] = data
                check_head()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def sweeper() -> None:
        try:
            while not done.is_set():
                clock.advance(0.5)
                for result in store.collect(policy):
                    assert not result.error, result.error
                    sweeps.append(result.blocks_freed)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(3)]
    sweep = threading.Thread(target=sweeper, daemon=True)
    for t in writers + [sweep]:
        t.start()
    deadline = time.monotonic() + 45
    for t in writers:
        t.join(max(0.0, deadline - time.monotonic()))
    done.set()
    sweep.join(15)
    assert not [t for t in writers + [sweep] if t.is_alive()], "writers or sweeper still running after 45 s"
    if errors:
        raise errors[0]  # with the thread's traceback
    if grace_s:
        assert not failures
    assert sweeps and len(checks) >= 3 * rounds, (len(sweeps), len(checks))  # each writer checks after each commit
    store.collect(policy)
    check_head()
    for w, data in last.items():
        assert store.read_file("v", f"w{w}") == data
