"""Mounting an image: a FUSE process serving it lazily, or an eager copy where FUSE is missing."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Optional

from ._errors import MountError
from ._manifest import Manifest, materialize
from ._store import ChunkStore, LocalStore, S3Store, OCIStore

logger = logging.getLogger(__name__)

__all__ = ["MountedImage", "fuse_available", "mount_image", "open_store", "store_url"]


def open_store(url: str) -> ChunkStore:
    """A store from its URL: `file:///dir` (or a plain path), `s3://bucket/prefix`, `oci://namespace/bucket/prefix`."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[5:].partition("/")
        return S3Store(bucket, prefix, endpoint_url=os.environ.get("FS_LAZY_S3_ENDPOINT") or None)
    if url.startswith("oci://"):
        namespace, _, rest = url[6:].partition("/")
        bucket, _, prefix = rest.partition("/")
        return OCIStore(namespace, bucket, prefix)
    return LocalStore(url[7:] if url.startswith("file://") else url)


def store_url(store: ChunkStore) -> str:
    """The URL `open_store` turns back into `store`."""
    if isinstance(store, LocalStore):
        return "file://" + store.root
    if isinstance(store, S3Store):
        return f"s3://{store.bucket}/{store.prefix}"
    if isinstance(store, OCIStore):
        return f"oci://{store.namespace}/{store.bucket}/{store.prefix}"
    raise MountError(f"{type(store).__name__} has no URL; a mount process cannot open it")


def fuse_available() -> tuple[bool, str]:
    """(True, "") when this process can mount FUSE filesystems, else (False, why not)."""
    if not os.path.exists("/dev/fuse"):
        return False, "/dev/fuse does not exist"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return False, "/dev/fuse is not readable and writable by this user"
    if shutil.which("fusermount3") is None and os.geteuid() != 0:
        return False, "fusermount3 is not installed (Debian package fuse3)"
    try:
        import mfusepy  # noqa: F401 - loads libfuse3
    except (ImportError, OSError, EnvironmentError) as exc:
        return False, f"mfusepy cannot load libfuse: {exc}"
    return True, ""


@dataclass
class MountedImage:
    """An image available as a directory tree at `path`; `unmount()` when done."""

    path: str
    lazy: bool
    manifest: Manifest
    process: Optional[subprocess.Popen] = None
    reason: str = ""

    def unmount(self, timeout_s: float = 10.0) -> None:
        """Unmounts (saving the recorded working set) or removes the eager copy."""
        if not self.lazy:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if os.path.ismount(self.path):  # the server died without unmounting: detach what is left
            subprocess.run(["fusermount3", "-u", "-z", self.path], capture_output=True)


def mount_image(store: ChunkStore, manifest_digest: str, mountpoint: str, *, cache_dir: str,
                cache_max_bytes: int = 8 << 30, working_set: Optional[str] = None, lazy: bool = True,
                timeout_s: float = 30.0) -> MountedImage:
    """Makes the image `manifest_digest` readable at `mountpoint`.

    Lazily through FUSE when available (a child process that fetches chunks on first read,
    records the working set to `working_set` and prefetches what an earlier run recorded there);
    otherwise, or with `lazy=False`, by copying the whole tree first (the reason is logged).
    """
    manifest = Manifest.load(store, manifest_digest)
    reason = "" if lazy else "eager materialization requested"
    if lazy:
        ok, why = fuse_available()
        if not ok:
            reason = f"FUSE unavailable ({why})"
    if reason:
        if lazy:
            logger.warning("materializing image %s eagerly: %s", manifest_digest[:12], reason)
        from ._cache import ChunkCache

        cache = ChunkCache(cache_dir, store, cache_max_bytes)
        materialize(manifest, cache.get, mountpoint)
        return MountedImage(mountpoint, False, manifest, reason=reason)
    os.makedirs(mountpoint, exist_ok=True)
    ready = mountpoint.rstrip("/") + ".ready"
    if os.path.exists(ready):
        os.unlink(ready)
    argv = [sys.executable, "-m", "fs_lazy", "mount", "--store", store_url(store), "--manifest", manifest_digest,
            "--cache", cache_dir, "--cache-max-bytes", str(cache_max_bytes), "--ready-file", ready,
            mountpoint]
    if working_set:
        argv[4:4] = ["--working-set", working_set]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            raise MountError(f"the FUSE mount of image {manifest_digest[:12]} exited with {proc.returncode}: {err}")
        if os.path.exists(ready) and os.path.ismount(mountpoint):
            return MountedImage(mountpoint, True, manifest, proc)
        time.sleep(0.002)
    proc.kill()
    raise MountError(f"the FUSE mount of image {manifest_digest[:12]} was not ready within {timeout_s:g}s")


def serve(store_url_: str, manifest_digest: str, mountpoint: str, cache_dir: str, cache_max_bytes: int,
          working_set: Optional[str], ready_file: Optional[str]) -> None:
    """Runs the FUSE loop in this process until unmounted or SIGTERM (the mount process's main)."""
    import threading

    import mfusepy

    from ._cache import ChunkCache
    from ._fuse import LazyFS, WorkingSetRecorder, load_working_set

    store = open_store(store_url_)
    manifest = Manifest.load(store, manifest_digest)
    cache = ChunkCache(cache_dir, store, cache_max_bytes)
    recorder = WorkingSetRecorder(working_set) if working_set else None
    recorded = load_working_set(working_set).get("chunks", [])
    if recorded:
        cache.prefetch([d for d in recorded if d not in cache])
    operations = LazyFS(manifest, cache, recorder)

    def announce() -> None:
        # The ready file appears once the kernel shows the mount, so callers can start at once.
        while not os.path.ismount(mountpoint):
            time.sleep(0.001)
        if ready_file:
            with open(ready_file, "w") as f:
                json.dump({"pid": os.getpid()}, f)

    # No Python SIGTERM handler: libfuse installs its own only over the default one, and its
    # handler ends the loop cleanly (unmount, then `destroy` saves the working set).
    threading.Thread(target=announce, daemon=True).start()
    allow_other = os.geteuid() == 0  # sandboxes run under other ids; only root may allow that by default
    mfusepy.FUSE(operations, mountpoint, foreground=True, ro=True, allow_other=allow_other,
                 default_permissions=True, fsname="fs_lazy", subtype="fs_lazy")
    if recorder is not None:
        recorder.save()
