"""The FabricVolumes servicer: volumes over a VolumeStore, plus simulated preemption controls."""
from __future__ import annotations

import asyncio
import functools
import logging
import os

import grpc

from gpu_fabric.proto import volumes_pb2 as pb
from gpu_fabric.proto import volumes_pb2_grpc

from ._tokens import DEFAULT_WORKSPACE, current_workspace, scoped_name
from .volumes import VolumeError, VolumeStore, backend_from_url

log = logging.getLogger("gpu_fabric.control_plane")

DEFAULT_NOTICE_S = 30.0
# Where volumes live: a file://, s3:// or oci:// URL; unset means <data dir>/volumes.
STORAGE_ENV = "GPUFABRIC_VOLUME_STORAGE"


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


class VolumesServicer(volumes_pb2_grpc.FabricVolumesServicer):
    """Backend calls run in threads (S3 and OCI block); the store serializes commits per volume."""

    def __init__(self, data_dir: str, engine, *, store: VolumeStore | None = None) -> None:
        self.engine = engine
        self.store = store or VolumeStore(backend_from_url(os.environ.get(STORAGE_ENV, ""), os.path.join(data_dir, "volumes")))
        self._notices: dict[str, tuple[float, str]] = {}

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
    return servicer
