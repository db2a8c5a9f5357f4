"""VolumeStore on the local, S3 (moto) and OCI backends: commits, merges, a crash mid-commit, bad paths."""
import threading

import pytest

from gpu_fabric.control_plane.volumes import VolumeError, VolumeStore, check_path


def _put(store, name, path, data: bytes):
    digests = store.put_blocks(name, [data])
    return {"path": path, "size": len(data), "blocks": digests, "mode": 0o644, "mtime": 1.0}


def test_create_commit_read_delete(backend):
    store = VolumeStore(backend)
    with pytest.raises(VolumeError) as err:
        store.get_or_create("data", False)
    assert err.value.code == "NOT_FOUND"
    assert store.get_or_create("data", True)["version"] == 0
    assert store.commit("data", [_put(store, "data", "a/b.txt", b"hello")], []) == 1
    assert store.read_file("data", "/a/b.txt") == b"hello"
    assert store.info("data")["files"] == 1 and store.names() == ["data"]
    assert store.commit("data", [], ["a"]) == 2
    assert store.manifest("data") == (2, {})
    store.delete("data")
    assert store.names() == []
    store.delete("data", allow_missing=True)


def test_workspace_volumes_are_kept_apart(backend):
    # "ws/name": a volume of workspace ws (control_plane/_tokens.scoped_name); the default one's have no prefix.
    store = VolumeStore(backend)
    for name in ("ws", "ws/data", "other/data"):
        store.get_or_create(name, True)
        store.commit(name, [_put(store, name, "who", name.encode())], [])
    assert store.names() == ["ws"] and store.names("ws") == ["ws/data"] and store.names("other") == ["other/data"]
    store.delete("ws")  # the default workspace's volume "ws" is not workspace ws's storage
    assert store.read_file("ws/data", "who") == b"ws/data" and store.names() == []
    with pytest.raises(VolumeError) as err:
        store.get_or_create("Bad/data", True)
    assert err.value.code == "INVALID_ARGUMENT"


def test_concurrent_commits_to_different_files_both_survive(backend):
    store = VolumeStore(backend)
    store.get_or_create("v", True)
    puts = [_put(store, "v", f"f{i}", bytes([i]) * 10) for i in range(8)]
    threads = [threading.Thread(target=store.commit, args=("v", [p], [])) for p in puts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    version, files = store.manifest("v")
    assert version == 8 and sorted(files) == [f"f{i}" for i in range(8)]


def test_crash_mid_commit_leaves_previous_version_readable(backend):
    store = VolumeStore(backend)
    store.get_or_create("v", True)
    store.commit("v", [_put(store, "v", "model.bin", b"v1")], [])

    class Crash(Exception):
        pass

    real_put = backend.put

    def crashing_put(key, data):
        if key.endswith("/HEAD"):
            raise Crash("power cut after the manifest, before HEAD")
        real_put(key, data)

    backend.put = crashing_put
    with pytest.raises(Crash):
        store.commit("v", [_put(store, "v", "model.bin", b"v2")], [])
    backend.put = real_put
    fresh = VolumeStore(backend)  # e.g. after a control plane restart
    assert fresh.read_file("v", "model.bin") == b"v1"
    assert fresh.commit("v", [_put(fresh, "v", "model.bin", b"v3")], []) == 2
    assert fresh.read_file("v", "model.bin") == b"v3"


def test_unuploaded_blocks_and_escaping_paths_are_refused(backend):
    store = VolumeStore(backend)
    store.get_or_create("v", True)
    with pytest.raises(VolumeError) as err:
        store.commit("v", [{"path": "x", "size": 1, "blocks": ["0" * 64]}], [])
    assert err.value.code == "FAILED_PRECONDITION"
    for bad in ("../etc/passwd", "a/../../b"):
        with pytest.raises(VolumeError):
            store.commit("v", [_put(store, "v", bad, b"x")], [])
    assert check_path("/a//./b/") == "a/b"
    with pytest.raises(VolumeError):
        store.get_or_create("../x", True)


def test_a_file_replaces_a_directory_of_its_name(backend):
    store = VolumeStore(backend)
    store.get_or_create("v", True)
    store.commit("v", [_put(store, "v", "d/x", b"1"), _put(store, "v", "d/y", b"2")], [])
    store.commit("v", [_put(store, "v", "d", b"file")], [])
    assert sorted(store.manifest("v")[1]) == ["d"]


def test_a_volume_created_again_after_a_deletion_cut_short_starts_empty(backend):
    store = VolumeStore(backend)
    store.get_or_create("v", True)
    store.commit("v", [_put(store, "v", "old.txt", b"old")], [])
    backend.delete("vol/v/meta")  # what delete() does first; the crash comes before the rest
    assert store.names() == []
    assert store.get_or_create("v", True)["version"] == 0
    assert store.manifest("v") == (0, {})
    assert sorted(backend.list("vol/v/")) == ["vol/v/meta"]


def test_volume_names_by_workspace_skip_what_is_not_a_volume(backend):
    store = VolumeStore(backend)
    for name in ("a", "b", "team/c"):
        store.get_or_create(name, True)
    backend.put("vol/zombie/b/" + "0" * 64, b"left by a deletion cut short")
    assert store.names() == ["a", "b"] and store.names("team") == ["team/c"]
    assert store.stored_names("") == ["a", "b", "zombie"] and store.stored_names() == ["a", "b", "zombie", "team/c"]
