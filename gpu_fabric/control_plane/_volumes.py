"""The FabricVolumes servicer: volumes over a VolumeStore, plus simulated preemption controls."""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading

import grpc

from gpu_fabric.proto import volumes_pb2 as pb
from gpu_fabric.proto import volumes_pb2_grpc

from ._tokens import DEFAULT_WORKSPACE, current_workspace, scoped_name
from .volumes import GcPolicy, GcResult, VolumeError, VolumeStore, backend_from_url

log = logging.getLogger("gpu_fabric.control_plane")

DEFAULT_NOTICE_S = 30.0
# Where volumes live: a file://, s3:// or oci:// URL; unset means <data dir>/volumes.
STORAGE_ENV = "GPUFABRIC_VOLUME_STORAGE"
# Garbage collection (docs/volumes.md): seconds between runs (0: never; `gpufabric volume gc` still
# works) and what is kept (volumes/_gc.py GcPolicy).
GC_INTERVAL_ENV = "GPUFABRIC_VOLUME_GC_INTERVAL_S"
DEFAULT_GC_INTERVAL_S = 3600.0
GC_POLICY_ENV = {"keep_versions": "GPUFABRIC_VOLUME_KEEP_VERSIONS", "retention_s": "GPUFABRIC_VOLUME_RETENTION_S",
                 "grace_s": "GPUFABRIC_VOLUME_GC_GRACE_S"}


def _env_number(env: str, default: float, kind=float) -> float:
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{env}={raw!r} is not a {'whole ' if kind is int else ''}number; unset it or give one") from None
    if value < 0:
        raise ValueError(f"{env}={raw!r} must be >= 0")
    return value


def gc_settings_from_env() -> tuple[float, GcPolicy]:
    """(seconds between garbage collections, what they keep) from the environment, with defaults."""
    default = GcPolicy()
    policy = GcPolicy(**{field: _env_number(env, getattr(default, field), int if field == "keep_versions" else float)
                         for field, env in GC_POLICY_ENV.items()})
    return _env_number(GC_INTERVAL_ENV, DEFAULT_GC_INTERVAL_S), policy


def _status(func):
    @functools.wraps(func)
    async def wrapper(self, request, context):
        try:
            return await func(self, request, context)
        except VolumeError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.code), str(exc))

    return wrapper


def _file(path: str, entry: dict) -> pb.VolumeFile:
    return pb.VolumeFile(path=path, size=entry["size"], blocks=entry["blocks"], mode=entry["mode"], mtime=entry["mtime"])


def _gc_result(result: GcResult) -> pb.VolumeGcResult:
    fields = vars(result)
    return pb.VolumeGcResult(**{**fields, "name": result.name.rpartition("/")[2]})


