"""The fs_lazy exception hierarchy."""
from __future__ import annotations

__all__ = ["FsLazyError", "ChunkNotFoundError", "ChunkCorruptError", "CacheFullError", "BuildError", "MountError"]


class FsLazyError(Exception):
    """Base of every fs_lazy error."""


class ChunkNotFoundError(FsLazyError):
    """Raised when a store has no object under a digest; the image was not (fully) pushed there."""


class ChunkCorruptError(FsLazyError):
    """Raised when a chunk's bytes still do not match its digest after a refetch; the store is damaged."""


class CacheFullError(FsLazyError):
    """Raised when the local chunk cache cannot hold a chunk even after evicting; give it more disk."""


class BuildError(FsLazyError):
    """Raised when an image build step fails; `log` holds that step's output."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


class MountError(FsLazyError):
    """Raised when an image cannot be mounted (no FUSE, mount helper failed); see the message."""
