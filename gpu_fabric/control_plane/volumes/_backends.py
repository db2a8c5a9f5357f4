"""Object backends volumes are stored on: one small interface, three implementations."""
from __future__ import annotations

import abc
import os
import tempfile
from typing import Any, Iterator, Optional
from urllib.parse import urlparse

__all__ = ["LocalBackend", "OCIBackend", "ObjectBackend", "S3Backend", "backend_from_url"]


class ObjectBackend(abc.ABC):
    """Keys to bytes. `put` must be atomic: a reader sees the old object or the new, never a part."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def get(self, key: str) -> Optional[bytes]:
        """The object's bytes, None when there is none."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; a missing key is not an error."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Keys starting with `prefix`."""

    def exists(self, key: str) -> bool:
        return self.get(key) is not None


class LocalBackend(ObjectBackend):
    """A directory; objects are files written to a temp name, fsynced and renamed into place."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def get(self, key: str) -> Optional[bytes]:
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            pass

    def list(self, prefix: str) -> Iterator[str]:
        for dirpath, _, names in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            for name in names:
                if name.startswith(".tmp-"):
                    continue
                key = name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"
                if key.startswith(prefix):
                    yield key


class S3Backend(ObjectBackend):
    """An S3 bucket (boto3, imported lazily); S3 PUTs are atomic per object."""

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None, region: Optional[str] = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3", region_name=region)
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/") + "/" if prefix.strip("/") else ""

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def get(self, key: str) -> Optional[bytes]:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def list(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for obj in page.get("Contents", ()):
                yield obj["Key"][len(self.prefix):]


class OCIBackend(ObjectBackend):
    """An OCI Object Storage bucket through the `oci` SDK's ObjectStorageClient (passed in or made lazily)."""

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None, namespace: Optional[str] = None,
                 config: Optional[dict] = None) -> None:
        if client is None:
            import oci

            client = oci.object_storage.ObjectStorageClient(config or oci.config.from_file())
        self.client, self.bucket = client, bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.namespace = namespace or client.get_namespace().data

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(self.namespace, self.bucket, self.prefix + key, data)

    def get(self, key: str) -> Optional[bytes]:
        try:
            return self.client.get_object(self.namespace, self.bucket, self.prefix + key).data.content
        except Exception as exc:  # noqa: BLE001 - oci raises ServiceError; status 404 means missing
            if getattr(exc, "status", None) == 404:
                return None
            raise

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(self.namespace, self.bucket, self.prefix + key)
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "status", None) != 404:
                raise

    def list(self, prefix: str) -> Iterator[str]:
        start = None
        while True:
            resp = self.client.list_objects(self.namespace, self.bucket, prefix=self.prefix + prefix, start=start)
            for obj in resp.data.objects:
                yield obj.name[len(self.prefix):]
            start = resp.data.next_start_with
            if not start:
                return


def backend_from_url(url: str, default_dir: str) -> ObjectBackend:
    """`""`/`file:///dir` -> LocalBackend, `s3://bucket/prefix`, `oci://bucket/prefix`."""
    if not url:
        return LocalBackend(default_dir)
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalBackend(parsed.path)
    if parsed.scheme == "s3":
        return S3Backend(parsed.netloc, parsed.path)
    if parsed.scheme == "oci":
        return OCIBackend(parsed.netloc, parsed.path)
    raise ValueError(f"volume storage must be file://, s3:// or oci://, got {url!r}")
