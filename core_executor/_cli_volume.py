"""`gpufabric volume ls|put|get|rm|gc` and `gpufabric worker ls|preempt` (simulated preemption)."""
from __future__ import annotations

import os
import sys
import time

import click

from ._cli_secret import _fabric_client


def _stub(client):
    from gpu_fabric.proto import volumes_pb2_grpc

    return volumes_pb2_grpc.FabricVolumesStub(client.channel)


def _call(client, method: str, request, timeout: float = 120.0):
    from ._client import translate_error

    try:
        return getattr(_stub(client), method)(request, metadata=client.metadata, timeout=timeout)
    except Exception as err:  # grpc.RpcError -> SDK exception, printed as one line by the CLI
        raise translate_error(err) from None


@click.group(name="volume")
def volume_group() -> None:
    """Volumes: versioned file trees mounted into containers."""


@volume_group.command(name="ls")
@click.argument("name", required=False)
@click.argument("path", required=False, default="/")
def volume_ls(name: str | None, path: str) -> None:
    """List volumes, or the files of volume NAME under PATH."""
    from gpu_fabric.proto import volumes_pb2 as pb

    with _fabric_client():
        if not name:
            from ._object_base import resolve_client

            for v in _call(resolve_client(), "VolumeList", pb.VolumeListRequest()).volumes:
                click.echo(f"{v.name}\tv{v.version}\t{v.files} files\t{v.bytes} bytes")
            return
        from ._volume import FileEntryType, Volume

        for e in Volume.from_name(name).listdir(path):
            kind = "dir " if e.type == FileEntryType.DIRECTORY else "file"
            click.echo(f"{kind}\t{e.size}\t{e.path}{'/' if e.type == FileEntryType.DIRECTORY else ''}")


@volume_group.command(name="put")
@click.argument("name")
@click.argument("local_path", type=click.Path(exists=True))
@click.argument("remote_path", required=False, default="")
@click.option("--force", "-f", is_flag=True, help="Replace files that exist.")
def volume_put(name: str, local_path: str, remote_path: str, force: bool) -> None:
    """Upload a file or directory to volume NAME (created if missing), in one commit."""
    from ._volume import Volume

    remote = remote_path or os.path.basename(os.path.abspath(local_path))
    with _fabric_client():
        with Volume.from_name(name, create_if_missing=True).batch_upload(force=force) as batch:
            if os.path.isdir(local_path):
                batch.put_directory(local_path, remote)
            else:
                batch.put_file(local_path, remote)
    click.echo(f"uploaded {local_path} to {name}:{remote}")


@volume_group.command(name="get")
@click.argument("name")
@click.argument("remote_path")
@click.argument("local_path", required=False, default="-")
def volume_get(name: str, remote_path: str, local_path: str) -> None:
    """Download a file of volume NAME to LOCAL_PATH ('-' for stdout)."""
    from ._volume import Volume

    with _fabric_client():
        chunks = Volume.from_name(name).read_file(remote_path)
        if local_path == "-":
            for chunk in chunks:
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return
        if os.path.isdir(local_path):
            local_path = os.path.join(local_path, os.path.basename(remote_path))
        with open(local_path, "wb") as f:
            for chunk in chunks:
                f.write(chunk)


@volume_group.command(name="rm")
@click.argument("name")
@click.argument("remote_path", required=False, default="")
@click.option("--recursive", "-r", is_flag=True, help="Remove a directory and its contents.")
def volume_rm(name: str, remote_path: str, recursive: bool) -> None:
    """Remove a file of volume NAME, or (with no path) the whole volume."""
    from gpu_fabric.proto import volumes_pb2 as pb

    from ._volume import Volume

    with _fabric_client():
        if not remote_path:
            from ._object_base import resolve_client

            _call(resolve_client(), "VolumeDelete", pb.VolumeDeleteRequest(name=name))
            click.echo(f"deleted volume {name}")
            return
        Volume.from_name(name).remove_file(remote_path, recursive=recursive)
    click.echo(f"removed {name}:{remote_path}")


# A collection lists and deletes objects one batch at a time; on a large S3 or OCI volume it takes a while.
GC_TIMEOUT_S = 3600.0


