"""The fs_lazy exception hierarchy."""
from __future__ import annotations

__all__ = ["FsLazyError", "ChunkNotFoundError", "ChunkCorruptError", "CacheFullError", "BuildError", "MountError",
           "ImageTooLargeError"]


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


class ImageTooLargeError(MountError):
    """Raised when an image must be copied onto a machine whose disk cannot hold it (the eager path).

    A lazy (FUSE) mount needs only the chunks a container reads; run the image on a worker with
    FUSE, or with more free disk, or make the image smaller.
    """

    def __init__(self, message: str, needed_bytes: int = 0, free_bytes: int = 0) -> None:
        super().__init__(message)
        self.needed_bytes = needed_bytes
        self.free_bytes = free_bytes
