"""Object backends volumes are stored on: one small interface, three implementations."""
from __future__ import annotations

import abc
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional
from urllib.parse import parse_qs, urlparse

__all__ = ["LocalBackend", "OCIBackend", "ObjectBackend", "ObjectInfo", "S3Backend", "backend_from_url"]


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: its key, size in bytes and last-modified time (epoch seconds)."""

    key: str
    size: int
    mtime: float


class ObjectBackend(abc.ABC):
    """Keys to bytes. `put` must be atomic: a reader sees the old object or the new, never a part.

    Listings must be strongly consistent (an object put before a listing starts is in it): local
    directories, S3 and OCI Object Storage all are. Garbage collection relies on it.
    """

    # Keys one `delete_many` call should take: garbage collection deletes in batches of this size,
    # and uploads to the volume wait for each batch (one DeleteObjects call on S3, one call per key on OCI).
    delete_batch: int = 100

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def get(self, key: str) -> Optional[bytes]:
        """The object's bytes, None when there is none."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; a missing key is not an error."""

    @abc.abstractmethod
    def list_info(self, prefix: str) -> Iterator[ObjectInfo]:
        """Objects whose keys start with `prefix`, with their sizes and modification times."""

    def list(self, prefix: str) -> Iterator[str]:
        """Keys starting with `prefix`."""
        return (info.key for info in self.list_info(prefix))

    def exists(self, key: str) -> bool:
        return self.get(key) is not None

    def children(self, prefix: str) -> set[str]:
        """Names one level below `prefix` (which ends with "/"): "a" and "b" for keys prefix+"a/x", prefix+"b".
        Backends with a delimiter listing override it, so this does not list every key below."""
        return {key[len(prefix):].split("/", 1)[0] for key in self.list(prefix)}

    def delete_many(self, keys: Iterable[str]) -> None:
        """Remove `keys` (missing ones are not an error); backends with a batch call override it."""
        for key in keys:
            self.delete(key)


class LocalBackend(ObjectBackend):
    """A directory; objects are files written to a temp name, fsynced and renamed into place."""

    delete_batch = 1000

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

    def children(self, prefix: str) -> set[str]:
        try:
            return {n for n in os.listdir(self._path(prefix.rstrip("/"))) if not n.startswith(".tmp-")}
        except (FileNotFoundError, NotADirectoryError):
            return set()

    def list_info(self, prefix: str) -> Iterator[ObjectInfo]:
        # Walk only the deepest directory the prefix names, not the whole store.
        top = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self._path(top) if top else self.root
        for dirpath, _, names in os.walk(start):
            rel = os.path.relpath(dirpath, self.root)
            for name in names:
                if name.startswith(".tmp-"):
                    continue
                key = name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"
                if not key.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:  # deleted while we walked
                    continue
                yield ObjectInfo(key, st.st_size, st.st_mtime)


class S3Backend(ObjectBackend):
    """An S3 bucket (boto3, imported lazily); S3 PUTs are atomic per object."""

    delete_batch = 1000  # DeleteObjects' limit

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

    def exists(self, key: str) -> bool:
        # HEAD, not GET: existence checks run per block and must not download 8 MiB each.
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def delete_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": self.prefix + k} for k in keys[i:i + 1000]]
            errors = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}).get("Errors", [])
            if errors:
                first = errors[0]
                raise OSError(f"s3://{self.bucket}: could not delete {len(errors)} object(s), e.g. {first.get('Key')}: "
                              f"{first.get('Code')} {first.get('Message')}")

    def children(self, prefix: str) -> set[str]:
        out = set()
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix, Delimiter="/"):
            out.update(p["Prefix"][len(self.prefix + prefix):].rstrip("/") for p in page.get("CommonPrefixes", ()))
            out.update(o["Key"][len(self.prefix + prefix):] for o in page.get("Contents", ()))
        return out

    def list_info(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for obj in page.get("Contents", ()):
                yield ObjectInfo(obj["Key"][len(self.prefix):], int(obj["Size"]), obj["LastModified"].timestamp())


class OCIBackend(ObjectBackend):
    """An OCI Object Storage bucket through the `oci` SDK's ObjectStorageClient (passed in or made lazily).

    The namespace is the tenancy's (looked up with GetNamespace) unless given.
    """

    delete_batch = 50  # no batch delete in Object Storage: each key is a DeleteObject call

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None, namespace: Optional[str] = None,
                 config: Optional[dict] = None) -> None:
        if client is None:
            client = _oci_client(config, bucket)
        self.client, self.bucket = client, bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.namespace = namespace or client.get_namespace().data

    def _missing(self, exc: Exception) -> bool:
        """Whether an error (oci.exceptions.ServiceError) says the object is not there; a missing
        bucket or namespace is a configuration error and raised as such."""
        if getattr(exc, "status", None) != 404:
            return False
        if getattr(exc, "code", None) in ("BucketNotFound", "NamespaceNotFound"):
            raise OSError(f"OCI Object Storage: no bucket {self.bucket!r} in namespace {self.namespace!r} (or no access to it); "
                          "create it or fix GPUFABRIC_VOLUME_STORAGE") from exc
        return True

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(self.namespace, self.bucket, self.prefix + key, data)

    def get(self, key: str) -> Optional[bytes]:
        try:
            return self.client.get_object(self.namespace, self.bucket, self.prefix + key).data.content
        except Exception as exc:  # noqa: BLE001 - see _missing
            if self._missing(exc):
                return None
            raise

    def exists(self, key: str) -> bool:
        # HeadObject, not GetObject: existence checks run per block and must not download 8 MiB each.
        try:
            self.client.head_object(self.namespace, self.bucket, self.prefix + key)
            return True
        except Exception as exc:  # noqa: BLE001 - see _missing
            if self._missing(exc):
                return False
            raise

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(self.namespace, self.bucket, self.prefix + key)
        except Exception as exc:  # noqa: BLE001 - see _missing
            if not self._missing(exc):
                raise

    def _pages(self, prefix: str, **kwargs: Any) -> Iterator[Any]:
        """ListObjects pages (each at most 1000 objects), following `next_start_with`."""
        start = None
        while True:
            if start:
                kwargs["start"] = start
            data = self.client.list_objects(self.namespace, self.bucket, prefix=self.prefix + prefix, **kwargs).data
            yield data
            start = data.next_start_with
            if not start:
                return

    def children(self, prefix: str) -> set[str]:
        out = set()
        for page in self._pages(prefix, delimiter="/"):
            out.update(p[len(self.prefix + prefix):].rstrip("/") for p in page.prefixes or ())
            out.update(o.name[len(self.prefix + prefix):] for o in page.objects)
        return out

    def list_info(self, prefix: str) -> Iterator[ObjectInfo]:
        for page in self._pages(prefix, fields="name,size,timeModified"):
            for obj in page.objects:
                modified = obj.time_modified.timestamp() if obj.time_modified is not None else 0.0
                yield ObjectInfo(obj.name[len(self.prefix):], int(obj.size or 0), modified)


def _oci_client(config: Optional[dict], bucket: str) -> Any:
    """An ObjectStorageClient from `config`, else from the OCI config file (`OCI_CONFIG_FILE`,
    default ~/.oci/config; profile `OCI_CONFIG_PROFILE`, default DEFAULT)."""
    import oci

    if config is None:
        location = os.environ.get("OCI_CONFIG_FILE") or oci.config.DEFAULT_LOCATION
        profile = os.environ.get("OCI_CONFIG_PROFILE") or oci.config.DEFAULT_PROFILE
        try:
            config = oci.config.from_file(location, profile)
        except (oci.exceptions.ConfigFileNotFound, oci.exceptions.ProfileNotFound, oci.exceptions.InvalidConfig) as exc:
            raise ValueError(f"OCI volume storage (bucket {bucket!r}) needs an OCI SDK config: {exc}. Write one at "
                             "~/.oci/config (or point OCI_CONFIG_FILE / OCI_CONFIG_PROFILE at one)") from None
    return oci.object_storage.ObjectStorageClient(config)


def backend_from_url(url: str, default_dir: str) -> ObjectBackend:
    """`""`/`file:///dir` -> LocalBackend, `s3://bucket/prefix`, `oci://bucket/prefix[?namespace=NS]`."""
    if not url:
        return LocalBackend(default_dir)
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalBackend(parsed.path)
    if parsed.scheme == "s3":
        return S3Backend(parsed.netloc, parsed.path)
    if parsed.scheme == "oci":
        namespace = parse_qs(parsed.query).get("namespace", [None])[0]
        return OCIBackend(parsed.netloc, parsed.path, namespace=namespace)
    raise ValueError(f"volume storage must be file://, s3:// or oci://, got {url!r}")
