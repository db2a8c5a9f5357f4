"""The three volume backends as one fixture: a local directory, S3 (moto) and OCI Object Storage
(the oci SDK's real client against tests/volumes/_oci_server.py), plus a clock tests can move."""
from __future__ import annotations

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
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="vols")
        return S3Backend("vols", "fabric", client=client)
    server = request.getfixturevalue("oci_server")
    return OCIBackend("vols", "fabric", client=server.client(request.getfixturevalue("oci_config")))


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    return make_backend(request.param, request, tmp_path)
