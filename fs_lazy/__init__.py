"""fs_lazy: content-addressed image chunks, manifests, the image builder and the lazy FUSE mount."""
from ._builder import BuildStep, ImageBuilder, run_in_root
from ._cache import ChunkCache
from ._errors import (BuildError, CacheFullError, ChunkCorruptError, ChunkNotFoundError, FsLazyError,
                      ImageTooLargeError, MountError)
from ._manifest import DEFAULT_CHUNK_SIZE, Entry, Manifest, materialize, pack_tree
from ._mount import MountedImage, fuse_available, mount_image, open_store, start_mount_launcher, store_url
from ._store import ChunkStore, LocalStore, OCIStore, S3Store, digest_of

__all__ = [
    "BuildError", "BuildStep", "CacheFullError", "ChunkCache", "ChunkCorruptError", "ChunkNotFoundError",
    "ChunkStore", "DEFAULT_CHUNK_SIZE", "Entry", "FsLazyError", "ImageBuilder", "ImageTooLargeError", "LocalStore", "Manifest",
    "MountError", "MountedImage", "OCIStore", "S3Store", "digest_of", "fuse_available", "materialize",
    "mount_image", "open_store", "pack_tree", "run_in_root", "start_mount_launcher", "store_url",
]
