"""A real control plane on loopback, run on its own event loop thread, with raw protocol stubs."""
from __future__ import annotations

import asyncio
import threading

import grpc
import pytest

from gpu_fabric.control_plane import ControlPlane
from gpu_fabric.proto import client_pb2_grpc, worker_pb2_grpc


class RunningPlane:
    def __init__(self, data_dir: str, **options):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.plane = ControlPlane(data_dir, token="secret-token", **options)
        self.call(self.plane.start())
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.plane.port}")
        self.client = client_pb2_grpc.FabricClientStub(self.channel)
        self.worker = worker_pb2_grpc.FabricWorkerStub(self.channel)
        self.container = worker_pb2_grpc.FabricContainerStub(self.channel)
        self.md = (("authorization", "Bearer secret-token"),)

    @property
    def engine(self):
        return self.plane.engine

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run_in_loop(self, fn):
        async def wrapper():
            return fn()

        return self.call(wrapper())

    def stop(self):
        self.channel.close()
        self.call(self.plane.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def plane(tmp_path):
    running = RunningPlane(str(tmp_path / "fabric"), heartbeat_timeout_s=2.0, app_heartbeat_timeout_s=30.0)
    yield running
    running.stop()
