"""Chunk stores: local directory, S3 (moto) and OCI (stub client), dedup and hash checks."""
from __future__ import annotations

import os

import pytest

import fs_lazy
from fs_lazy import ChunkCorruptError, ChunkNotFoundError, LocalStore, OCIStore, S3Store, digest_of


def _roundtrip(store: fs_lazy.ChunkStore) -> None:
    data = b"hello world" * 1000
    digest = store.put_chunk(data)
    assert digest == digest_of(data)
    assert store.has_chunk(digest)
    assert store.get_chunk(digest) == data
    assert store.put_chunk(data) == digest  # stored once
    assert not store.has_chunk(digest_of(b"other"))
    with pytest.raises(ChunkNotFoundError):
        store.get_chunk(digest_of(b"other"))
    assert store.get_ref("image-x") is None
    store.set_ref("image-x", digest)
    assert store.get_ref("image-x") == digest


def test_local_store_roundtrip_and_compression(tmp_path):
    store = LocalStore(str(tmp_path))
    _roundtrip(store)
    digest = store.put_chunk(b"a" * 100_000)
    # Compressible chunks are stored compressed; random ones raw.
    assert os.path.getsize(store.path(f"chunks/{digest[:2]}/{digest}")) < 10_000
    noise = os.urandom(10_000)
    raw = store.put_chunk(noise)
    assert os.path.getsize(store.path(f"chunks/{raw[:2]}/{raw}")) == 10_001


def test_corrupt_chunk_is_never_served(tmp_path):
    store = LocalStore(str(tmp_path))
    digest = store.put_chunk(b"x" * 10)
    with open(store.path(f"chunks/{digest[:2]}/{digest}"), "wb") as f:
        f.write(b"\x00garbage")
    with pytest.raises(ChunkCorruptError):
        store.get_chunk(digest)


def test_s3_store_with_moto():
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="images")
        store = S3Store("images", "fabric/v1", client=client)
        _roundtrip(store)
        keys = [o["Key"] for o in client.list_objects_v2(Bucket="images")["Contents"]]
        assert all(k.startswith("fabric/v1/") for k in keys)


class _OciError(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class _FakeOci:
    """The three ObjectStorageClient calls the store makes, with OCI's argument order."""

    def __init__(self) -> None:
        self.objects: dict[tuple, bytes] = {}

    def put_object(self, namespace, bucket, name, body):
        self.objects[(namespace, bucket, name)] = body

    def get_object(self, namespace, bucket, name):
        if (namespace, bucket, name) not in self.objects:
            raise _OciError(404)
        content = self.objects[(namespace, bucket, name)]
        return type("R", (), {"data": type("D", (), {"content": content})()})()

    def head_object(self, namespace, bucket, name):
        if (namespace, bucket, name) not in self.objects:
            raise _OciError(404)


def test_oci_store_with_stub_client():
    fake = _FakeOci()
    store = OCIStore("ns", "images", "p", client=fake)
    _roundtrip(store)
    assert all(key[0] == "ns" and key[1] == "images" and key[2].startswith("p/") for key in fake.objects)


def test_store_urls_round_trip(tmp_path):
    store = fs_lazy.open_store(f"file://{tmp_path}")
    assert isinstance(store, LocalStore) and fs_lazy.store_url(store) == f"file://{tmp_path}"
    assert isinstance(fs_lazy.open_store(str(tmp_path)), LocalStore)
