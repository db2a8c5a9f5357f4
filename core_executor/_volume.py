"""Volume: a named, versioned file tree mounted into containers, committed and reloaded explicitly."""
from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import posixpath
import tempfile
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from .exception import InvalidError, NotFoundError

__all__ = ["FileEntry", "FileEntryType", "Volume"]

BLOCK_SIZE = 8 * 1024 * 1024
# Blocks per upload request, under the fabric's 64 MiB message limit.
UPLOAD_BATCH_BYTES = 32 * 1024 * 1024


class FileEntryType(enum.IntEnum):
    FILE = 1
    DIRECTORY = 2


@dataclass(frozen=True)
class FileEntry:
    """One entry of `Volume.listdir`: path relative to the volume root, type, size and mtime."""

    path: str
    type: FileEntryType
    size: int
    mtime: float


def _rel(path: str) -> str:
    """Normalized path inside the volume; '..' is refused (it would escape the volume)."""
    parts = [p for p in str(path).replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidError(f"volume path {path!r} escapes the volume ('..' is not allowed)")
    return posixpath.join(*parts) if parts else ""


def _pb() -> Any:
    from gpu_fabric.proto import volumes_pb2

    return volumes_pb2


def _rpc(method: str, request: Any, *, timeout: float = 120.0) -> Any:
    from . import _client
    from ._object_base import resolve_client

    client = resolve_client()
    stub = getattr(client, "_volumes_stub", None)
    if stub is None:
        from gpu_fabric.proto import volumes_pb2_grpc

        stub = client._volumes_stub = volumes_pb2_grpc.FabricVolumesStub(client.channel)
    fn = getattr(stub, method)
    try:
        return client._retrying(lambda: fn(request, metadata=client.metadata, timeout=timeout), True)
    except Exception as err:  # grpc.RpcError -> the SDK's exceptions
        raise _client.translate_error(err) from None


def _file_blocks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while True:
            block = f.read(BLOCK_SIZE)
            if not block:
                return
            yield block


class _Uploader:
    """Uploads the blocks of local files the volume does not hold yet, then commits the changes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.puts: list[Any] = []
        self.deletes: list[str] = []

    def add_file(self, local: str, remote: str, mode: Optional[int] = None) -> None:
        pb, st = _pb(), os.stat(local)
        hashes, pending, size = [], [], 0
        for block in _file_blocks(local):
            hashes.append(hashlib.sha256(block).hexdigest())
            pending.append(block)
            size += len(block)
            if size >= UPLOAD_BATCH_BYTES:
                self._upload(hashes[-len(pending):], pending)
                pending, size = [], 0
        if pending:
            self._upload(hashes[-len(pending):], pending)
        self.puts.append(pb.VolumeFile(path=_rel(remote), size=st.st_size, blocks=hashes,
                                       mode=(mode if mode is not None else st.st_mode) & 0o7777, mtime=st.st_mtime))

    def _upload(self, hashes: list[str], blocks: list[bytes]) -> None:
        pb = _pb()
        missing = set(_rpc("VolumeMissingBlocks", pb.VolumeBlocksRequest(name=self.name, hashes=hashes)).hashes)
        todo = [b for h, b in zip(hashes, blocks) if h in missing]
        if todo:
            _rpc("VolumePutBlocks", pb.VolumePutBlocksRequest(name=self.name, blocks=todo))

    def commit(self) -> int:
        if not self.puts and not self.deletes:
            return -1
        return _rpc("VolumeCommit", _pb().VolumeCommitRequest(name=self.name, puts=self.puts, deletes=self.deletes)).version


class _Mount:
    """A volume materialized at `root` inside a container; `base` is what the last sync saw."""

    def __init__(self, name: str, root: str, read_only: bool) -> None:
        self.name, self.root, self.read_only = name, root, read_only
        self.base: dict[str, Any] = {}
        self.lock = threading.Lock()

    def _local_files(self) -> dict[str, os.stat_result]:
        out = {}
        for dirpath, _, names in os.walk(self.root):
            for n in names:
                full = os.path.join(dirpath, n)
                if os.path.isfile(full) and not n.startswith(".gpufabric-tmp-"):
                    out[os.path.relpath(full, self.root).replace(os.sep, "/")] = os.stat(full)
        return out

    def _write(self, entry: Any) -> None:
        target = os.path.join(self.root, *entry.path.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".gpufabric-tmp-")
        with os.fdopen(fd, "wb") as f:
            for digest in entry.blocks:
                f.write(_rpc("VolumeGetBlock", _pb().VolumeGetBlockRequest(name=self.name, hash=digest)).data)
        os.chmod(tmp, entry.mode or 0o644)
        os.replace(tmp, target)
        # The manifest's mtime on disk is how `commit` tells an untouched file from a changed one.
        os.utime(target, (entry.mtime, entry.mtime))

    def reload(self) -> None:
        """Bring in the latest version: files changed or added remotely are written, removed ones
        deleted (files changed here since the last sync and not committed are overwritten)."""
        with self.lock:
            manifest = _rpc("VolumeGetManifest", _pb().VolumeGetManifestRequest(name=self.name))
            remote = {f.path: f for f in manifest.files}
            local = self._local_files()
            for path, entry in remote.items():
                st, old = local.get(path), self.base.get(path)
                if st is not None and st.st_size == entry.size and st.st_mtime == entry.mtime:
                    continue
                if old is not None and list(old.blocks) == list(entry.blocks) and st is not None:
                    continue  # changed only here: the next commit sends it
                self._write(entry)
            for path in set(self.base) - set(remote):
                if path in local:
                    os.unlink(os.path.join(self.root, *path.split("/")))
            self.base = remote

    def commit(self) -> int:
        if self.read_only:
            raise InvalidError(f"volume {self.name!r} is mounted read-only; it cannot be committed")
        with self.lock:
            local = self._local_files()
            up = _Uploader(self.name)
            for path, st in local.items():
                old = self.base.get(path)
                if old is None or old.size != st.st_size or old.mtime != st.st_mtime:
                    up.add_file(os.path.join(self.root, *path.split("/")), path)
            up.deletes = sorted(set(self.base) - set(local))
            version = up.commit()
            for put in up.puts:
                self.base[put.path] = put
            for gone in up.deletes:
                self.base.pop(gone, None)
            return version


# Volumes mounted in this container, by name (set by the runtime at start-up).
_mounts: dict[str, _Mount] = {}


def mount(name: str, mount_path: str, read_only: bool, scratch: str) -> str:
    """Materialize volume `name` for this container and make it visible at `mount_path`.

    In a sandbox the worker bind-mounted a directory there: files go straight in. Without one
    (no image) the files go under `scratch` and `mount_path` becomes a symlink to them.
    """
    if os.path.ismount(mount_path):
        root = mount_path
    else:
        root = os.path.join(scratch, "volumes", name)
        os.makedirs(root, exist_ok=True)
        parent = os.path.dirname(mount_path.rstrip("/"))
        os.makedirs(parent, exist_ok=True)
        if os.path.exists(mount_path) and not os.path.islink(mount_path):
            raise InvalidError(f"cannot mount volume {name!r} at {mount_path}: the path exists on this worker "
                               "(without an image, mount paths must be free; give the function an image)")
        link = os.path.join(parent, f".gpufabric-link-{os.getpid()}")
        os.symlink(root, link)
        os.replace(link, mount_path)  # atomic: a stale link from a dead container is replaced
    # Mounting implies the volume exists: a function's first container creates it.
    _rpc("VolumeGetOrCreate", _pb().VolumeGetOrCreateRequest(name=name, create_if_missing=True))
    m = _Mount(name, root, read_only)
    m.reload()
    _mounts[name] = m
    return root


class Volume:
    """A named, persistent volume mounted into containers: `volumes={"/data": Volume.from_name("data")}`.

    Inside a container, the mount is a local copy: `commit()` publishes what changed there
    (atomically; concurrent commits to different files all survive), `reload()` brings in what
    others committed. Outside, `read_file`, `listdir`, `remove_file` and `batch_upload` work on the
    latest committed version directly. See docs/volumes.md.
    """

    _fields = ("name", "create_if_missing", "read_only")

    def __init__(self, name: str, create_if_missing: bool = False, read_only: bool = False):
        from ._resources import _check_name

        self.name = _check_name(name, "Volume")
        self.create_if_missing = bool(create_if_missing)
        self.read_only = bool(read_only)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, f) == getattr(other, f) for f in self._fields)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.name, self.create_if_missing, self.read_only))

    def __repr__(self) -> str:
        return f"Volume(name={self.name!r}, create_if_missing={self.create_if_missing!r}, read_only={self.read_only!r})"

    @classmethod
    def from_name(cls, name: str, *, create_if_missing: bool = False) -> "Volume":
        """Refer to a volume by name (created on first use when `create_if_missing`)."""
        return cls(name, create_if_missing)

    def read_only_view(self) -> "Volume":
        """The same volume, mounted read-only."""
        return Volume(self.name, self.create_if_missing, True)

    def hydrate(self) -> "Volume":
        """Look the volume up now (creating it when `create_if_missing`); NotFoundError if absent."""
        _rpc("VolumeGetOrCreate", _pb().VolumeGetOrCreateRequest(name=self.name, create_if_missing=self.create_if_missing))
        return self

    def commit(self) -> None:
        """Publish this container's changes under the mount (no-op outside a container)."""
        mounted = _mounts.get(self.name)
        if mounted is not None:
            mounted.commit()

    def reload(self) -> None:
        """Fetch the latest committed version into this container's mount (no-op outside one)."""
        mounted = _mounts.get(self.name)
        if mounted is not None:
            mounted.reload()

    def _manifest(self) -> dict[str, Any]:
        self.hydrate()
        return {f.path: f for f in _rpc("VolumeGetManifest", _pb().VolumeGetManifestRequest(name=self.name)).files}

    def read_file(self, path: str) -> Iterator[bytes]:
        """The committed file's bytes, block by block."""
        rel = _rel(path)
        entry = self._manifest().get(rel)
        if entry is None:
            raise NotFoundError(f"no file {rel!r} in volume {self.name!r}")
        for digest in entry.blocks:
            yield _rpc("VolumeGetBlock", _pb().VolumeGetBlockRequest(name=self.name, hash=digest)).data

    def listdir(self, path: str = "/", *, recursive: bool = False) -> list[FileEntry]:
        """Entries under `path` in the committed version (directories are implied by file paths)."""
        rel = _rel(path)
        prefix = rel + "/" if rel else ""
        files = self._manifest()
        if rel in files:
            f = files[rel]
            return [FileEntry(rel, FileEntryType.FILE, f.size, f.mtime)]
        out: dict[str, FileEntry] = {}
        for p, f in files.items():
            if not p.startswith(prefix):
                continue
            parts = p[len(prefix):].split("/")
            if recursive:
                for i in range(1, len(parts)):
                    d = prefix + "/".join(parts[:i])
                    out.setdefault(d, FileEntry(d, FileEntryType.DIRECTORY, 0, 0.0))
                out[p] = FileEntry(p, FileEntryType.FILE, f.size, f.mtime)
            elif len(parts) == 1:
                out[p] = FileEntry(p, FileEntryType.FILE, f.size, f.mtime)
            else:
                d = prefix + parts[0]
                out.setdefault(d, FileEntry(d, FileEntryType.DIRECTORY, 0, 0.0))
        if rel and not out:
            raise NotFoundError(f"no file or directory {rel!r} in volume {self.name!r}")
        return sorted(out.values(), key=lambda e: e.path)

    def remove_file(self, path: str, *, recursive: bool = False) -> None:
        """Remove a file (or, with `recursive`, a directory and everything under it) and commit."""
        rel = _rel(path)
        files = self._manifest()
        if rel not in files:
            if not any(not rel or p.startswith(rel + "/") for p in files):
                raise NotFoundError(f"no file {rel!r} in volume {self.name!r}")
            if not recursive:
                raise InvalidError(f"{rel!r} is a directory; pass recursive=True to remove it")
        up = _Uploader(self.name)
        up.deletes = [rel]
        up.commit()

    @contextlib.contextmanager
    def batch_upload(self, force: bool = False) -> Iterator["_Batch"]:
        """`with vol.batch_upload() as b: b.put_file(local, remote); b.put_directory(d, remote)`:
        one atomic commit at the end of the block (nothing is committed if it raises)."""
        self.hydrate()
        batch = _Batch(self, force)
        yield batch
        batch._uploader.commit()


class _Batch:
    def __init__(self, volume: Volume, force: bool) -> None:
        self._volume, self._force = volume, force
        self._uploader = _Uploader(volume.name)
        self._existing: Optional[set] = None

    def _check(self, remote: str) -> str:
        rel = _rel(remote)
        if not rel:
            raise InvalidError("give a file path inside the volume, not its root")
        if not self._force:
            if self._existing is None:
                self._existing = set(self._volume._manifest())
            if rel in self._existing:
                raise FileExistsError(f"{rel!r} already exists in volume {self._volume.name!r}; pass force=True to replace it")
        return rel

    def put_file(self, local_file: str, remote_path: str, mode: Optional[int] = None) -> None:
        """Upload one local file to `remote_path`."""
        self._uploader.add_file(os.fspath(local_file), self._check(remote_path), mode)

    def put_directory(self, local_path: str, remote_path: str, recursive: bool = True) -> None:
        """Upload a local directory's files under `remote_path`."""
        local_path = os.fspath(local_path)
        for dirpath, dirs, names in os.walk(local_path):
            for n in names:
                full = os.path.join(dirpath, n)
                rel = os.path.relpath(full, local_path).replace(os.sep, "/")
                self.put_file(full, posixpath.join(_rel(remote_path), rel))
            if not recursive:
                dirs.clear()
