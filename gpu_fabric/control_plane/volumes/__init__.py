"""Volume storage: object backends (local directory, S3, OCI Object Storage) and versioned volumes."""
from ._backends import LocalBackend, ObjectBackend, OCIBackend, S3Backend, backend_from_url
from ._store import BLOCK_SIZE, VolumeError, VolumeStore, check_path

__all__ = ["BLOCK_SIZE", "LocalBackend", "OCIBackend", "ObjectBackend", "S3Backend", "VolumeError", "VolumeStore",
           "backend_from_url", "check_path"]
