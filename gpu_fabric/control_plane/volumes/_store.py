"""Versioned volumes on an ObjectBackend: content-addressed blocks, manifests, a HEAD pointer."""
from __future__ import annotations

import hashlib
import json
import posixpath
import re
import threading
import time
from typing import Optional

from ._backends import ObjectBackend

__all__ = ["BLOCK_SIZE", "VolumeError", "VolumeStore", "check_path"]

BLOCK_SIZE = 8 * 1024 * 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HASH = re.compile(r"^[0-9a-f]{64}$")
_WORKSPACE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")  # as in control_plane/_tokens.py
# Old manifests kept for readers that fetched a HEAD just before a commit moved it.
KEEP_MANIFESTS = 4


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


class VolumeStore:
    """All volumes of a fabric on one backend. Commits to one volume are serialized here, which is
    what makes them atomic and mergeable: the control plane is the only writer of HEAD."""

    def __init__(self, backend: ObjectBackend, *, clock=time.time) -> None:
        self.backend = backend
        self._clock = clock
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    # A volume of a workspace other than the default one is named "workspace/name" here
    # (control_plane/_tokens.scoped_name) and kept under ws/<workspace>/vol/<name>/, apart from
    # the default workspace's vol/<name>/, so deleting or listing one never reaches the other.
    @staticmethod
    def _key(name: str, *rest: str) -> str:
        workspace, _, short = name.rpartition("/")
        return "/".join((("ws", workspace, "vol") if workspace else ("vol",)) + (short,) + rest)

    def _check_name(self, name: str) -> None:
        workspace, sep, short = (name or "").rpartition("/")
        if not _NAME.match(short) or (sep and not _WORKSPACE.match(workspace)):
            raise VolumeError("INVALID_ARGUMENT", f"bad volume name {short!r}: letters, digits, '.', '_', '-' (up to 64)")

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

    # -- volumes ---------------------------------------------------------------------------
    def get_or_create(self, name: str, create_if_missing: bool) -> dict:
        """`{"name", "version", "created_at", "files", "bytes"}` of volume `name`."""
        self._check_name(name)
        with self._lock(name):
            meta = self._meta(name)
            if meta is None:
                if not create_if_missing:
                    raise VolumeError("NOT_FOUND", f"no volume named {name.rpartition('/')[2]!r}; pass create_if_missing=True to make it")
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
        prefix = f"ws/{workspace}/vol/" if workspace else "vol/"
        depth = prefix.count("/") + 1
        return sorted({(f"{workspace}/" if workspace else "") + key.split("/")[depth - 1] for key in self.backend.list(prefix)
                       if key.endswith("/meta") and key.count("/") == depth})

    def delete(self, name: str, allow_missing: bool = False) -> None:
        self._check_name(name)
        with self._lock(name):
            if self._meta(name) is None:
                if allow_missing:
                    return
                raise VolumeError("NOT_FOUND", f"no volume named {name.rpartition('/')[2]!r}")
            # The meta key goes first: a crash part-way leaves no half-visible volume.
            self.backend.delete(self._key(name, "meta"))
            for key in list(self.backend.list(self._key(name) + "/")):
                self.backend.delete(key)

    # -- reading -----------------------------------------------------------------------------
    def head(self, name: str) -> int:
        raw = self.backend.get(self._key(name, "HEAD"))
        return int(raw) if raw else 0

    def manifest(self, name: str) -> tuple[int, dict[str, dict]]:
        """(version, {path: {"size", "blocks", "mode", "mtime"}}) of the latest committed version."""
        self._require(name)
        version = self.head(name)
        if version == 0:
            return 0, {}
        raw = self.backend.get(self._key(name, "v", f"{version:012d}.json"))
        if raw is None:
            raise VolumeError("DATA_LOSS", f"volume {name!r}: manifest of version {version} is missing")
        return version, json.loads(raw)["files"]

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

    # -- writing -----------------------------------------------------------------------------
    def missing_blocks(self, name: str, digests: list[str]) -> list[str]:
        self._require(name)
        return [d for d in digests if not (_HASH.match(d) and self.backend.exists(self._key(name, "b", d)))]

    def put_blocks(self, name: str, blocks: list[bytes]) -> list[str]:
        self._require(name)
        digests = []
        for data in blocks:
            if len(data) > BLOCK_SIZE:
                raise VolumeError("INVALID_ARGUMENT", f"a block is at most {BLOCK_SIZE} bytes")
            digest = hashlib.sha256(data).hexdigest()
            key = self._key(name, "b", digest)
            if not self.backend.exists(key):
                self.backend.put(key, data)
            digests.append(digest)
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
        missing = self.missing_blocks(name, wanted)
        if missing:
            raise VolumeError("FAILED_PRECONDITION", f"volume {name!r}: {len(missing)} block(s) were not uploaded")
        with self._lock(name):
            version, files = self.manifest(name)
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
            self.backend.put(self._key(name, "v", f"{new:012d}.json"), json.dumps({"version": new, "files": files}).encode())
            self.backend.put(self._key(name, "HEAD"), str(new).encode())
            old = new - KEEP_MANIFESTS
            if old > 0:
                self.backend.delete(self._key(name, "v", f"{old:012d}.json"))
        return new
