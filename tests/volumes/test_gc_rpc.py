"""VolumeGc over gRPC (the FabricVolumes servicer on a real server), `gpufabric volume gc`, the
periodic collection and its settings."""
from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest
from click.testing import CliRunner

from gpu_fabric.control_plane import _volumes
from gpu_fabric.control_plane.volumes import GcPolicy, LocalBackend, VolumeStore
from gpu_fabric.proto import volumes_pb2 as pb
from gpu_fabric.proto import volumes_pb2_grpc


class Served:
    """A VolumesServicer on a grpc.aio server on loopback, on its own event loop thread."""

    def __init__(self, store: VolumeStore, **options) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servicer = _volumes.VolumesServicer("", None, store=store, **options)

        async def start():
            server = grpc.aio.server()
            volumes_pb2_grpc.add_FabricVolumesServicer_to_server(self.servicer, server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            self.servicer.start_gc()
            return server, port

        self.server, self.port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = volumes_pb2_grpc.FabricVolumesStub(self.channel)

    def close(self) -> None:
        self.servicer.stop()
        self.channel.close()
        asyncio.run_coroutine_threadsafe(self.server.stop(0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _commit(store, name, path, data):
    digests = store.put_blocks(name, [data])
    store.commit(name, [{"path": path, "size": len(data), "blocks": digests}], [])


@pytest.fixture
def store(tmp_path):
    clock_offset = [0.0]
    store = VolumeStore(LocalBackend(str(tmp_path / "vols")), clock=lambda: time.time() + clock_offset[0])
    store.offset = clock_offset
    store.get_or_create("data", True)
    for i in range(3):
        _commit(store, "data", "model.bin", b"weights %d" % i)
    store.offset[0] += 10
    return store


def test_volume_gc_rpc_and_cli(store, monkeypatch):
    served = Served(store, gc_interval_s=0, gc_policy=GcPolicy(keep_versions=0, retention_s=0, grace_s=0))
    try:
        dry = served.stub.VolumeGc(pb.VolumeGcRequest(name="data", dry_run=True))
        assert dry.dry_run and [(v.name, v.blocks_freed, v.versions_freed) for v in dry.volumes] == [("data", 2, 2)]
        with pytest.raises(grpc.RpcError) as err:
            served.stub.VolumeGc(pb.VolumeGcRequest(name="nothing"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        monkeypatch.setenv("GPUFABRIC_URL", f"grpc://127.0.0.1:{served.port}")
        monkeypatch.setenv("GPUFABRIC_TOKEN", "t")
        from core_executor import cli

        out = CliRunner().invoke(cli.main, ["volume", "gc", "--dry-run"])
        assert out.exit_code == 0, out.output
        assert "data: would free 2 blocks (18 B) and 2 old versions; kept 1 versions, 1 blocks (9 B)" in out.output
        out = CliRunner().invoke(cli.main, ["volume", "gc", "data"])
        assert out.exit_code == 0, out.output
        assert "data: freed 2 blocks (18 B)" in out.output and "total: freed" in out.output
        assert store.read_file("data", "model.bin") == b"weights 2"
        out = CliRunner().invoke(cli.main, ["volume", "gc", "nothing"])
        assert out.exit_code != 0 and "no volume named 'nothing'" in out.output
    finally:
        served.close()


def test_periodic_collection_frees_garbage_without_being_asked(store):
    served = Served(store, gc_interval_s=0.05, gc_policy=GcPolicy(keep_versions=0, retention_s=0, grace_s=0))
    try:
        deadline = time.monotonic() + 10
        while len(list(store.backend.list("vol/data/b/"))) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(list(store.backend.list("vol/data/b/"))) == 1
        assert store.read_file("data", "model.bin") == b"weights 2"
    finally:
        served.close()
    assert served.servicer._gc_task is None


def test_gc_settings_from_the_environment(monkeypatch):
    interval, policy = _volumes.gc_settings_from_env()
    assert interval == 3600 and policy == GcPolicy()
    monkeypatch.setenv("GPUFABRIC_VOLUME_GC_INTERVAL_S", "0")
    monkeypatch.setenv("GPUFABRIC_VOLUME_KEEP_VERSIONS", "10")
    monkeypatch.setenv("GPUFABRIC_VOLUME_RETENTION_S", "60")
    monkeypatch.setenv("GPUFABRIC_VOLUME_GC_GRACE_S", "120.5")
    assert _volumes.gc_settings_from_env() == (0, GcPolicy(keep_versions=10, retention_s=60, grace_s=120.5))
    monkeypatch.setenv("GPUFABRIC_VOLUME_KEEP_VERSIONS", "many")
    with pytest.raises(ValueError, match="GPUFABRIC_VOLUME_KEEP_VERSIONS='many' is not a whole number"):
        _volumes.gc_settings_from_env()
    monkeypatch.setenv("GPUFABRIC_VOLUME_KEEP_VERSIONS", "-1")
    with pytest.raises(ValueError, match="must be >= 0"):
        _volumes.gc_settings_from_env()


def test_volume_gc_sees_only_the_callers_workspace(store):
    from gpu_fabric.control_plane import _tokens

    store.get_or_create("team/data", True)
    for i in range(2):
        _commit(store, "team/data", "f", b"team %d" % i)
    store.offset[0] += 10
    servicer = _volumes.VolumesServicer("", None, store=store, gc_interval_s=0,
                                        gc_policy=GcPolicy(keep_versions=0, retention_s=0, grace_s=0))

    async def as_team():
        _tokens.set_workspace("team")
        return await servicer.VolumeGc(pb.VolumeGcRequest(), None)

    reply = asyncio.run(as_team())
    assert [(v.name, v.blocks_freed) for v in reply.volumes] == [("data", 1)]  # team's "data", shown by its short name
    assert len(list(store.backend.list("vol/data/b/"))) == 3  # the default workspace's "data" untouched
