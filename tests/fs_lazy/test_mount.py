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
