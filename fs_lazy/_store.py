"""Content-addressed object stores: a local directory, S3 and OCI Object Storage behind one interface."""
from __future__ import annotations

import abc
import hashlib
import os
import tempfile
import zlib
from typing import Any, Optional, Union

from ._errors import ChunkCorruptError, ChunkNotFoundError

__all__ = ["ChunkStore", "LocalStore", "S3Store", "OCIStore", "digest_of", "encode_chunk", "decode_chunk",
           "decode_chunk_view"]

# Object framing: one byte says how the payload is encoded, so stores stay dumb byte buckets.
_RAW, _ZLIB = b"\x00", b"\x01"


def digest_of(data: bytes) -> str:
    """The content address of `data` (sha256, hex)."""
    return hashlib.sha256(data).hexdigest()


def encode_chunk(data: bytes) -> bytes:
    """The stored form of a chunk: zlib when that saves at least an eighth, raw otherwise."""
    packed = zlib.compress(data, 1)
    if len(packed) <= len(data) - len(data) // 8:
        return _ZLIB + packed
    return _RAW + data


def decode_chunk(blob: bytes, digest: Optional[str] = None) -> bytes:
    """The chunk bytes of a stored object, checked against `digest` when given."""
    return bytes(decode_chunk_view(blob, digest))


def decode_chunk_view(blob: bytes, digest: Optional[str] = None) -> Union[bytes, memoryview]:
    """Like `decode_chunk`, but a raw chunk comes back as a view into `blob` (no copy)."""
    kind, payload = bytes(blob[:1]), memoryview(blob)[1:]
    if kind not in (_RAW, _ZLIB):
        raise ChunkCorruptError(f"chunk {digest}: unknown encoding {kind!r}")
    try:
        data = zlib.decompress(payload) if kind == _ZLIB else payload
    except zlib.error as exc:
        raise ChunkCorruptError(f"chunk {digest}: undecodable ({exc})") from None
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise ChunkCorruptError(f"chunk {digest}: content does not match its digest")
    return data


