"""The fabric relay of block_network=True containers: a unix socket piped to the fabric's TCP address."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

from gpu_fabric.worker import _sandbox
from gpu_fabric.worker._relay import FabricRelay, without_network


@pytest.fixture
def echo_server():
    server = socket.create_server(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                for data in iter(lambda: conn.recv(65536), b""):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def _roundtrip(path: str, payload: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(path)
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: client.recv(65536), b""))


def test_relay_pipes_both_ways_and_closes(tmp_path, echo_server):
    relay = FabricRelay(str(tmp_path / "fabric.sock"), f"grpc://127.0.0.1:{echo_server}")
    try:
        payload = bytes(range(256)) * 4096
        assert _roundtrip(relay.socket_path, payload) == payload
        assert _roundtrip(relay.socket_path, b"again") == b"again"
        assert relay.url_inside("/run/x/fabric.sock") == "unix:///run/x/fabric.sock"
    finally:
        relay.close()
    assert not (tmp_path / "fabric.sock").exists()


def test_relay_socket_in_a_deep_directory(tmp_path, echo_server):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    relay = FabricRelay(str(deep / "fabric.sock"), f"grpc://127.0.0.1:{echo_server}")
    try:
        assert len(relay.socket_path) > 108
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            import os

            directory = os.open(str(deep), os.O_RDONLY)
            try:
                client.connect(f"/proc/self/fd/{directory}/fabric.sock")
            finally:
                os.close(directory)
            client.sendall(b"deep")
            client.shutdown(socket.SHUT_WR)
            assert client.recv(10) == b"deep"
    finally:
        relay.close()


def test_relay_refuses_tls_fabric_urls(tmp_path):
    with pytest.raises(ValueError, match="grpc://"):
        FabricRelay(str(tmp_path / "fabric.sock"), "grpcs://fabric.example:443")


def test_sandbox_unshares_the_network_when_asked(tmp_path):
    facilities = _sandbox.Facilities("/usr/bin/bwrap", False, 0, None, None)
    sandbox = _sandbox.Sandbox("c1", image_root=str(tmp_path), directory=str(tmp_path), facilities=facilities)
    assert "--unshare-net" not in " ".join(sandbox.argv(["true"]))
    sandbox.block_network = True
    assert "--unshare-net" in " ".join(sandbox.argv(["true"]))


def test_client_accepts_unix_fabric_urls():
    from core_executor._client import parse_url

    assert parse_url("unix:///run/gpufabric/agent/fabric.sock") == ("unix:/run/gpufabric/agent/fabric.sock", False)


@pytest.mark.system
@pytest.mark.skipif(sys.platform != "linux" or _sandbox.detect().bwrap is None, reason="bubblewrap unavailable")
def test_without_network_keeps_only_the_relay(tmp_path, echo_server):
    env = {"GPUFABRIC_URL": f"grpc://127.0.0.1:{echo_server}", "GPUFABRIC_AGENT_PID": "1", "PATH": "/usr/bin:/bin"}
    code = (
        "import os, socket, sys\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {echo_server}), timeout=5); print('tcp ok')\n"
        "except OSError as exc:\n"
        "    print('tcp refused')\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(os.environ['GPUFABRIC_URL'][len('unix://'):])\n"
        "s.sendall(b'via relay'); s.shutdown(socket.SHUT_WR); print(s.recv(100).decode())\n"
    )
    relay, argv, env = without_network(str(tmp_path), env["GPUFABRIC_URL"], [sys.executable, "-c", code], env,
                                       sandboxed=False)
    try:
        assert "GPUFABRIC_AGENT_PID" not in env and env["GPUFABRIC_URL"].startswith("unix://")
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert out.stdout.split("\n")[:2] == ["tcp refused", "via relay"], out.stderr
    finally:
        relay.close()


def test_block_network_reaches_the_function_spec():
    import core_executor as fabric
    from core_executor._spec import build_options
    from core_executor.exception import InvalidError

    assert build_options(block_network=True).spec("f").block_network is True
    assert build_options().spec("f").block_network is False
    with pytest.raises(InvalidError, match="block_network"):
        build_options(block_network="yes")
    app = fabric.App("relay-spec-test")

    @app.function(block_network=True)
    def offline() -> None:
        pass

    assert offline._options.spec("offline").block_network is True
