"""The lazy FUSE mount (system tier): reads fetch only touched chunks, the working set is prefetched next time."""
from __future__ import annotations

import os
import time

import pytest

import fs_lazy
from fs_lazy._fuse import load_working_set
from fs_lazy import LocalStore, mount_image, pack_tree

pytestmark = pytest.mark.system

_FUSE_OK, _FUSE_WHY = fs_lazy.fuse_available()
needs_fuse = pytest.mark.skipif(not _FUSE_OK, reason=f"FUSE unavailable: {_FUSE_WHY}")


@pytest.fixture
def image(tmp_path):
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    for i in range(8):
        (src / "lib" / f"part{i}.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    (src / "app.py").write_text("print('hi')\n")
    os.symlink("lib/part0.bin", src / "first")
    store = LocalStore(str(tmp_path / "store"))
    return store, pack_tree(str(src), store), src


def _cache_files(path) -> int:
    return len([n for n in os.listdir(path) if len(n) == 64]) if os.path.isdir(path) else 0


@needs_fuse
def test_lazy_mount_reads_only_what_is_touched(tmp_path, image):
    store, manifest, src = image
    mounted = mount_image(store, manifest.digest, str(tmp_path / "mnt"), cache_dir=str(tmp_path / "cache"),
                          working_set=str(tmp_path / "ws.json"))
    try:
        assert mounted.lazy and os.path.ismount(mounted.path)
        assert _cache_files(tmp_path / "cache") == 0  # nothing fetched just to mount
        assert sorted(os.listdir(mounted.path)) == ["app.py", "first", "lib"]
        assert (tmp_path / "mnt" / "app.py").read_text() == "print('hi')\n"
        with open(tmp_path / "mnt" / "first", "rb") as f:
            f.seek(1024 * 1024 + 5)
            assert f.read(10) == (src / "lib" / "part0.bin").read_bytes()[1024 * 1024 + 5:1024 * 1024 + 15]
        assert _cache_files(tmp_path / "cache") == 2  # app.py's chunk and one chunk of part0
        assert os.stat(tmp_path / "mnt" / "lib" / "part3.bin").st_size == 2 * 1024 * 1024
        with pytest.raises(OSError):
            open(tmp_path / "mnt" / "new", "w")
    finally:
        mounted.unmount()
    assert not os.path.ismount(tmp_path / "mnt")
    recorded = load_working_set(str(tmp_path / "ws.json"))
    assert len(recorded["chunks"]) == 2 and "app.py" in recorded["files"]

    # Next start: a fresh cache, and the recorded working set is fetched before anyone asks.
    again = mount_image(store, manifest.digest, str(tmp_path / "mnt"), cache_dir=str(tmp_path / "cache2"),
                        working_set=str(tmp_path / "ws.json"))
    try:
        deadline = time.monotonic() + 10
        while _cache_files(tmp_path / "cache2") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _cache_files(tmp_path / "cache2") == 2
    finally:
        again.unmount()


@needs_fuse
def test_corrupt_store_chunk_is_an_io_error_not_bad_bytes(tmp_path, image):
    store, manifest, _ = image
    digest = manifest.entries["app.py"].chunks[0]
    with open(store.path(f"chunks/{digest[:2]}/{digest}"), "wb") as f:
        f.write(b"\x00print('evil')\n")
    mounted = mount_image(store, manifest.digest, str(tmp_path / "mnt"), cache_dir=str(tmp_path / "cache"))
    try:
        with pytest.raises(OSError):
            (tmp_path / "mnt" / "app.py").read_bytes()
    finally:
        mounted.unmount()


def test_without_fuse_the_image_is_materialized(tmp_path, image, monkeypatch, caplog):
    store, manifest, src = image
    monkeypatch.setattr(fs_lazy._mount, "fuse_available", lambda: (False, "no /dev/fuse in this test"))
    mounted = mount_image(store, manifest.digest, str(tmp_path / "root"), cache_dir=str(tmp_path / "cache"))
    assert not mounted.lazy and "no /dev/fuse" in mounted.reason
    assert "no /dev/fuse" in caplog.text
    assert (tmp_path / "root" / "lib" / "part5.bin").read_bytes() == (src / "lib" / "part5.bin").read_bytes()
    mounted.unmount()
    assert not (tmp_path / "root").exists()


def test_an_image_too_large_for_the_disk_is_a_clear_error(tmp_path, image, monkeypatch):
    store, manifest, _ = image
    monkeypatch.setattr(fs_lazy._mount.shutil, "disk_usage", lambda path: shutil_usage(total=1 << 30, used=0,
                                                                                         free=4 << 20))
    with pytest.raises(fs_lazy.ImageTooLargeError) as info:
        mount_image(store, manifest.digest, str(tmp_path / "root"), cache_dir=str(tmp_path / "cache"), lazy=False)
    message = str(info.value)
    assert manifest.digest[:12] in message and "0.00 GiB free" in message and "FUSE" in message
    assert info.value.needed_bytes > 16 << 20 and info.value.free_bytes == 4 << 20
    assert not (tmp_path / "root").exists()  # nothing was written
    assert _cache_files(tmp_path / "cache") == 0


def shutil_usage(**fields):
    import collections

    return collections.namedtuple("usage", "total used free")(**fields)


@needs_fuse
def test_mounts_are_forked_by_the_launcher_and_report_their_failures(tmp_path, image):
    from fs_lazy._launcher import ServerProcess

    store, manifest, src = image
    assert fs_lazy.start_mount_launcher(wait=True)
    mounted = mount_image(store, manifest.digest, str(tmp_path / "mnt"), cache_dir=str(tmp_path / "cache"))
    try:
        assert isinstance(mounted.process, ServerProcess)
        assert (tmp_path / "mnt" / "lib" / "part2.bin").read_bytes() == (src / "lib" / "part2.bin").read_bytes()
    finally:
        mounted.unmount()
    assert mounted.process.poll() is not None and not os.path.ismount(tmp_path / "mnt")
    (tmp_path / "not-a-dir").write_text("x")
    with pytest.raises(fs_lazy.MountError, match="not-a-dir"):  # the server's own error, quoted
        mount_image(store, manifest.digest, str(tmp_path / "mnt2"), cache_dir=str(tmp_path / "not-a-dir" / "cache"))


def test_sequential_reads_fetch_ahead_and_seeks_do_not(tmp_path, image):
    from fs_lazy._fuse import LazyFS

    store, manifest, src = image
    cache = fs_lazy.ChunkCache(str(tmp_path / "cache"), store)
    fs = LazyFS(manifest, cache)
    part = manifest.entries["lib/part3.bin"].chunks
    dest = memoryview(bytearray(4096))
    assert fs.read_into("/lib/part3.bin", dest, (1 << 20) + 7) == 4096  # a seek: exactly that chunk
    assert fs.read("/lib/part3.bin", 10, 1 << 20, 0) == (src / "lib" / "part3.bin").read_bytes()[1 << 20:(1 << 20) + 10]
    assert part[0] not in cache and cache.fetched == 1
    first = manifest.entries["lib/part5.bin"].chunks
    assert fs.read("/lib/part5.bin", 4096, 0, 0) == (src / "lib" / "part5.bin").read_bytes()[:4096]
    cache.ensure(first[1])  # fetched ahead (or waited for): the reader started at the beginning
    assert cache.fetched == 3
    cache.close()
