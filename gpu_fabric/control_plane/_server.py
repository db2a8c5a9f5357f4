"""The control plane process: a grpc.aio server over the engine, with its periodic work."""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import secrets
import sys

import grpc

from gpu_fabric.proto import billing_pb2_grpc, client_pb2_grpc, objects_pb2_grpc, worker_pb2_grpc

from . import _autoscaler, _shared, _volumes
from ._auth import TokenAuthInterceptor
from ._billing import BillingServicer
from ._engine import Engine
from ._objects import ObjectsServicer
from ._servicer import MAX_PAYLOAD, ClientServicer, ContainerServicer, WorkerServicer

log = logging.getLogger("gpu_fabric.control_plane")

MAX_MESSAGE = 64 * 1024 * 1024
TICK_S = 0.25
EXPIRE_EVERY_S = 30.0


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


class ControlPlane:
    """Owns the store, the engine and the gRPC server; run it on one event loop.

    `token`: the bearer token every RPC must carry; when None, the one stored in the data dir is
    reused (a restart keeps it) or a new one is made.
    """

    def __init__(self, data_dir: str, *, token: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 database: str = "", tls_cert: str = "", tls_key: str = "", **engine_options):
        os.makedirs(data_dir, exist_ok=True)
        self.data_dir = data_dir
        self._lock = _lock_data_dir(data_dir)
        # --- shared fabric: PostgreSQL state, issued tokens, TLS (_shared.py) ---
        self.database, self.tls = database, _shared.tls_files(tls_cert, tls_key)
        self.tls_paths = (tls_cert, tls_key) if self.tls else None  # the HTTP gateway serves HTTPS with them
        self.store = _shared.open_state_store(data_dir, database)
        # --- end shared fabric ---
        if token is None:
            token = self.store.get_meta("token")
            if token is None:
                token = secrets.token_urlsafe(24)
                self.store.set_meta("token", token)
        self.token = token
        self.max_payload = engine_options.pop("max_payload_bytes", MAX_PAYLOAD)
        self._capacity = engine_options.pop("capacity", None)  # providers, budgets: _autoscaler.configure
        self._web_options = engine_options.pop("web", None)  # gpu_fabric.web.WebGateway options; None: no HTTP
        self.web = None
        self.engine = Engine(self.store, token=token, default_python=engine_options.pop("default_python", python_version()), **engine_options)
        # Dicts, Queues and secrets (_objects.py), in their own objects.sqlite3 beside the state.
        self.objects = ObjectsServicer(data_dir, self.engine, store=_shared.open_object_store(database))
        self.tokens = _shared.attach(self)  # issued tokens, container tokens, PostgreSQL objects
        self.host = host
        self.port = port
        self.server: grpc.aio.Server | None = None
        self._ticker: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"{'grpcs' if self.tls else 'grpc'}://{self.host}:{self.port}"

    async def start(self) -> None:
        self.engine.load()
        self.server = grpc.aio.server(
            interceptors=[] if os.environ.get("NOAUTH") else [TokenAuthInterceptor(self.token, also_allow=self._join_allowed, registry=self.tokens)],
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE),
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.so_reuseport", 0),
            ],
        )
        client_pb2_grpc.add_FabricClientServicer_to_server(ClientServicer(self.engine, os.path.join(self.data_dir, "blobs"), max_payload=self.max_payload, secrets=self.objects.secrets), self.server)
        worker_pb2_grpc.add_FabricWorkerServicer_to_server(WorkerServicer(self.engine), self.server)
        worker_pb2_grpc.add_FabricContainerServicer_to_server(ContainerServicer(self.engine, secrets=self.objects.secrets), self.server)
        objects_pb2_grpc.add_FabricObjectsServicer_to_server(self.objects, self.server)
        _volumes.add_to_server(self)  # volumes: storage and simulated preemption (_volumes.py)
        bound = _shared.add_port(self.server, f"{self.host}:{self.port}", self.tls)
        if bound == 0:
            raise OSError(f"cannot listen on {self.host}:{self.port}; is another fabric using the port?")
        self.port = bound
        billing_pb2_grpc.add_FabricBillingServicer_to_server(BillingServicer(self.engine), self.server)
        _autoscaler.configure(self, self._capacity)  # needs the bound URL for launched workers
        # --- web gateway (gpu_fabric.web): endpoints, dashboard, metrics; FabricWeb on this gRPC server
        if self._web_options is not None:
            from gpu_fabric.web import WebGateway

            self.web = WebGateway(self, **self._web_options)
            self.web.add_to_server(self.server)
        # --- end web gateway
        await self.server.start()
        if self.web is not None:
            await self.web.start()
        self._ticker = asyncio.create_task(self._tick_forever())
        log.info("control plane listening at %s", self.url)

    async def _tick_forever(self) -> None:
        since_expire = 0.0
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.engine.tick()
                since_expire += TICK_S
                if since_expire >= EXPIRE_EVERY_S:
                    since_expire = 0.0
                    self.engine.expire_outputs()
            except Exception:  # noqa: BLE001 - one bad tick must not stop the fabric
                log.exception("control plane tick failed")

    def _join_allowed(self, authorization: str) -> bool:
        return self.engine.autoscaler is not None and self.engine.autoscaler.allows(authorization)

    async def stop(self, grace: float = 1.0) -> None:
        _autoscaler.shutdown(self)  # launched machines go with the control plane
        if self.web is not None:
            await self.web.stop()
        if self._ticker is not None:
            self._ticker.cancel()
        volumes = getattr(self, "volumes", None)
        if volumes is not None:
            volumes.stop()  # the periodic volume GC
        if self.server is not None:
            await self.server.stop(grace)
        self.engine.flush()
        self.store.close()
        self.objects.close()
        _shared.close(self)
        os.close(self._lock)


class DataDirInUse(RuntimeError):
    """Another control plane holds this data dir; two on one SQLite file would hand out inputs twice."""


def _lock_data_dir(data_dir: str) -> int:
    fd = os.open(os.path.join(data_dir, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise DataDirInUse(
            f"the data dir {data_dir} is in use by a running fabric (pid {holder}); stop it, "
            "point clients at it with GPUFABRIC_URL, or use another --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd
