"""A bounded local chunk cache: chunks fetched on first use (and ahead of use), verified by hash, evicted LRU."""
from __future__ import annotations

import collections
import errno
import logging
import os
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Optional, TypeVar, Union

from ._errors import CacheFullError, ChunkCorruptError
from ._store import ChunkStore, decode_chunk_view, digest_of

logger = logging.getLogger(__name__)

__all__ = ["ChunkCache"]

Buffer = Union[bytes, memoryview]
T = TypeVar("T")


class ChunkCache:
    """Decoded chunks as files under `root`, at most `max_bytes` of them.

    Files are written whole and renamed into place, so a chunk file that exists is complete and
    was verified when it was fetched. Several processes may share `root`; each keeps its own
    account of what it holds, so the bound is per process.

    The cold path is what a lazy container start waits on, so: chunks are fetched and verified
    by `fetchers` threads ahead of the reader (`fetch_ahead`; hashing and I/O release the GIL;
    by default as many as the store says help), each into a buffer of its own that is reused
    (no fresh megabyte to fault in per chunk), and chunk files stay open (up to
    `max_open_files`) instead of being reopened for every read: a read is one pread from the
    page cache straight into the caller's buffer.
    """

    def __init__(self, root: str, source: ChunkStore, max_bytes: int = 8 << 30, *, fetchers: Optional[int] = None,
                 max_open_files: int = 256) -> None:
        self.root = os.path.abspath(root)
        self.source = source
        self.max_bytes = int(max_bytes)
        self.fetched = 0  # chunks pulled from the source (misses)
        self.fetched_bytes = 0
        os.makedirs(self.root, exist_ok=True)
        # Lock order: _fd_lock before _lock. _fd_lock is held across a pread so that no fd is
        # closed (and its number reused) under a reader.
        self._lock = threading.Lock()
        self._fd_lock = threading.Lock()
        self._lru: "collections.OrderedDict[str, int]" = collections.OrderedDict()
        self._used = 0
        self._inflight: dict[str, Future] = {}
        self._queued: set[str] = set()  # waiting for a fetcher thread, not yet claimed
        self._fds: "collections.OrderedDict[str, int]" = collections.OrderedDict()
        self._max_fds = max(int(max_open_files), 1)
        self._buffers = threading.local()  # each fetching thread's reusable read buffer
        self._fetchers = max(int(fetchers or getattr(source, "parallel_fetches", 4)), 1)
        self._pool: Optional[ThreadPoolExecutor] = None
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
        """Fetches the chunk unless cached (or waits for the fetch already under way); returns its file path."""
        for attempt in (1, 2):
            with self._lock:
                future, mine = self._claim(digest)
            if future is None:
                break
            if mine:
                self._load(digest, future)
                break
            try:
                future.result()
                break
            except Exception:
                if attempt == 2:
                    raise
                # A fetch ahead failed; fetch it ourselves once, so the error is ours to report.
        return self.path(digest)

    def fetch_ahead(self, digests: Iterable[str]) -> None:
        """Queues `digests` (those neither cached, queued nor under way) for the fetcher threads.

        A queued chunk is claimed only when a fetcher starts on it, so a reader that needs it
        sooner fetches it itself instead of waiting behind the queue.
        """
        for digest in digests:
            with self._lock:
                if digest in self._lru or digest in self._inflight or digest in self._queued:
                    continue
                self._queued.add(digest)
            self._executor().submit(self._fetch_queued, digest)

    def read(self, digest: str, offset: int, size: int) -> bytes:
        """`size` bytes from `offset` within the chunk."""
        out = bytearray(size)
        got = self.read_into(digest, offset, memoryview(out))
        return bytes(out[:got]) if got < size else bytes(out)

    def read_into(self, digest: str, offset: int, dest: memoryview) -> int:
        """Copies the chunk's bytes from `offset` into `dest` (as many as fit); returns how many."""
        return self._with_fd(digest, lambda fd: os.preadv(fd, [dest], offset))

    def copy_to(self, digest: str, fd: int) -> int:
        """Appends the whole chunk to the file open at `fd`, copied inside the kernel; returns its size."""
        def copy(source: int) -> int:
            size, done = os.fstat(source).st_size, 0
            while done < size:
                try:
                    step = os.copy_file_range(source, fd, size - done, done)
                except OSError:  # e.g. across filesystems on old kernels: copy through memory
                    step = os.write(fd, os.pread(source, size - done, done))
                if step <= 0:
                    break
                done += step
            return done

        return self._with_fd(digest, copy)

    def get(self, digest: str) -> bytes:
        """The whole chunk."""
        return self._with_fd(digest, lambda fd: os.pread(fd, os.fstat(fd).st_size, 0))

    def start_fetchers(self) -> None:
        """Starts the fetcher threads now, so that the first read does not wait for them."""
        pool = self._executor()
        for _ in range(self._fetchers):
            pool.submit(digest_of, b"")  # each idle worker takes one: all of them get started

    def close(self) -> None:
        """Stops the fetcher threads and closes the cached file descriptors."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        with self._fd_lock:
            with self._lock:
                fds, self._fds = list(self._fds.values()), collections.OrderedDict()
            for fd in fds:
                os.close(fd)

    # -- internals ---------------------------------------------------------------------------

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._fetchers, thread_name_prefix="fs-lazy-fetch")
        return self._pool

    def _claim(self, digest: str) -> tuple[Optional[Future], bool]:
        # Under _lock: (None, False) when cached; (future, True) when the caller must fetch it;
        # (future, False) when someone else is fetching it.
        if digest in self._lru:
            self._lru.move_to_end(digest)
            return None, False
        future = self._inflight.get(digest)
        if future is not None:
            return future, False
        future = self._inflight[digest] = Future()
        return future, True

    def _load(self, digest: str, future: Future) -> None:
        try:
            data = self._fetch(digest)
            self._insert(digest, data)
        except BaseException as exc:
            with self._lock:
                self._inflight.pop(digest, None)
            future.set_exception(exc)
            raise
        with self._lock:
            self._inflight.pop(digest, None)
        future.set_result(None)

    def _fetch_queued(self, digest: str) -> None:
        with self._lock:
            self._queued.discard(digest)
            future, mine = self._claim(digest)
        if not mine:
            return
        try:
            self._load(digest, future)
        except Exception as exc:  # the reader that needs it fetches again and reports the error
            logger.debug("fetch ahead of %s failed: %s", digest, exc)

    def _fetch(self, digest: str) -> Buffer:
        # A corrupt copy is refetched once and never served.
        for attempt in (1, 2):
            buffer = getattr(self._buffers, "buffer", None)
            if buffer is None:
                buffer = self._buffers.buffer = bytearray()
            blob = self.source.get_chunk_raw_into(digest, buffer)
            if isinstance(blob, memoryview) and isinstance(blob.obj, bytearray) and blob.obj is not buffer:
                self._buffers.buffer = blob.obj  # the store needed a bigger one: keep that
            try:
                data = decode_chunk_view(blob, digest)
                break
            except ChunkCorruptError:
                if attempt == 2:
                    raise
                logger.warning("chunk %s failed its hash check; fetching it again", digest)
        with self._lock:
            self.fetched += 1
            self.fetched_bytes += len(data)
        return data

    def _with_fd(self, digest: str, use: Callable[[int], T]) -> T:
        # Runs `use` on the chunk's open file, fetching it first if needed.
        for _ in range(3):
            self.ensure(digest)
            with self._fd_lock:
                try:
                    fd = self._fd(digest)
                except FileNotFoundError:  # evicted by a neighbour process sharing the directory
                    fd = None
                if fd is not None:
                    return use(fd)
            with self._lock:
                self._forget_locked(digest)
        raise CacheFullError(f"chunk {digest} keeps disappearing from the cache at {self.root}")

    def _fd(self, digest: str) -> int:
        # Under _fd_lock.
        with self._lock:
            fd = self._fds.get(digest)
            if fd is not None:
                self._fds.move_to_end(digest)
                return fd
        fd = os.open(self.path(digest), os.O_RDONLY)
        self._keep_fd(digest, fd)
        return fd

    def _keep_fd(self, digest: str, fd: int) -> None:
        # Under _fd_lock.
        with self._lock:
            old = self._fds.pop(digest, None)
            self._fds[digest] = fd
            extra = []
            while len(self._fds) > self._max_fds:
                extra.append(self._fds.popitem(last=False)[1])
        for stale in ([old] if old is not None and old != fd else []) + extra:
            os.close(stale)

    def _forget_locked(self, digest: str) -> list[int]:
        # Under _lock; returns the fd to close (under _fd_lock) if one was open.
        size = self._lru.pop(digest, None)
        if size is not None:
            self._used -= size
        fd = self._fds.pop(digest, None)
        return [fd] if fd is not None else []

    def _evict_for(self, size: int) -> list[int]:
        # Under _lock; returns the fds of evicted chunks, to close under _fd_lock.
        fds = []
        while self._lru and self._used + size > self.max_bytes:
            victim = next(iter(self._lru))
            fds += self._forget_locked(victim)
            try:
                os.unlink(self.path(victim))
            except FileNotFoundError:
                pass
        return fds

    def _evict(self, size: int) -> None:
        with self._fd_lock:
            with self._lock:
                fds = self._evict_for(size)
            for fd in fds:
                os.close(fd)

    def _insert(self, digest: str, data: Buffer) -> None:
        if len(data) > self.max_bytes:
            raise CacheFullError(f"chunk of {len(data)} bytes exceeds the whole cache ({self.max_bytes} bytes)")
        self._evict(len(data))
        fd = -1
        for attempt in (1, 2):
            tmp = None
            try:
                fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.replace(tmp, self.path(digest))
                break
            except OSError as exc:
                if fd >= 0:
                    os.close(fd)
                    fd = -1
                if tmp is not None and os.path.exists(tmp):
                    os.unlink(tmp)
                if exc.errno != errno.ENOSPC:
                    raise
                if attempt == 2:
                    raise CacheFullError(
                        f"the chunk cache at {self.root} is out of disk even after evicting; "
                        "free disk or lower the cache size") from None
                self._evict(self.max_bytes - self._used // 2)  # the disk filled before our bound: give back half
        with self._fd_lock:
            # The descriptor we wrote through now names the cache file: keep it for reads.
            self._keep_fd(digest, fd)
            with self._lock:
                self._lru[digest] = len(data)
                self._used += len(data)
