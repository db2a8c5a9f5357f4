"""The three volume backends as one fixture: a local directory, S3 (moto) and OCI Object Storage
(the oci SDK's real client against tests/volumes/_oci_server.py), plus a clock tests can move."""
from __future__ import annotations

import threading
import time

import pytest

from gpu_fabric.control_plane.volumes import LocalBackend, OCIBackend, S3Backend

BACKENDS = ["local", "s3", "oci"]


class Clock:
    """Wall-clock time plus an offset: backends stamp objects with real time, tests move ahead."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(scope="session")
def oci_config():
    pytest.importorskip("oci")
    from ._oci_server import make_config

    return make_config()


@pytest.fixture
def oci_server(oci_config):
    from ._oci_server import FakeObjectStorage

    # Pages of 7: listings of a few dozen objects already take several ListObjects calls.
    with FakeObjectStorage(oci_config, page_size=7) as server:
        yield server


_MOTO = threading.RLock()


def _one_call_at_a_time(client):
    """`client` with its API calls serialized. moto's in-memory S3 is not safe across threads: a PUT
    over a key closes the old object's buffer, so a GET of that key in flight in another thread fails
    with "I/O operation on closed file", where real S3 (and ObjectBackend's contract) gives the old
    object or the new. moto runs under the GIL anyway, so this costs the tests no parallelism."""
    make_api_call = client._make_api_call  # what every operation and paginator page goes through

    def locked(*args, **kwargs):
        with _MOTO:
            return make_api_call(*args, **kwargs)

    client._make_api_call = locked
    return client


def make_backend(kind: str, request, tmp_path):
    """A fresh backend of `kind`; S3 and OCI ones keep their mocks alive until the test ends."""
    if kind == "local":
        return LocalBackend(str(tmp_path / "vols"))
    if kind == "s3":
        moto = pytest.importorskip("moto")
        import boto3

        mock = moto.mock_aws()
        mock.start()
        request.addfinalizer(mock.stop)
        client = _one_call_at_a_time(boto3.client("s3", region_name="us-east-1"))
        client.create_bucket(Bucket="vols")
        return S3Backend("vols", "fabric", client=client)
    server = request.getfixturevalue("oci_server")
    return OCIBackend("vols", "fabric", client=server.client(request.getfixturevalue("oci_config")))


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    return make_backend(request.param, request, tmp_path)
