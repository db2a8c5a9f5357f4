"""The connection (URL parsing, retries, error mapping, blobs) and the embedded fabric's process handling."""
from __future__ import annotations

import os
import sys
import textwrap

import pytest

from core_executor import _client, exception
from core_executor._embedded import EmbeddedFabric


def test_parse_url():
    assert _client.parse_url("grpc://127.0.0.1:5000") == ("127.0.0.1:5000", False)
    assert _client.parse_url("grpcs://fabric.example:443/") == ("fabric.example:443", True)
    assert _client.parse_url("localhost:1") == ("localhost:1", False)
    for bad in ("http://x:1", "grpc://", "grpc://host"):
        with pytest.raises(exception.InvalidError, match="grpc://HOST:PORT"):
            _client.parse_url(bad)


def test_idempotent_calls_retry_while_unavailable(fake_server):
    fake_server.fabric.unavailable_hellos = 3
    sleeps = []
    client = _client.Client(fake_server.url, fake_server.token, sleep=sleeps.append)
    try:
        assert client.hello().server_version == "fake"
        assert len(sleeps) == 3
    finally:
        client.close()


def test_non_idempotent_calls_do_not_retry(fake_server):
    fake_server.fabric.unavailable_hellos = 1
    client = _client.Client(fake_server.url, fake_server.token, sleep=lambda s: None)
    try:
        with pytest.raises(exception.ConnectionError, match="cannot reach the fabric"):
            client.call("Hello", client.pb.HelloRequest(), idempotent=False)
    finally:
        client.close()


def test_unreachable_fabric_is_a_connection_error():
    client = _client.Client("grpc://127.0.0.1:1", "t", sleep=lambda s: None)
    try:
        with pytest.raises(exception.ConnectionError, match="GPUFABRIC_URL"):
            client.call("Hello", client.pb.HelloRequest(), timeout=2.0, idempotent=False)
    finally:
        client.close()


def test_blobs_round_trip_in_chunks(fake_server):
    client = _client.Client(fake_server.url, fake_server.token)
    try:
        data = os.urandom(2 * 1024 * 1024 + 17)
        blob_id = client.put(data)
        assert client.get(blob_id) == data
        assert client.get(client.put(b"")) == b""
    finally:
        client.close()


def test_one_client_per_process(fake_server, monkeypatch):
    a = _client.get_client()
    assert _client.get_client() is a
    monkeypatch.setattr(a, "pid", -1)  # as if we were a forked child
    b = _client.get_client()
    assert b is not a and _client.current(a) is b
    _client.forget_client(b)
    assert b.closed


def test_missing_configuration_says_what_to_set(monkeypatch):
    monkeypatch.delenv("GPUFABRIC_URL", raising=False)
    with pytest.raises(exception.ConnectionError, match="set GPUFABRIC_URL and GPUFABRIC_TOKEN"):
        _client.get_client()


class _ScriptedFabric(EmbeddedFabric):
    """Runs a small script instead of `python -m gpu_fabric serve` (same flags, same contract)."""

    script = ""

    def command(self):
        return [sys.executable, "-c", self.script, self._ready_file]


def test_embedded_fabric_start_and_stop(tmp_path):
    fabric = _ScriptedFabric(str(tmp_path))
    fabric.script = textwrap.dedent("""
        import json, os, sys
        print("server log line")
        sys.stdout.flush()
        tmp = sys.argv[1] + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"url": "grpc://127.0.0.1:9", "token": "tok", "pid": os.getpid()}, fh)
        os.rename(tmp, sys.argv[1])
        sys.stdin.read()  # exits when the SDK closes stdin
    """)
    with fabric:
        assert (fabric.url, fabric.token) == ("grpc://127.0.0.1:9", "tok")
        assert fabric.running and fabric.server_pid
    assert not fabric.running
    assert "server log line" in (tmp_path / "embedded.log").read_text()
    assert not [p for p in os.listdir(tmp_path) if p.startswith("ready-")]


def test_embedded_fabric_that_dies_reports_its_log(tmp_path):
    fabric = _ScriptedFabric(str(tmp_path))
    fabric.script = "import sys; sys.stderr.write('port already in use\\n'); sys.exit(3)"
    with pytest.raises(exception.ConnectionError, match="(?s)exited with code 3.*port already in use"):
        fabric.start()


def test_embedded_fabric_start_timeout(tmp_path):
    fabric = _ScriptedFabric(str(tmp_path), start_timeout_s=0.3)
    fabric.script = "import sys; sys.stdin.read()"
    with pytest.raises(exception.ConnectionError, match="not ready after 0.3 s"):
        fabric.start()
    assert not fabric.running


def test_embedded_command_line(tmp_path):
    fabric = EmbeddedFabric(str(tmp_path))
    fabric._ready_file = str(tmp_path / "ready.json")
    assert fabric.command() == [
        sys.executable, "-m", "gpu_fabric", "serve", "--embedded", "--port", "0",
        "--data-dir", str(tmp_path), "--ready-file", str(tmp_path / "ready.json"),
    ]  # fmt: skip


def test_data_dir_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv("GPUFABRIC_DATA_DIR", raising=False)
    assert EmbeddedFabric().data_dir == os.path.join(os.path.expanduser("~"), ".gpufabric", "embedded")
    monkeypatch.setenv("GPUFABRIC_DATA_DIR", str(tmp_path))
    assert EmbeddedFabric().data_dir == str(tmp_path)
