"""Manifests (pack and materialize), the bounded chunk cache, and the builder's step cache."""
from __future__ import annotations

import errno
import os

import pytest

from fs_lazy import (BuildError, BuildStep, CacheFullError, ChunkCache, ChunkCorruptError, ImageBuilder, LocalStore,
                     Manifest, materialize, pack_tree)


def _tree(root) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "conf").write_text("a=1\n")
    (root / "bin").mkdir()
    big = os.urandom(3 * 1024 * 1024 + 17)
    (root / "bin" / "tool").write_bytes(big)
    (root / "bin" / "tool").chmod(0o755)
    (root / "bin" / "copy").write_bytes(big)  # same bytes: same chunks
    os.symlink("../etc/conf", root / "bin" / "link")
    (root / "empty").mkdir()


def test_pack_and_materialize_roundtrip(tmp_path):
    _tree(tmp_path / "src")
    store = LocalStore(str(tmp_path / "store"))
    manifest = pack_tree(str(tmp_path / "src"), store)
    tool = manifest.entries["bin/tool"]
    assert tool.chunks == manifest.entries["bin/copy"].chunks and len(tool.chunks) == 4
    assert len(manifest.unique_chunks()) == 5  # 4 of the big file, 1 of conf
    loaded = Manifest.load(store, manifest.digest)
    assert loaded.to_bytes() == manifest.to_bytes()
    materialize(loaded, store.get_chunk, str(tmp_path / "out"))
    out = tmp_path / "out"
    assert (out / "bin" / "tool").read_bytes() == (tmp_path / "src" / "bin" / "tool").read_bytes()
    assert os.stat(out / "bin" / "tool").st_mode & 0o777 == 0o755
    assert os.readlink(out / "bin" / "link") == "../etc/conf"
    assert (out / "empty").is_dir()
    assert os.stat(out / "etc" / "conf").st_mtime_ns == os.stat(tmp_path / "src" / "etc" / "conf").st_mtime_ns
    # The same tree packs to the same manifest digest.
    assert pack_tree(str(tmp_path / "src"), store).digest == manifest.digest


def test_pack_reuses_unchanged_files(tmp_path, monkeypatch):
    _tree(tmp_path / "src")
    store = LocalStore(str(tmp_path / "store"))
    first = pack_tree(str(tmp_path / "src"), store)
    (tmp_path / "src" / "etc" / "new").write_text("x")
    reads = []
    real_open = open

    def spy(path, *args, **kwargs):
        reads.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    second = pack_tree(str(tmp_path / "src"), store, previous=first)
    assert [r for r in reads if r.endswith(("tool", "copy"))] == []
    assert "etc/new" in second.entries


def test_cache_fetches_once_evicts_and_verifies(tmp_path):
    store = LocalStore(str(tmp_path / "store"))
    digests = [store.put_chunk(os.urandom(1000)) for _ in range(5)]
    cache = ChunkCache(str(tmp_path / "cache"), store, max_bytes=3000)
    for digest in digests:
        assert cache.get(digest) == store.get_chunk(digest)
    assert cache.fetched == 5 and cache.used_bytes == 3000
    assert digests[0] not in cache and digests[4] in cache  # least recently used went first
    cache.read(digests[4], 10, 5)
    assert cache.fetched == 5
    with pytest.raises(CacheFullError):
        ChunkCache(str(tmp_path / "small"), store, max_bytes=10).get(digests[0])


def test_cache_refetches_a_corrupt_chunk(tmp_path):
    store = LocalStore(str(tmp_path / "store"))
    digest = store.put_chunk(b"good" * 100)
    calls = []
    real = store.get_chunk_raw

    def flaky(d):
        calls.append(d)
        return b"\x00bad" if len(calls) == 1 else real(d)

    store.get_chunk_raw = flaky
    cache = ChunkCache(str(tmp_path / "cache"), store)
    assert cache.get(digest) == b"good" * 100 and len(calls) == 2


