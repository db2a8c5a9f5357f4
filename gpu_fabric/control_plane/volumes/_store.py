"""Versioned volumes on an ObjectBackend: content-addressed blocks, manifests, a HEAD pointer."""
from __future__ import annotations

import collections
import hashlib
import json
import posixpath
import re
import secrets
import threading
import time
from typing import TYPE_CHECKING, Iterable, Optional

from ._backends import ObjectBackend
from ._gate import Gate

if TYPE_CHECKING:
    from ._gc import GcPolicy, GcResult

__all__ = ["BLOCK_SIZE", "VolumeError", "VolumeStore", "check_path"]

BLOCK_SIZE = 8 * 1024 * 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HASH = re.compile(r"^[0-9a-f]{64}$")
_WORKSPACE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")  # as in control_plane/_tokens.py


class VolumeError(Exception):
    """A volume request cannot be done; `code` is the gRPC status name to answer with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_path(path: str) -> str:
    """The normalized relative form of a volume path; refuses paths that escape the volume."""
    raw = path.replace("\\", "/")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise VolumeError("INVALID_ARGUMENT", f"volume path {path!r} escapes the volume ('..' is not allowed)")
    return posixpath.join(*parts) if parts else ""


def manifest_key(version: int) -> str:
    return f"{version:012d}.json"


class VolumeStore:
    """All volumes of a fabric on one backend. Commits to one volume are serialized here, which is
    what makes them atomic and mergeable: the control plane is the only writer of HEAD.

    Layout under a volume's prefix: `meta`, `HEAD` (the latest version), `v/<version>.json`
    (manifests), `b/<sha256>` (blocks) and `leases/<ms>-<id>` (blocks an upload found present that
    HEAD does not reference, so garbage collection keeps them across a control plane restart).

    What keeps a commit in flight safe from garbage collection (see `_gc.py`): every block a
    MissingBlocks, PutBlocks or Commit request names is *claimed* (in memory, with the time); a
    commit *pins* its blocks from the moment it checks they exist until its manifest is written;
    those checks hold the volume's gate shared and a sweep deletes only while holding it alone.
    """

    def __init__(self, backend: ObjectBackend, *, clock=time.time) -> None:
        self.backend = backend
        self._clock = clock
        self._locks: dict[str, threading.Lock] = {}
        self._gates: dict[str, Gate] = {}
        self._guard = threading.Lock()  # guards the dicts above and below
        self._claims: dict[str, dict[str, float]] = {}  # volume -> block -> last time a request named it
        self._pins: dict[str, collections.Counter] = {}  # volume -> blocks of commits in progress
        self._head_blocks: dict[str, tuple[int, frozenset]] = {}  # volume -> (HEAD version, its blocks)
        self._gc_lock = threading.Lock()  # one collection at a time

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _gate(self, name: str) -> Gate:
        with self._guard:
            return self._gates.setdefault(name, Gate())

    # A volume of a workspace other than the default one is named "workspace/name" here
    # (control_plane/_tokens.scoped_name) and kept under ws/<workspace>/vol/<name>/, apart from
    # the default workspace's vol/<name>/, so deleting or listing one never reaches the other.
    @staticmethod
    def _key(name: str, *rest: str) -> str:
        workspace, _, short = name.rpartition("/")
        return "/".join((("ws", workspace, "vol") if workspace else ("vol",)) + (short,) + rest)

    @staticmethod
    def _root(workspace: str) -> str:
        """The prefix under which the volumes of `workspace` ("" the default one) are kept."""
        return f"ws/{workspace}/vol/" if workspace else "vol/"

    @staticmethod
    def valid_name(name: str) -> bool:
        workspace, sep, short = (name or "").rpartition("/")
        return bool(_NAME.match(short)) and (not sep or bool(_WORKSPACE.match(workspace)))

    def _check_name(self, name: str) -> None:
        if not self.valid_name(name):
            raise VolumeError("INVALID_ARGUMENT", f"bad volume name {name.rpartition('/')[2]!r}: letters, digits, '.', '_', '-' (up to 64)")

    def _meta(self, name: str) -> Optional[dict]:
        raw = self.backend.get(self._key(name, "meta"))
        return json.loads(raw) if raw is not None else None

    def _require(self, name: str) -> dict:
        self._check_name(name)
        meta = self._meta(name)
        if meta is None:
            short = name.rpartition("/")[2]
            raise VolumeError("NOT_FOUND", f"no volume named {short!r}; create it with Volume.from_name({short!r}, create_if_missing=True)")
        return meta

    def _forget(self, name: str) -> None:
        with self._guard:
            self._claims.pop(name, None)
            self._head_blocks.pop(name, None)

    def _clear_storage(self, name: str) -> None:
        """Deletes every object under the volume's prefix (meta first: a crash part-way leaves no
        half-visible volume). The caller holds the volume's lock and its gate alone."""
        self.backend.delete(self._key(name, "meta"))
        self.backend.delete_many(list(self.backend.list(self._key(name) + "/")))
        self._forget(name)

    # -- volumes ---------------------------------------------------------------------------
    def get_or_create(self, name: str, create_if_missing: bool) -> dict:
        """`{"name", "version", "created_at", "files", "bytes"}` of volume `name`."""
        self._check_name(name)
        with self._lock(name):
            meta = self._meta(name)
            if meta is None:
                if not create_if_missing:
                    raise VolumeError("NOT_FOUND", f"no volume named {name.rpartition('/')[2]!r}; pass create_if_missing=True to make it")
                with self._gate(name).exclusive():
                    # What a deletion cut short left (an old HEAD) must not show through the new volume.
                    self._clear_storage(name)
                    meta = {"created_at": self._clock()}
                    self.backend.put(self._key(name, "meta"), json.dumps(meta).encode())
        return self.info(name)

    def info(self, name: str) -> dict:
        meta = self._require(name)
        version, files = self.manifest(name)
        return {"name": name, "version": version, "created_at": meta["created_at"], "files": len(files),
                "bytes": sum(f["size"] for f in files.values())}

    def names(self, workspace: str = "") -> list[str]:
        """The volumes of the default workspace, or (as "workspace/name") of `workspace`."""
        scope = f"{workspace}/" if workspace else ""
        return sorted(scope + short for short in self.backend.children(self._root(workspace))
                      if self.valid_name(scope + short) and self.backend.exists(self._key(scope + short, "meta")))

    def stored_names(self, workspace: Optional[str] = None) -> list[str]:
        """Every volume name with objects in storage, including what deleted volumes left behind:
        of the default workspace (""), of `workspace`, or (None) of all workspaces."""
        if workspace is None:
            workspaces = [""] + sorted(self.backend.children("ws/"))
        else:
            workspaces = [workspace]
        out = []
        for ws in workspaces:
            scope = f"{ws}/" if ws else ""
            out += sorted(scope + short for short in self.backend.children(self._root(ws)) if self.valid_name(scope + short))
        return out

    def delete(self, name: str, allow_missing: bool = False) -> None:
        self._check_name(name)
        with self._lock(name):
            if self._meta(name) is None:
                if allow_missing:
                    return
                raise VolumeError("NOT_FOUND", f"no volume named {name.rpartition('/')[2]!r}")
            # Alone at the gate: no upload of this volume is half done while its storage goes.
            with self._gate(name).exclusive():
                self._clear_storage(name)

    # -- reading -----------------------------------------------------------------------------
    def head(self, name: str) -> int:
        raw = self.backend.get(self._key(name, "HEAD"))
        return int(raw) if raw else 0

    def read_manifest(self, name: str, version: int) -> Optional[dict]:
        """The stored manifest of `version` (`{"version", "files", "committed_at"}`), None if absent."""
        raw = self.backend.get(self._key(name, "v", manifest_key(version)))
        return json.loads(raw) if raw is not None else None

    def manifest(self, name: str) -> tuple[int, dict[str, dict]]:
        """(version, {path: {"size", "blocks", "mode", "mtime"}}) of the latest committed version."""
        self._require(name)
        version = self.head(name)
        if version == 0:
            return 0, {}
        stored = self.read_manifest(name, version)
        if stored is None:
            raise VolumeError("DATA_LOSS", f"volume {name!r}: manifest of version {version} is missing")
        return version, stored["files"]

    def get_block(self, name: str, digest: str) -> bytes:
        if not _HASH.match(digest):
            raise VolumeError("INVALID_ARGUMENT", f"bad block hash {digest!r}")
        data = self.backend.get(self._key(name, "b", digest))
        if data is None:
            raise VolumeError("NOT_FOUND", f"volume {name!r} has no block {digest[:12]}")
        return data

    def read_file(self, name: str, path: str) -> bytes:
        path = check_path(path)
        _, files = self.manifest(name)
        entry = files.get(path)
        if entry is None:
            raise VolumeError("NOT_FOUND", f"no file {path!r} in volume {name!r}")
        return b"".join(self.get_block(name, h) for h in entry["blocks"])

    # -- claims, pins and leases (what garbage collection must not take) -------------------------
    def _claim(self, name: str, digests: Iterable[str], now: float) -> None:
        with self._guard:
            claims = self._claims.setdefault(name, {})
            for digest in digests:
                claims[digest] = now

    def _pin(self, name: str, digests: Iterable[str], delta: int) -> None:
        with self._guard:
            pins = self._pins.setdefault(name, collections.Counter())
            pins.update({d: delta for d in digests})
            for digest in [d for d, n in pins.items() if n <= 0]:
                del pins[digest]

    def protected(self, name: str, since: float) -> set[str]:
        """Blocks of `name` that commits in progress pin, or that a request named at `since` or later."""
        with self._guard:
            pinned = set(self._pins.get(name, ()))
            return pinned | {d for d, t in self._claims.get(name, {}).items() if t >= since}

    def prune_claims(self, before: float) -> None:
        """Forgets claims older than `before` (garbage collection calls it with its grace period)."""
        with self._guard:
            for claims in self._claims.values():
                for digest in [d for d, t in claims.items() if t < before]:
                    del claims[digest]

    def _head_set(self, name: str) -> frozenset:
        version = self.head(name)
        with self._guard:
            cached = self._head_blocks.get(name)
        if cached is not None and cached[0] == version:
            return cached[1]
        stored = self.read_manifest(name, version) if version else None
        blocks = frozenset(h for f in (stored or {}).get("files", {}).values() for h in f["blocks"])
        with self._guard:
            self._head_blocks[name] = (version, blocks)
        return blocks

    def _lease(self, name: str, present: set[str], now: float) -> None:
        """Records present blocks HEAD does not reference: the in-memory claim on them dies with the
        process, and a commit that counts on them may come after a restart."""
        if not present:
            return
        unreferenced = present - self._head_set(name)
        if unreferenced:
            key = self._key(name, "leases", f"{int(now * 1000):015d}-{secrets.token_hex(4)}")
            self.backend.put(key, "\n".join(sorted(unreferenced)).encode())

    # -- writing -----------------------------------------------------------------------------
    def missing_blocks(self, name: str, digests: list[str]) -> list[str]:
        self._check_name(name)
        valid = [d for d in digests if _HASH.match(d)]
        with self._gate(name).shared():
            self._require(name)
            now = self._clock()
            self._claim(name, valid, now)
            present = {d for d in valid if self.backend.exists(self._key(name, "b", d))}
            self._lease(name, present, now)
        return [d for d in digests if d not in present]

    def put_blocks(self, name: str, blocks: list[bytes]) -> list[str]:
        self._check_name(name)
        if any(len(data) > BLOCK_SIZE for data in blocks):
            raise VolumeError("INVALID_ARGUMENT", f"a block is at most {BLOCK_SIZE} bytes")
        digests = [hashlib.sha256(data).hexdigest() for data in blocks]
        with self._gate(name).shared():
            self._require(name)
            now = self._clock()
            self._claim(name, digests, now)
            present = set()
            for digest, data in zip(digests, blocks):
                key = self._key(name, "b", digest)
                if self.backend.exists(key):
                    present.add(digest)
                else:
                    self.backend.put(key, data)
            self._lease(name, present, now)
        return digests

    def commit(self, name: str, puts: list[dict], deletes: list[str]) -> int:
        """Apply `puts` ({"path", "size", "blocks", "mode", "mtime"}) and `deletes` to the latest
        version; returns the new version. The new manifest is written before HEAD moves to it."""
        self._require(name)
        puts = [dict(p, path=check_path(p["path"])) for p in puts]
        deletes = [check_path(d) for d in deletes]
        if any(not p["path"] for p in puts):
            raise VolumeError("INVALID_ARGUMENT", "a file needs a path inside the volume")
        wanted = sorted({h for p in puts for h in p["blocks"]})
        if any(not _HASH.match(h) for h in wanted):
            raise VolumeError("INVALID_ARGUMENT", "a file's blocks must be sha256 hex digests")
        # Pinned before they are checked, unpinned once the manifest names them: a sweep either ran
        # before the check (and the commit fails cleanly) or sees the pins and leaves the blocks.
        with self._gate(name).shared():
            self._claim(name, wanted, self._clock())
            self._pin(name, wanted, 1)
            missing = [h for h in wanted if not self.backend.exists(self._key(name, "b", h))]
        try:
            if missing:
                raise VolumeError("FAILED_PRECONDITION", f"volume {name!r}: {len(missing)} block(s) were not uploaded, or were "
                                  "garbage-collected before this commit came (an upload older than the GC grace period); "
                                  "retry the commit, which uploads them again")
            return self._write_version(name, puts, deletes)
        finally:
            self._pin(name, wanted, -1)

    def _write_version(self, name: str, puts: list[dict], deletes: list[str]) -> int:
        with self._lock(name):
            version, files = self.manifest(name)  # under the lock: a deleted volume is refused here
            for gone in deletes:
                if not gone:
                    files.clear()
                    continue
                files.pop(gone, None)
                for path in [p for p in files if p.startswith(gone + "/")]:
                    del files[path]
            for put in puts:
                # A file replaces a directory of that name (and the reverse), as on a real filesystem.
                for path in [p for p in files if p.startswith(put["path"] + "/")]:
                    del files[path]
                parent = put["path"]
                while "/" in parent:
                    parent = parent.rsplit("/", 1)[0]
                    files.pop(parent, None)
                files[put["path"]] = {"size": int(put["size"]), "blocks": list(put["blocks"]),
                                      "mode": int(put.get("mode") or 0o644), "mtime": float(put.get("mtime") or 0.0)}
            new = version + 1
            # Old manifests stay until garbage collection (`collect`) decides they are no longer kept.
            body = {"version": new, "committed_at": self._clock(), "files": files}
            self.backend.put(self._key(name, "v", manifest_key(new)), json.dumps(body).encode())
            self.backend.put(self._key(name, "HEAD"), str(new).encode())
            with self._guard:
                self._head_blocks[name] = (new, frozenset(h for f in files.values() for h in f["blocks"]))
        return new

    # -- garbage collection ------------------------------------------------------------------
    def collect(self, policy: Optional["GcPolicy"] = None, *, name: Optional[str] = None,
                workspace: Optional[str] = None, dry_run: bool = False, stop: Optional[threading.Event] = None) -> list["GcResult"]:
        """Garbage-collects volume `name`, or every volume of `workspace` ("" the default one,
        None all of them); see `_gc.collect`."""
        from ._gc import GcPolicy, collect

        return collect(self, policy or GcPolicy(), name=name, workspace=workspace, dry_run=dry_run, stop=stop)
