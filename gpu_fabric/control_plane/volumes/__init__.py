"""Volume storage: object backends (local directory, S3, OCI Object Storage), versioned volumes, garbage collection."""
from ._backends import LocalBackend, ObjectBackend, ObjectInfo, OCIBackend, S3Backend, backend_from_url
from ._gc import GcPolicy, GcResult
from ._store import BLOCK_SIZE, VolumeError, VolumeStore, check_path

__all__ = ["BLOCK_SIZE", "GcPolicy", "GcResult", "LocalBackend", "OCIBackend", "ObjectBackend", "ObjectInfo", "S3Backend",
           "VolumeError", "VolumeStore", "backend_from_url", "check_path"]
