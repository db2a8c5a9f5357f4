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
from typing import TYPE_CHECKING, Optional, Union

from ._errors import ImageTooLargeError, MountError
from ._launcher import ServerProcess, default_launcher, server_argv, server_env
from ._manifest import Manifest, materialize
from ._store import ChunkStore, LocalStore, S3Store, OCIStore

if TYPE_CHECKING:
    from ._cache import ChunkCache

logger = logging.getLogger(__name__)

__all__ = ["MountedImage", "fuse_available", "mount_image", "open_store", "start_mount_launcher", "store_url"]


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


def start_mount_launcher(wait: bool = False) -> bool:
    """Starts this process's mount launcher now rather than on the first mount (a worker does at start).

    The launcher imports FUSE once and forks a server per mount, taking that import off every
    container start. Returns False (and mounts start their own processes) where FUSE is unavailable.
    """
    if not fuse_available()[0]:
        return False
    default_launcher().start(wait=wait)
    return True


@dataclass
class MountedImage:
    """An image available as a directory tree at `path`; `unmount()` when done."""

    path: str
    lazy: bool
    manifest: Manifest
    process: Optional[Union[subprocess.Popen, ServerProcess]] = None
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
        _check_room(manifest, cache, mountpoint, reason)
        try:  # every chunk fetched (verified) into the cache, then the whole tree written
            materialize(manifest, cache.get, mountpoint, fetch_ahead=cache.fetch_ahead, copy_chunk=cache.copy_to)
        finally:
            cache.close()
        return MountedImage(mountpoint, False, manifest, reason=reason)
    os.makedirs(mountpoint, exist_ok=True)
    ready = mountpoint.rstrip("/") + ".ready"
    if os.path.exists(ready):
        os.unlink(ready)
    args = ["mount", "--store", store_url(store), "--manifest", manifest_digest, "--cache", cache_dir,
            "--cache-max-bytes", str(cache_max_bytes), "--ready-file", ready, mountpoint]
    if working_set:
        args[1:1] = ["--working-set", working_set]
    proc: Union[subprocess.Popen, ServerProcess]
    try:
        proc = default_launcher().launch(args, mountpoint.rstrip("/") + ".log")
    except OSError as exc:  # no launcher: a server process of its own, which is slower to start
        logger.warning("fs_lazy mount launcher unavailable (%s); starting a mount process directly", exc)
        proc = subprocess.Popen(server_argv(args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True, env=server_env())
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if isinstance(proc, ServerProcess):
                err = proc.error_output()
            else:
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            raise MountError(f"the FUSE mount of image {manifest_digest[:12]} exited with {proc.returncode}: {err}")
        if os.path.exists(ready) and os.path.ismount(mountpoint):
            return MountedImage(mountpoint, True, manifest, proc)
        time.sleep(0.0005)
    proc.kill()
    raise MountError(f"the FUSE mount of image {manifest_digest[:12]} was not ready within {timeout_s:g}s")


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def _check_room(manifest: Manifest, cache: "ChunkCache", dest: str, why_eager: str) -> None:
    """Refuses an eager copy that the disk cannot hold, before writing anything."""
    sizes: dict[str, int] = {}
    for entry in manifest.entries.values():
        for index, digest in enumerate(entry.chunks):
            sizes[digest] = min(manifest.chunk_size, entry.size - index * manifest.chunk_size)
    tree = manifest.total_size()
    uncached = sum(size for digest, size in sizes.items() if digest not in cache)
    room_in_cache = max(cache.max_bytes - cache.used_bytes, 0)
    needed = tree + min(uncached, room_in_cache)
    existing = dest
    while not os.path.exists(existing):
        existing = os.path.dirname(existing) or "."
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise ImageTooLargeError(
            f"image {manifest.digest[:12]} needs {_gib(needed)} of disk to be copied here ({_gib(tree)} of files"
            f" plus chunks for the cache) but {existing} has {_gib(free)} free; it is copied because {why_eager}."
            " Run it on a worker with FUSE (a lazy mount needs only what the container reads) or with more"
            " free disk, or make the image smaller", needed, free)


def _raise_read_ahead(mountpoint: str, kib: int = 1024) -> None:
    """Lets the kernel send 1 MiB reads (a chunk) instead of 128 KiB ones: 8x fewer round trips.

    FUSE caps read-ahead at 128 KiB whatever the server asks; root may raise it per mount.
    """
    target = os.path.abspath(mountpoint)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                point = fields[4].encode().decode("unicode_escape")
                if point == target and "fuse" in line.split(" - ", 1)[-1].split()[0]:
                    with open(f"/sys/class/bdi/{fields[2]}/read_ahead_kb", "w") as ra:
                        ra.write(str(kib))
    except (OSError, IndexError, UnicodeDecodeError):
        pass  # not root, or no sysfs: 128 KiB reads still work


def serve(store_url_: str, manifest_digest: str, mountpoint: str, cache_dir: str, cache_max_bytes: int,
          working_set: Optional[str], ready_file: Optional[str]) -> None:
    """Runs the FUSE loop in this process until unmounted or SIGTERM (the mount process's main)."""
    import ctypes

    import mfusepy

    from ._cache import ChunkCache
    from ._fuse import LazyFS, WorkingSetRecorder, load_working_set

    # The FUSE thread waits on fetcher threads all the time: hand the GIL over quickly.
    sys.setswitchinterval(0.0005)
    store = open_store(store_url_)
    manifest = Manifest.load(store, manifest_digest)
    cache = ChunkCache(cache_dir, store, cache_max_bytes)
    recorder = WorkingSetRecorder(working_set) if working_set else None
    recorded = load_working_set(working_set).get("chunks", [])
    cache.start_fetchers()
    if recorded:  # what earlier starts read, in the order they read it, on the fetcher threads
        cache.fetch_ahead(recorded)

    def announce() -> None:
        # Called from FUSE init: the kernel shows the mount by then, so callers can start at once.
        _raise_read_ahead(mountpoint)
        if ready_file:
            with open(ready_file, "w") as f:
                json.dump({"pid": os.getpid()}, f)

    operations = LazyFS(manifest, cache, recorder, on_init=announce)

    class DirectFUSE(mfusepy.FUSE):
        """mfusepy with reads written straight into libfuse's buffer (one copy fewer per read)."""

        def read(self, path, buf, size, offset, fip):  # noqa: D401 - the libfuse callback
            dest = memoryview((ctypes.c_char * size).from_address(ctypes.addressof(buf.contents))).cast("B")
            return self.operations.read_into(None if path is None else path.decode(self.encoding, self.errors),
                                             dest, offset)

    # No Python SIGTERM handler: libfuse installs its own only over the default one, and its
    # handler ends the loop cleanly (unmount, then `destroy` saves the working set).
    allow_other = os.geteuid() == 0  # sandboxes run under other ids; only root may allow that by default
    # One thread: mfusepy serves faster single-threaded (the GIL), and fetches run on the cache's
    # own fetcher threads anyway.
    DirectFUSE(operations, mountpoint, foreground=True, nothreads=True, ro=True, allow_other=allow_other,
               default_permissions=True, fsname="fs_lazy", subtype="fs_lazy")
    if recorder is not None:
        recorder.save()
