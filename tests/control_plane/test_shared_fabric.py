"""A shared fabric end to end: TLS with a CA made here, and a control plane on PostgreSQL."""
from __future__ import annotations

import datetime
import ipaddress

import grpc
import pytest

from gpu_fabric.control_plane import ControlPlane
from gpu_fabric.proto import client_pb2, client_pb2_grpc
from tests.pg_server import pg_url  # noqa: F401 - fixture

from .conftest import RunningPlane


def _self_signed_ca_and_server(tmp_path):
    """(ca.pem, server.pem, server.key): a CA, and a server certificate it signed for 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test fabric CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fabric")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {name: tmp_path / name for name in ("ca.pem", "server.pem", "server.key")}
    paths["ca.pem"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["server.pem"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["server.key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    return (str(paths[n]) for n in ("ca.pem", "server.pem", "server.key"))


def test_tls_client_trusts_the_ca_bundle(tmp_path, monkeypatch):
    from core_executor._client import Client
    from core_executor.exception import ConnectionError as FabricConnectionError

    ca, cert, key = _self_signed_ca_and_server(tmp_path)
    running = RunningPlane.__new__(RunningPlane)  # the plane only; its plaintext stubs would not connect
    import asyncio
    import threading

    running.loop = asyncio.new_event_loop()
    running.thread = threading.Thread(target=running.loop.run_forever, daemon=True)
    running.thread.start()
    plane = ControlPlane(str(tmp_path / "fabric"), token="tls-token", tls_cert=cert, tls_key=key, web={"port": 0})
    running.plane = plane
    running.call(plane.start())
    try:
        assert plane.url.startswith("grpcs://127.0.0.1:")
        monkeypatch.setenv("GPUFABRIC_CA_BUNDLE", ca)
        client = Client(plane.url, "tls-token")
        assert client.hello().server_version
        client.close()
        # Without the CA the handshake fails: no silent fallback to plaintext or to trusting anyone.
        monkeypatch.delenv("GPUFABRIC_CA_BUNDLE")
        untrusting = Client(plane.url, "tls-token")
        untrusting._sleep = lambda s: None
        with pytest.raises(FabricConnectionError):
            untrusting.call("Hello", client_pb2.HelloRequest(), timeout=2.0, idempotent=False)
        untrusting.close()
        plain = grpc.insecure_channel(plane.url.removeprefix("grpcs://"))
        with pytest.raises(grpc.RpcError):
            client_pb2_grpc.FabricClientStub(plain).Hello(client_pb2.HelloRequest(), timeout=2.0)
        plain.close()
        # The HTTP gateway serves HTTPS with the same certificate.
        import ssl
        import urllib.request

        assert plane.web.url.startswith("https://127.0.0.1:")
        trusting = ssl.create_default_context(cafile=ca)
        request = urllib.request.Request(plane.web.url + "/metrics", headers={"Authorization": "Bearer tls-token"})
        with urllib.request.urlopen(request, context=trusting, timeout=10) as response:
            assert response.status == 200 and b"gpufabric" in response.read()
        with pytest.raises(Exception):
            urllib.request.urlopen(plane.web.url.replace("https://", "http://") + "/metrics", timeout=5).read()
    finally:
        running.call(plane.stop(0))
        running.loop.call_soon_threadsafe(running.loop.stop)
        running.thread.join(5)


def test_control_plane_on_postgres_keeps_state_and_refuses_a_second(tmp_path, pg_url):  # noqa: F811
    from gpu_fabric.control_plane._store_pg import DatabaseInUse

    running = RunningPlane(str(tmp_path / "one"), database=pg_url)
    md = running.md
    app_id = running.client.AppCreate(client_pb2.AppCreateRequest(name="kept", kind=client_pb2.APP_KIND_DEPLOYED), metadata=md).app_id
    with pytest.raises(DatabaseInUse, match="another gpu-fabric control plane"):
        ControlPlane(str(tmp_path / "two"), token="t", database=pg_url)
    running.stop()
    again = RunningPlane(str(tmp_path / "three"), database=pg_url)  # another machine's data dir, same database
    apps = again.client.AppList(client_pb2.AppListRequest(), metadata=again.md).apps
    assert [a.app_id for a in apps] == [app_id]
    again.stop()