@volume_group.command(name="gc")
@click.argument("name", required=False)
@click.option("--dry-run", is_flag=True, help="Report what would be freed; delete nothing.")
def volume_gc(name: str | None, dry_run: bool) -> None:
    """Free the storage no kept version uses, in volume NAME or every volume (docs/volumes.md says what is kept)."""
    from gpu_fabric.proto import volumes_pb2 as pb

    with _fabric_client() as client:
        reply = _call(client, "VolumeGc", pb.VolumeGcRequest(name=name or "", dry_run=dry_run), timeout=GC_TIMEOUT_S)
    for line in gc_report(reply):
        click.echo(line)


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def gc_report(reply) -> list[str]:
    """The lines `gpufabric volume gc` prints for a VolumeGcResponse: one per volume, then a total."""
    verb = "would free" if reply.dry_run else "freed"
    lines = []
    for v in reply.volumes:
        if v.error:
            lines.append(f"{v.name}: skipped: {v.error}")
        elif v.deleted:
            lines.append(f"{v.name} (deleted volume): {verb} {v.blocks_freed} blocks, {v.versions_freed} versions, "
                         f"{_bytes(v.bytes_freed)} in all")
        else:
            line = (f"{v.name}: {verb} {v.blocks_freed} blocks ({_bytes(v.bytes_freed)}) and {v.versions_freed} old versions; "
                    f"kept {v.versions_kept} versions, {v.blocks_kept} blocks ({_bytes(v.bytes_kept)})")
            if v.blocks_pending:
                line += f"; {v.blocks_pending} unreferenced blocks ({_bytes(v.bytes_pending)}) wait out the grace period"
            lines.append(line)
    total = sum(v.bytes_freed for v in reply.volumes)
    lines.append(f"total: {verb} {_bytes(total)} in {len(reply.volumes)} volume(s)" if reply.volumes else "no volumes")
    return lines


def worker_admin(args: tuple[str, ...]) -> bool:
    """`gpufabric worker ls` / `gpufabric worker preempt ID [--deadline S]`; False for other args."""
    if not args or args[0] not in ("ls", "preempt"):
        return False
    worker_group.main(args=list(args), prog_name="gpufabric worker", standalone_mode=False)
    return True


@click.group(name="worker")
def worker_group() -> None:
    """Workers of the fabric at GPUFABRIC_URL."""


@worker_group.command(name="ls")
def worker_ls() -> None:
    """Workers, whether they take work, what they run, and their GPUs."""
    from gpu_fabric.proto import volumes_pb2 as pb

    with _fabric_client() as client:
        for w in _call(client, "WorkerList", pb.WorkerListRequest()).workers:
            state = "accepting" if w.accepting else "draining"
            click.echo(f"{w.worker_id}\t{state}\t{w.containers} containers\t{w.running_inputs} inputs\t{','.join(w.functions)}"
                       f"\t{_gpus_text(w.gpus)}")


def _gpus_text(gpus) -> str:
    """`0:H100 (NVIDIA H100 80GB HBM3, 81559 MiB, driver 550.54.15, CUDA 12.4)`, one per GPU, or `no GPU`."""
    out = []
    for g in gpus:
        details = [g.name, f"{g.memory_mb} MiB"]
        details += [f"driver {g.driver_version}"] if g.driver_version else []
        details += [f"CUDA {g.cuda_version}"] if g.cuda_version else []
        out.append(f"{g.index}:{g.type} ({', '.join(details)})")
    return "; ".join(out) or "no GPU"


@worker_group.command(name="preempt")
@click.argument("worker_id")
@click.option("--deadline", type=float, default=30.0, show_default=True, help="Seconds of notice (the grace period).")
def worker_preempt(worker_id: str, deadline: float) -> None:
    """Simulate a preemption notice for WORKER_ID (as a spot reclaim would send)."""
    from gpu_fabric.proto import volumes_pb2 as pb

    with _fabric_client() as client:
        _call(client, "WorkerPreempt", pb.WorkerPreemptRequest(worker_id=worker_id, deadline_s=deadline,
                                                               reason=f"simulated at {time.strftime('%H:%M:%S')}"))
    click.echo(f"preemption notice sent to {worker_id} ({deadline:g}s)")
