"""Image manifests: the file tree with metadata, each regular file a list of chunk digests."""
from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

from ._store import ChunkStore

__all__ = ["Entry", "Manifest", "pack_tree", "materialize", "DEFAULT_CHUNK_SIZE"]

# Small enough that a start reads little it does not need, big enough to keep fetches few.
DEFAULT_CHUNK_SIZE = 1024 * 1024

_TYPES = {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFCHR: "c", stat.S_IFBLK: "b",
          stat.S_IFIFO: "p"}
_MODES = {v: k for k, v in _TYPES.items()}


@dataclass
class Entry:
    """One node of the tree; `path` is relative to the image root ("" is the root)."""

    path: str
    type: str
    mode: int
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    size: int = 0
    chunks: list[str] = field(default_factory=list)
    target: str = ""
    rdev: int = 0

    @property
    def st_mode(self) -> int:
        """`mode` with its file-type bits, as stat() reports it."""
        return _MODES[self.type] | self.mode

    def to_json(self) -> dict:
        out = {"path": self.path, "type": self.type, "mode": self.mode, "uid": self.uid, "gid": self.gid,
               "mtime_ns": self.mtime_ns}
        if self.type == "f":
            out.update(size=self.size, chunks=self.chunks)
        elif self.type == "l":
            out["target"] = self.target
        elif self.type in ("c", "b"):
            out["rdev"] = self.rdev
        return out


@dataclass
class Manifest:
    """A whole image tree. `digest` is set once the manifest is stored."""

    entries: dict[str, Entry]
    chunk_size: int = DEFAULT_CHUNK_SIZE
    digest: str = ""

    def to_bytes(self) -> bytes:
        """Canonical JSON: the same tree always gives the same manifest digest."""
        body = {"version": 1, "chunk_size": self.chunk_size,
                "entries": [self.entries[p].to_json() for p in sorted(self.entries)]}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes, digest: str = "") -> "Manifest":
        body = json.loads(data)
        entries = {}
        for raw in body["entries"]:
            entry = Entry(**raw)
            entries[entry.path] = entry
        return cls(entries, body.get("chunk_size", DEFAULT_CHUNK_SIZE), digest)

    def store(self, store: ChunkStore) -> str:
        """Puts the manifest in `store`; returns (and records) its digest."""
        self.digest = store.put_blob(self.to_bytes())
        return self.digest

    @classmethod
    def load(cls, store: ChunkStore, digest: str) -> "Manifest":
        """The manifest stored under `digest`."""
        return cls.from_bytes(store.get_blob(digest), digest)

    def children(self) -> dict[str, list[str]]:
        """Directory path -> names of its entries."""
        out: dict[str, list[str]] = {p: [] for p, e in self.entries.items() if e.type == "d"}
        for path in self.entries:
            if path:
                parent, _, name = path.rpartition("/")
                out.setdefault(parent, []).append(name)
        return out

    def total_size(self) -> int:
        """Bytes of file content (what an eager copy writes)."""
        return sum(e.size for e in self.entries.values() if e.type == "f")

    def unique_chunks(self) -> list[str]:
        """Every chunk digest once, in tree order."""
        seen: dict[str, None] = {}
        for path in sorted(self.entries):
            for digest in self.entries[path].chunks:
                seen.setdefault(digest, None)
        return list(seen)


def _walk(root: str) -> Iterator[tuple[str, os.stat_result]]:
    yield "", os.lstat(root)
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for item in it:
                path = f"{rel}/{item.name}" if rel else item.name
                st = item.stat(follow_symlinks=False)
                yield path, st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(path)


def pack_tree(root: str, store: ChunkStore, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
              previous: Optional[Manifest] = None) -> Manifest:
    """Stores the tree at `root` as chunks plus a manifest; returns the stored manifest.

    Files whose size and mtime match `previous` (the image one build step earlier) keep its
    chunks without being read again: a step that touches little costs little to pack.
    """
    entries: dict[str, Entry] = {}
    for path, st in _walk(root):
        kind = _TYPES.get(stat.S_IFMT(st.st_mode))
        if kind is None:
            continue  # sockets do not belong in an image
        entry = Entry(path, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)
        if kind == "f":
            entry.size = st.st_size
            old = previous.entries.get(path) if previous else None
            if old is not None and old.type == "f" and old.size == st.st_size and old.mtime_ns == st.st_mtime_ns:
                entry.chunks = list(old.chunks)
            else:
                with open(os.path.join(root, path), "rb") as f:
                    entry.chunks = [store.put_chunk(block) for block in iter(lambda: f.read(chunk_size), b"")]
        elif kind == "l":
            entry.target = os.readlink(os.path.join(root, path))
        elif kind in ("c", "b"):
            entry.rdev = st.st_rdev
        entries[path] = entry
    manifest = Manifest(entries, chunk_size)
    manifest.store(store)
    return manifest


def materialize(manifest: Manifest, fetch: Callable[[str], bytes], dest: str, *,
                fetch_ahead: Optional[Callable[[list[str]], None]] = None, window: int = 16,
                copy_chunk: Optional[Callable[[str, int], int]] = None) -> None:
    """Writes the whole tree to `dest` (the eager path: copy everything before starting).

    With `fetch_ahead`, the next `window` chunks in writing order are requested ahead of the
    writer, so fetching and verifying overlap with writing. With `copy_chunk(digest, fd)`, a
    chunk is appended to the file being written by that (an in-kernel copy from a cache file)
    instead of through `fetch`'s bytes.
    """
    as_root = os.geteuid() == 0
    os.makedirs(dest, exist_ok=True)
    dirs = []
    if fetch_ahead is not None:
        order = [d for path in sorted(manifest.entries) for d in manifest.entries[path].chunks]
        fetch_ahead(order[:window])
        position = 0

        def ahead() -> None:
            nonlocal position
            fetch_ahead(order[position + window:position + window + 1])
            position += 1
    else:
        def ahead() -> None:
            pass
    for path in sorted(manifest.entries):
        entry = manifest.entries[path]
        target = os.path.join(dest, path) if path else dest
        if entry.type == "d":
            os.makedirs(target, exist_ok=True)
            dirs.append((target, entry))
            continue
        if entry.type == "f":
            with open(target, "wb") as f:
                for digest in entry.chunks:
                    ahead()
                    if copy_chunk is not None:
                        f.flush()
                        copy_chunk(digest, f.fileno())
                    else:
                        f.write(fetch(digest))
        elif entry.type == "l":
            os.symlink(entry.target, target)
        elif entry.type in ("c", "b", "p"):
            if not as_root and entry.type != "p":
                continue
            os.mknod(target, entry.st_mode, entry.rdev)
        if as_root:
            os.lchown(target, entry.uid, entry.gid)
        if entry.type != "l":
            os.chmod(target, entry.mode)
            os.utime(target, ns=(entry.mtime_ns, entry.mtime_ns))
    # Directories last and deepest first: writing into them moves their mtimes.
    for target, entry in reversed(dirs):
        if as_root:
            os.lchown(target, entry.uid, entry.gid)
        os.chmod(target, entry.mode)
        os.utime(target, ns=(entry.mtime_ns, entry.mtime_ns))