class ChunkStore(abc.ABC):
    """Where chunks, manifests and refs live. Chunks are immutable and named by their digest.

    Subclasses implement `_get`, `_put`, `_has` over keys; refs are small mutable names
    (a build-step key pointing at a manifest digest).
    """

    # How many chunk fetches a reader should keep in flight: a remote store hides latency with
    # many; a local one is bound by hashing, so one per core is the most that helps.
    parallel_fetches = 16

    @abc.abstractmethod
    def _get(self, key: str) -> bytes:
        """The object stored under `key` (ChunkNotFoundError when there is none)."""

    @abc.abstractmethod
    def _put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, whole or not at all."""

    @abc.abstractmethod
    def _has(self, key: str) -> bool:
        """True when an object is stored under `key`."""

    def put_chunk(self, data: bytes) -> str:
        """Stores `data` once (identical chunks across images share one object); returns its digest."""
        digest = digest_of(data)
        key = f"chunks/{digest[:2]}/{digest}"
        if not self._has(key):
            self._put(key, encode_chunk(data))
        return digest

    def get_chunk(self, digest: str) -> bytes:
        """The chunk bytes, verified; a mismatch is refetched once, then ChunkCorruptError."""
        key = f"chunks/{digest[:2]}/{digest}"
        try:
            return decode_chunk(self._get(key), digest)
        except ChunkCorruptError:
            return decode_chunk(self._get(key), digest)

    def get_chunk_raw(self, digest: str) -> bytes:
        """The stored (encoded) form of a chunk, for copying between stores and caches."""
        return self._get(f"chunks/{digest[:2]}/{digest}")

    def get_chunk_raw_into(self, digest: str, buffer: bytearray) -> Union[bytes, memoryview]:
        """Like `get_chunk_raw`; a store that can reads into `buffer` and returns a view of it.

        When `buffer` is too small the view is of a new, bigger bytearray (`view.obj`), for the
        caller to reuse next time.
        """
        return self.get_chunk_raw(digest)

    def has_chunk(self, digest: str) -> bool:
        """True when the chunk is stored."""
        return self._has(f"chunks/{digest[:2]}/{digest}")

    def put_blob(self, data: bytes) -> str:
        """Stores a whole small object (a manifest) by content; returns its digest."""
        return self.put_chunk(data)

    def get_blob(self, digest: str) -> bytes:
        """A small object stored with `put_blob`."""
        return self.get_chunk(digest)

    def set_ref(self, name: str, digest: str) -> None:
        """Points `name` (a build-step key) at `digest`."""
        self._put(f"refs/{name}", digest.encode())

    def get_ref(self, name: str) -> Optional[str]:
        """The digest `name` points at, or None."""
        try:
            return self._get(f"refs/{name}").decode()
        except ChunkNotFoundError:
            return None


class LocalStore(ChunkStore):
    """A store in a local directory (the default; also what a shared filesystem mount looks like)."""

    parallel_fetches = max(os.cpu_count() or 1, 2)

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)

    def path(self, key: str) -> str:
        """The file that holds `key`."""
        return os.path.join(self.root, *key.split("/"))

    def _get(self, key: str) -> bytes:
        try:
            with open(self.path(key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise ChunkNotFoundError(f"{key} is not in the store at {self.root}") from None

    def get_chunk_raw_into(self, digest: str, buffer: bytearray) -> Union[bytes, memoryview]:
        # A reused buffer: no fresh allocation (and its page faults) per chunk on the hot path.
        if "get_chunk_raw" in vars(self) or type(self).get_chunk_raw is not LocalStore.get_chunk_raw:
            return self.get_chunk_raw(digest)  # wrapped (a subclass, a test double): its way wins
        key = f"chunks/{digest[:2]}/{digest}"
        try:
            fd = os.open(self.path(key), os.O_RDONLY)
        except FileNotFoundError:
            raise ChunkNotFoundError(f"{key} is not in the store at {self.root}") from None
        try:
            size = os.fstat(fd).st_size
            if len(buffer) < size:  # a bigger one, never a resize: a view of the old may still be alive
                buffer = bytearray(max(size, 2 * len(buffer)))
            view, done = memoryview(buffer), 0
            while done < size:
                step = os.readv(fd, [view[done:size]])
                if step <= 0:
                    break
                done += step
            return view[:done]
        finally:
            os.close(fd)

    def _put(self, key: str, data: bytes) -> None:
        path = self.path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Write then rename: a reader never sees half an object.
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def _has(self, key: str) -> bool:
        return os.path.exists(self.path(key))


class S3Store(ChunkStore):
    """A store in an S3 bucket under `prefix` (boto3; any S3-compatible endpoint)."""

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None, **client_kwargs: Any) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3", **client_kwargs)
        self._s3 = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def _get(self, key: str) -> bytes:
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except self._s3.exceptions.NoSuchKey:
            raise ChunkNotFoundError(f"{key} is not in s3://{self.bucket}/{self.prefix}") from None

    def _put(self, key: str, data: bytes) -> None:
        self._s3.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def _has(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._s3.head_object(Bucket=self.bucket, Key=self.prefix + key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise


class OCIStore(ChunkStore):
    """A store in an OCI Object Storage bucket (the `oci` SDK's ObjectStorageClient)."""

    def __init__(self, namespace: str, bucket: str, prefix: str = "", *, client: Any = None,
                 config: Optional[dict] = None) -> None:
        if client is None:
            import oci

            client = oci.object_storage.ObjectStorageClient(config or oci.config.from_file())
        self._oci = client
        self.namespace = namespace
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    @staticmethod
    def _missing(exc: Exception) -> bool:
        return getattr(exc, "status", None) == 404

    def _get(self, key: str) -> bytes:
        try:
            response = self._oci.get_object(self.namespace, self.bucket, self.prefix + key)
        except Exception as exc:
            if self._missing(exc):
                raise ChunkNotFoundError(f"{key} is not in oci://{self.bucket}/{self.prefix}") from None
            raise
        return response.data.content

    def _put(self, key: str, data: bytes) -> None:
        self._oci.put_object(self.namespace, self.bucket, self.prefix + key, data)

    def _has(self, key: str) -> bool:
        try:
            self._oci.head_object(self.namespace, self.bucket, self.prefix + key)
            return True
        except Exception as exc:
            if self._missing(exc):
                return False
            raise
