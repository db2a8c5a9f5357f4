"""A bounded local chunk cache: chunks fetched on first use, verified by hash, evicted LRU."""
from __future__ import annotations

import collections
import errno
import logging
import os
import tempfile
import threading
from typing import Iterable

from ._errors import CacheFullError, ChunkCorruptError
from ._store import ChunkStore, decode_chunk

logger = logging.getLogger(__name__)

__all__ = ["ChunkCache"]


class ChunkCache:
    """Decoded chunks as files under `root`, at most `max_bytes` of them.

    Files are written whole and renamed into place, so a chunk file that exists is complete and
    was verified when it was fetched. Several processes may share `root`; each keeps its own
    account of what it holds, so the bound is per process.
    """

    def __init__(self, root: str, source: ChunkStore, max_bytes: int = 8 << 30) -> None:
        self.root = os.path.abspath(root)
        self.source = source
        self.max_bytes = int(max_bytes)
        self.fetched = 0  # chunks pulled from the source (misses)
        self.fetched_bytes = 0
        os.makedirs(self.root, exist_ok=True)
        self._lock = threading.Lock()
        self._lru: "collections.OrderedDict[str, int]" = collections.OrderedDict()
        self._used = 0
        self._inflight: dict[str, threading.Lock] = {}
        for name in os.listdir(self.root):
            if len(name) == 64:
                size = os.path.getsize(os.path.join(self.root, name))
                self._lru[name] = size
                self._used += size

    @property
    def used_bytes(self) -> int:
        """Bytes of chunks this cache accounts for."""
        return self._used

    def path(self, digest: str) -> str:
        """The file that holds a cached chunk."""
        return os.path.join(self.root, digest)

    def __contains__(self, digest: str) -> bool:
        return digest in self._lru

    def ensure(self, digest: str) -> str:
        """Fetches the chunk unless cached; returns its file path."""
        with self._lock:
            if digest in self._lru:
                self._lru.move_to_end(digest)
                return self.path(digest)
            gate = self._inflight.setdefault(digest, threading.Lock())
        with gate:  # one fetch per chunk however many readers want it
            with self._lock:
                if digest in self._lru:
                    return self.path(digest)
            data = self._fetch(digest)
            self._insert(digest, data)
        with self._lock:
            self._inflight.pop(digest, None)
        return self.path(digest)

    def read(self, digest: str, offset: int, size: int) -> bytes:
        """`size` bytes from `offset` within the chunk."""
        path = self.ensure(digest)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # evicted by a neighbour process sharing the directory
            with self._lock:
                self._forget(digest)
            fd = os.open(self.ensure(digest), os.O_RDONLY)
        try:
            return os.pread(fd, size, offset)
        finally:
            os.close(fd)

    def get(self, digest: str) -> bytes:
        """The whole chunk."""
        with open(self.ensure(digest), "rb") as f:
            return f.read()

    def prefetch(self, digests: Iterable[str], threads: int = 4) -> threading.Thread:
        """Fetches `digests` in the background, in order, with a few parallel fetchers."""
        pending = collections.deque(dict.fromkeys(digests))
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    if not pending:
                        return
                    digest = pending.popleft()
                try:
                    self.ensure(digest)
                except Exception as exc:  # a miss later fetches it again, with the error then
                    logger.debug("prefetch of %s failed: %s", digest, exc)

        def run() -> None:
            workers = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
            for thread in workers:
                thread.start()
            for thread in workers:
                thread.join()

        runner = threading.Thread(target=run, name="fs-lazy-prefetch", daemon=True)
        runner.start()
        return runner

    # -- internals ---------------------------------------------------------------------------

    def _fetch(self, digest: str) -> bytes:
        # A corrupt copy is refetched once and never served.
        for attempt in (1, 2):
            blob = self.source.get_chunk_raw(digest)
            try:
                data = decode_chunk(blob, digest)
                break
            except ChunkCorruptError:
                if attempt == 2:
                    raise
                logger.warning("chunk %s failed its hash check; fetching it again", digest)
        self.fetched += 1
        self.fetched_bytes += len(data)
        return data

    def _forget(self, digest: str) -> None:
        size = self._lru.pop(digest, None)
        if size is not None:
            self._used -= size

    def _evict_for(self, size: int) -> None:
        while self._lru and self._used + size > self.max_bytes:
            victim, victim_size = self._lru.popitem(last=False)
            self._used -= victim_size
            try:
                os.unlink(self.path(victim))
            except FileNotFoundError:
                pass

    def _insert(self, digest: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            raise CacheFullError(f"chunk of {len(data)} bytes exceeds the whole cache ({self.max_bytes} bytes)")
        with self._lock:
            self._evict_for(len(data))
        for attempt in (1, 2):
            try:
                fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.path(digest))
                break
            except OSError as exc:
                if "tmp" in locals() and os.path.exists(tmp):
                    os.unlink(tmp)
                if exc.errno != errno.ENOSPC:
                    raise
                if attempt == 2:
                    raise CacheFullError(
                        f"the chunk cache at {self.root} is out of disk even after evicting; "
                        "free disk or lower the cache size") from None
                with self._lock:  # the disk filled before our bound: give back half of ours
                    self._evict_for(self.max_bytes - self._used // 2)
        with self._lock:
            self._lru[digest] = len(data)
            self._used += len(data)
