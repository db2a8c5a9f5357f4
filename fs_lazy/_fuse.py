"""The lazy FUSE filesystem (mfusepy): a read-only image tree whose file bytes come from the chunk cache."""
from __future__ import annotations

import errno
import json
import os
import threading
import time
from typing import Any, Optional

from ._cache import ChunkCache
from ._manifest import Entry, Manifest

__all__ = ["LazyFS", "WorkingSetRecorder"]


class WorkingSetRecorder:
    """Remembers which chunks were read, in first-read order, during the first `window_s` seconds."""

    def __init__(self, path: Optional[str], window_s: float = 30.0, clock=time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._until = clock() + window_s
        self._order: dict[str, None] = {}
        self._files: dict[str, None] = {}
        self._lock = threading.Lock()
        self._saved = False

    def note(self, file_path: str, digest: str) -> None:
        if self._saved or self._clock() > self._until:
            return
        with self._lock:
            self._order.setdefault(digest, None)
            self._files.setdefault(file_path, None)

    def save(self) -> None:
        """Writes the working set (merged with what an earlier run recorded)."""
        if not self.path or self._saved:
            return
        self._saved = True
        previous = load_working_set(self.path)
        digests = list(dict.fromkeys(list(self._order) + previous.get("chunks", [])))
        files = list(dict.fromkeys(list(self._files) + previous.get("files", [])))
        tmp = self.path + ".tmp"
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(tmp, "w") as f:
            json.dump({"chunks": digests, "files": files}, f)
        os.replace(tmp, self.path)


def load_working_set(path: Optional[str]) -> dict:
    """The recorded working set at `path` ({"chunks": [...], "files": [...]}), empty if none."""
    if not path:
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _fuse_error(code: int) -> Exception:
    import mfusepy

    return mfusepy.FuseOSError(code)


class LazyFS:
    """mfusepy operations over a Manifest: metadata from memory, bytes chunk by chunk from the cache.

    Not a subclass of mfusepy.Operations so that importing it needs no libfuse; operations it
    lacks are left to the kernel's defaults (ENOSYS).
    """

    use_ns = True
    # Chunks fetched ahead of a reader within one file: a start reads most files whole, so the
    # next chunks are wanted next, and fetching them in parallel hides the fetch and hash time.
    read_ahead_chunks = 8

    def __init__(self, manifest: Manifest, cache: ChunkCache, recorder: Optional[WorkingSetRecorder] = None,
                 on_init: Optional[Any] = None):
        self.manifest = manifest
        self.cache = cache
        self.recorder = recorder
        self.children = manifest.children()
        self._attrs: dict[str, dict[str, Any]] = {}
        self._on_init = on_init
        self._read_end: dict[str, int] = {}

    def _entry(self, path: str) -> Entry:
        entry = self.manifest.entries.get(path.strip("/"))
        if entry is None:
            raise _fuse_error(errno.ENOENT)
        return entry

    def init_with_config(self, conn: Any, config: Any) -> None:
        # An image never changes under its mount: let the kernel cache pages, names and attributes.
        if config is not None:
            config.kernel_cache = 1
            config.entry_timeout = config.attr_timeout = config.negative_timeout = 3600.0
        if conn is not None:
            # Bigger requests mean fewer round trips through this single-threaded server.
            conn.max_readahead = max(conn.max_readahead, 1 << 20)
        if self._on_init is not None:  # the mount is live from here on: tell whoever waits
            self._on_init()

    def getattr(self, path: str, fh: Optional[int] = None) -> dict[str, Any]:
        attrs = self._attrs.get(path)
        if attrs is None:
            entry = self._entry(path)
            mtime = entry.mtime_ns
            attrs = {
                "st_mode": entry.st_mode, "st_uid": entry.uid, "st_gid": entry.gid,
                "st_nlink": 2 + sum(1 for c in self.children.get(entry.path, ())
                                    if self.manifest.entries[f"{entry.path}/{c}" if entry.path else c].type == "d")
                if entry.type == "d" else 1,
                "st_size": entry.size if entry.type == "f" else len(entry.target) if entry.type == "l" else 0,
                "st_mtime": mtime, "st_ctime": mtime, "st_atime": mtime,
                "st_rdev": entry.rdev, "st_blksize": 4096,
                "st_blocks": (entry.size + 511) // 512,
            }
            self._attrs[path] = attrs
        return attrs

    def readdir(self, path: str, fh: int):
        entry = self._entry(path)
        if entry.type != "d":
            raise _fuse_error(errno.ENOTDIR)
        return [".", ".."] + self.children.get(entry.path, [])

    def readlink(self, path: str) -> str:
        entry = self._entry(path)
        if entry.type != "l":
            raise _fuse_error(errno.EINVAL)
        return entry.target

    def open(self, path: str, flags: int) -> int:
        entry = self._entry(path)
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise _fuse_error(errno.EROFS)
        if entry.type != "f":
            raise _fuse_error(errno.EISDIR if entry.type == "d" else errno.EINVAL)
        return 0

    def _pieces(self, path: str, size: int, offset: int):
        """(digest, offset within it, length) covering the read, after starting the fetches ahead."""
        entry = self._entry(path)
        chunk_size = self.manifest.chunk_size
        end = min(offset + size, entry.size)
        if offset >= end:
            return []
        first, last = offset // chunk_size, (end - 1) // chunk_size
        # Only a reader that looks sequential (from the start, or where it left off) gets the
        # next chunks fetched ahead; a reader that seeks gets exactly what it touches.
        if offset == 0 or self._read_end.get(entry.path) == offset:
            self.cache.fetch_ahead(entry.chunks[last + 1:last + 1 + self.read_ahead_chunks])
        self._read_end[entry.path] = end
        pieces = []
        for index in range(first, last + 1):
            within = offset - index * chunk_size
            take = min(chunk_size - within, end - offset)
            digest = entry.chunks[index]
            if self.recorder is not None:
                self.recorder.note(entry.path, digest)
            pieces.append((digest, within, take))
            offset += take
        return pieces

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        pieces = self._pieces(path, size, offset)
        try:
            return b"".join(self.cache.read(digest, within, take) for digest, within, take in pieces)
        except Exception:  # a chunk that cannot be fetched or verified is an I/O error, never bad bytes
            raise _fuse_error(errno.EIO) from None

    def read_into(self, path: str, dest: memoryview, offset: int) -> int:
        """Like `read`, straight into the kernel's buffer `dest`: no intermediate copies."""
        pieces = self._pieces(path, len(dest), offset)
        done = 0
        try:
            for digest, within, take in pieces:
                done += self.cache.read_into(digest, within, dest[done:done + take])
        except Exception:
            raise _fuse_error(errno.EIO) from None
        return done

    def statfs(self, path: str) -> dict[str, int]:
        total = max(self.manifest.total_size() // 4096, 1)
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": total, "f_bfree": 0, "f_bavail": 0,
                "f_files": len(self.manifest.entries), "f_ffree": 0, "f_namemax": 255}

    def access(self, path: str, amode: int) -> int:
        self._entry(path)
        if amode & os.W_OK:
            raise _fuse_error(errno.EROFS)
        return 0

    def destroy(self, path: str) -> None:
        if self.recorder is not None:
            self.recorder.save()