def test_cache_full_disk_evicts_then_errors(tmp_path, monkeypatch):
    store = LocalStore(str(tmp_path / "store"))
    digests = [store.put_chunk(os.urandom(100)) for _ in range(3)]
    cache = ChunkCache(str(tmp_path / "cache"), store, max_bytes=10_000)
    cache.get(digests[0])
    real_replace = os.replace

    def no_space(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(CacheFullError):
        cache.get(digests[1])
    assert digests[0] not in cache  # it evicted before giving up
    monkeypatch.setattr(os, "replace", real_replace)
    assert cache.get(digests[1]) == store.get_chunk(digests[1])


def test_builder_reuses_prefix_and_caches_nothing_for_a_failed_step(tmp_path):
    store = LocalStore(str(tmp_path / "store"))
    builder = ImageBuilder(store, str(tmp_path / "work"))
    ran = []

    def base(root, log):
        ran.append("base")
        os.makedirs(os.path.join(root, "etc"))

    def write(name):
        def apply(root, log):
            ran.append(name)
            log(f"writing {name}\n")
            with open(os.path.join(root, "etc", name), "w") as f:
                f.write(name)
        return BuildStep(f"write {name}", apply)

    first = builder.build("base-1", base, [write("a"), write("b")])
    assert ran == ["base", "a", "b"] and first.built_steps == 3
    ran.clear()
    again = builder.build("base-1", base, [write("a"), write("b")])
    assert ran == [] and again.manifest_digest == first.manifest_digest and again.cached_steps == 3
    changed = builder.build("base-1", base, [write("a"), write("c")])
    assert ran == ["c"] and changed.cached_steps == 2
    assert set(Manifest.load(store, changed.manifest_digest).entries) >= {"etc/a", "etc/c"}
    assert "etc/b" not in Manifest.load(store, changed.manifest_digest).entries

    def fail(root, log):
        log("step output\n")
        raise BuildError("boom", "step output\n")

    ran.clear()
    with pytest.raises(BuildError) as info:
        builder.build("base-1", base, [write("a"), BuildStep("fail", fail)])
    assert info.value.log == "step output\n"
    assert builder.lookup(info.value and __import__("fs_lazy._builder", fromlist=["x"]).step_keys(
        "base-1", [write("a"), BuildStep("fail", fail)])[-1]) is None
    ran.clear()
    builder.build("base-1", base, [write("a"), write("b").__class__("write b", write("b").apply, force=True)])
    assert ran == ["b"]  # force_build rebuilds the step even though it is cached
    assert os.listdir(tmp_path / "work") == []


def _counting(store):
    import threading

    counts: dict[str, int] = {}
    lock = threading.Lock()
    real = store.get_chunk_raw

    def get(digest):
        with lock:
            counts[digest] = counts.get(digest, 0) + 1
        return real(digest)

    store.get_chunk_raw = get
    return counts


def test_fetch_ahead_fetches_each_chunk_once_however_many_readers(tmp_path):
    import threading

    store = LocalStore(str(tmp_path / "store"))
    blobs = [os.urandom(100_000) for _ in range(12)]
    digests = [store.put_chunk(b) for b in blobs]
    counts = _counting(store)
    cache = ChunkCache(str(tmp_path / "cache"), store, fetchers=3)
    cache.fetch_ahead(digests)
    cache.fetch_ahead(digests)  # already under way: nothing new
    results: dict[int, bytes] = {}

    def reader(i: int) -> None:
        dest = bytearray(200_000)
        got = cache.read_into(digests[i % 12], 5, memoryview(dest))
        results[i] = bytes(dest[:got])

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(36)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results[i] == blobs[i % 12][5:] for i in range(36))
    assert counts == {d: 1 for d in digests} and cache.fetched == 12
    assert all(cache.read(d, 0, 10) == b[:10] for d, b in zip(digests, blobs))
    cache.close()


def test_cache_reads_through_open_files(tmp_path, monkeypatch):
    store = LocalStore(str(tmp_path / "store"))
    digests = [store.put_chunk(os.urandom(5000)) for _ in range(3)]
    cache = ChunkCache(str(tmp_path / "cache"), store)
    for d in digests:
        cache.get(d)
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    for _ in range(5):
        for d in digests:
            assert len(cache.read(d, 100, 200)) == 200
    assert opened == []  # the descriptors written through are kept for reads
    fresh = ChunkCache(str(tmp_path / "cache"), store)  # another process's view
    for _ in range(3):
        fresh.read(digests[0], 0, 10)
    assert len(opened) == 1 and fresh.fetched == 0
    cache.close()
    fresh.close()


def test_a_corrupt_chunk_fetched_ahead_is_never_served(tmp_path):
    store = LocalStore(str(tmp_path / "store"))
    good = store.put_chunk(b"good" * 1000)
    bad = store.put_chunk(b"fine" * 1000)
    real = store.get_chunk_raw
    calls = []

    def tampered(digest):
        calls.append(digest)
        return b"\x00evil" * 1000 if digest == bad else real(digest)

    store.get_chunk_raw = tampered
    cache = ChunkCache(str(tmp_path / "cache"), store)
    cache.fetch_ahead([bad, good])
    with pytest.raises(ChunkCorruptError):
        cache.read(bad, 0, 10)
    assert bad not in cache and not os.path.exists(cache.path(bad))
    assert calls.count(bad) >= 3  # ahead (fetch + refetch), then the reader's own refetch
    assert cache.read(good, 0, 4) == b"good"
    cache.close()


def test_chunks_of_any_size_come_back_whole_through_the_reused_buffers(tmp_path):
    store = LocalStore(str(tmp_path / "store"))
    blobs = [os.urandom(n) for n in (10, 2 << 20, 100, 3 << 20, 7)]
    digests = [store.put_chunk(b) for b in blobs]
    bad = store.put_chunk(b"never served" * 10)
    os.truncate(store.path(f"chunks/{bad[:2]}/{bad}"), 20)  # damaged in the store
    cache = ChunkCache(str(tmp_path / "cache"), store, fetchers=1)
    with pytest.raises(ChunkCorruptError):
        cache.get(bad)
    cache.fetch_ahead(digests)
    assert [cache.get(d) for d in digests] == blobs
    cache.close()