class VolumesServicer(volumes_pb2_grpc.FabricVolumesServicer):
    """Backend calls run in threads (S3 and OCI block); the store serializes commits per volume.

    Garbage collection runs every `gc_interval_s` seconds once `start_gc` is called (the first run
    one interval after start-up: uploads in flight across a restart get that long to commit), and
    on demand through VolumeGc.
    """

    def __init__(self, data_dir: str, engine, *, store: VolumeStore | None = None,
                 gc_interval_s: float | None = None, gc_policy: GcPolicy | None = None) -> None:
        self.engine = engine
        self.store = store or VolumeStore(backend_from_url(os.environ.get(STORAGE_ENV, ""), os.path.join(data_dir, "volumes")))
        self._notices: dict[str, tuple[float, str]] = {}
        env_interval, env_policy = gc_settings_from_env()
        self.gc_interval_s = env_interval if gc_interval_s is None else gc_interval_s
        self.gc_policy = gc_policy or env_policy
        self._gc_task: asyncio.Task | None = None
        self._gc_stop = threading.Event()

    def start_gc(self) -> None:
        """Starts the periodic collection on the running event loop (nothing when the interval is 0)."""
        if self.gc_interval_s > 0 and self._gc_task is None:
            self._gc_task = asyncio.get_running_loop().create_task(self._gc_forever())

    def stop(self) -> None:
        """Stops the periodic collection; a run in progress ends after its current batch."""
        self._gc_stop.set()
        if self._gc_task is not None:
            self._gc_task.cancel()
            self._gc_task = None

    async def _gc_forever(self) -> None:
        while not self._gc_stop.is_set():
            await asyncio.sleep(self.gc_interval_s)
            try:
                results = await asyncio.to_thread(self.store.collect, self.gc_policy, stop=self._gc_stop)
            except Exception:  # noqa: BLE001 - one failed run must not end collection
                log.exception("volume garbage collection failed; the next run is in %gs", self.gc_interval_s)
                continue
            for r in results:
                if r.error:
                    log.error("volume GC skipped %s: %s", r.name, r.error)
            freed = sum(r.bytes_freed for r in results)
            if freed:
                log.info("volume GC freed %d bytes (%d blocks, %d old versions) in %d volume(s)", freed,
                         sum(r.blocks_freed for r in results), sum(r.versions_freed for r in results), len(results))

    @staticmethod
    def _info(info: dict) -> pb.VolumeInfo:
        return pb.VolumeInfo(**{**info, "name": info["name"].rpartition("/")[2]})

    # Volumes belong to the RPC's workspace: the store names them "workspace/name" outside the
    # default one (_tokens.scoped_name), so a name never reaches another workspace's volume.
    @_status
    async def VolumeGetOrCreate(self, request, context):
        return self._info(await asyncio.to_thread(self.store.get_or_create, scoped_name(request.name), request.create_if_missing))

    @_status
    async def VolumeList(self, request, context):
        workspace = current_workspace() or DEFAULT_WORKSPACE

        def infos():
            return [self.store.info(n) for n in self.store.names("" if workspace == DEFAULT_WORKSPACE else workspace)]

        return pb.VolumeListResponse(volumes=[self._info(i) for i in await asyncio.to_thread(infos)])

    @_status
    async def VolumeDelete(self, request, context):
        await asyncio.to_thread(self.store.delete, scoped_name(request.name), request.allow_missing)
        return pb.VolumeDeleteResponse()

    @_status
    async def VolumeGetManifest(self, request, context):
        version, files = await asyncio.to_thread(self.store.manifest, scoped_name(request.name))
        return pb.VolumeManifest(name=request.name, version=version, files=[_file(p, e) for p, e in sorted(files.items())])

    @_status
    async def VolumeMissingBlocks(self, request, context):
        missing = await asyncio.to_thread(self.store.missing_blocks, scoped_name(request.name), list(request.hashes))
        return pb.VolumeBlocksRequest(name=request.name, hashes=missing)

    @_status
    async def VolumePutBlocks(self, request, context):
        digests = await asyncio.to_thread(self.store.put_blocks, scoped_name(request.name), list(request.blocks))
        return pb.VolumeBlocksRequest(name=request.name, hashes=digests)

    @_status
    async def VolumeGetBlock(self, request, context):
        return pb.VolumeBlock(data=await asyncio.to_thread(self.store.get_block, scoped_name(request.name), request.hash))

    @_status
    async def VolumeCommit(self, request, context):
        puts = [{"path": f.path, "size": f.size, "blocks": list(f.blocks), "mode": f.mode, "mtime": f.mtime} for f in request.puts]
        version = await asyncio.to_thread(self.store.commit, scoped_name(request.name), puts, list(request.deletes))
        return pb.VolumeCommitResponse(version=version)

    @_status
    async def VolumeGc(self, request, context):
        workspace = current_workspace() or DEFAULT_WORKSPACE
        name = scoped_name(request.name) if request.name else None
        results = await asyncio.to_thread(self.store.collect, self.gc_policy, name=name, dry_run=request.dry_run,
                                          workspace="" if workspace == DEFAULT_WORKSPACE else workspace)
        return pb.VolumeGcResponse(volumes=[_gc_result(r) for r in results], dry_run=request.dry_run)

    # -- preemption (simulated notices for the local provider; listing for the CLI) ---------------
    @_status
    async def WorkerPreempt(self, request, context):
        if request.worker_id not in self.engine.workers:
            raise VolumeError("NOT_FOUND", f"no worker {request.worker_id!r}; see `gpufabric worker ls`")
        self._notices[request.worker_id] = (request.deadline_s or DEFAULT_NOTICE_S, request.reason or "simulated preemption")
        log.warning("simulated preemption of worker %s requested", request.worker_id)
        return pb.WorkerPreemptResponse()

    @_status
    async def WorkerPreemptionPoll(self, request, context):
        notice = self._notices.pop(request.worker_id, None)
        if notice is None:
            return pb.WorkerPreemptionPollResponse()
        return pb.WorkerPreemptionPollResponse(preempt=True, deadline_s=notice[0], reason=notice[1])

    @_status
    async def WorkerList(self, request, context):
        engine, out = self.engine, []
        for worker in engine.workers.values():
            containers = [engine.containers[c] for c in worker.containers if c in engine.containers]
            out.append(pb.WorkerSummary(
                worker_id=worker.worker_id, hostname=worker.info.hostname, accepting=worker.capacity.accepting,
                containers=len(containers), running_inputs=sum(len(c.held) for c in containers),
                functions=sorted({engine.functions[c.function_id].name for c in containers if c.function_id in engine.functions}),
                gpus=list(worker.info.resources.gpus),
            ))
        return pb.WorkerListResponse(workers=out)


def add_to_server(plane) -> VolumesServicer:
    """Registers the volumes servicer on `plane.server` (a ControlPlane) and returns it."""
    servicer = VolumesServicer(plane.data_dir, plane.engine)
    volumes_pb2_grpc.add_FabricVolumesServicer_to_server(servicer, plane.server)
    plane.volumes = servicer
    servicer.start_gc()  # ended by servicer.stop(), or with the plane's event loop
    return servicer
