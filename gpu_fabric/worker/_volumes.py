"""Volume mounts of a sandboxed container: host directories the sandbox binds at the mount paths."""
from __future__ import annotations

import os

__all__ = ["volume_binds"]


def volume_binds(directory: str, spec) -> list[tuple[str, str, bool]]:
    """(host dir, mount path, read-only) per volume of `spec`; the container runtime fills each
    directory from the volume's latest version (core_executor/_volume.py) before user code runs."""
    binds = []
    for i, vm in enumerate(spec.volumes):
        host = os.path.join(directory, "volumes", f"{i}-{vm.volume_name}")
        os.makedirs(host, exist_ok=True)
        # Bound writable even when read-only: the runtime writes the files; commits are refused instead.
        binds.append((host, vm.mount_path, False))
    return binds
