from gpu_fabric.proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VolumeGetOrCreateRequest(_message.Message):
    __slots__ = ("name", "create_if_missing")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATE_IF_MISSING_FIELD_NUMBER: _ClassVar[int]
    name: str
    create_if_missing: bool
    def __init__(self, name: _Optional[str] = ..., create_if_missing: _Optional[bool] = ...) -> None: ...

class VolumeInfo(_message.Message):
    __slots__ = ("name", "version", "created_at", "files", "bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    created_at: float
    files: int
    bytes: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., created_at: _Optional[float] = ..., files: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class VolumeListRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VolumeListResponse(_message.Message):
    __slots__ = ("volumes",)
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    volumes: _containers.RepeatedCompositeFieldContainer[VolumeInfo]
    def __init__(self, volumes: _Optional[_Iterable[_Union[VolumeInfo, _Mapping]]] = ...) -> None: ...

class VolumeDeleteRequest(_message.Message):
    __slots__ = ("name", "allow_missing")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    name: str
    allow_missing: bool
    def __init__(self, name: _Optional[str] = ..., allow_missing: _Optional[bool] = ...) -> None: ...

class VolumeDeleteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VolumeGetManifestRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class VolumeFile(_message.Message):
    __slots__ = ("path", "size", "blocks", "mode", "mtime")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MTIME_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    blocks: _containers.RepeatedScalarFieldContainer[str]
    mode: int
    mtime: float
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., blocks: _Optional[_Iterable[str]] = ..., mode: _Optional[int] = ..., mtime: _Optional[float] = ...) -> None: ...

class VolumeManifest(_message.Message):
    __slots__ = ("name", "version", "files")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    files: _containers.RepeatedCompositeFieldContainer[VolumeFile]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., files: _Optional[_Iterable[_Union[VolumeFile, _Mapping]]] = ...) -> None: ...

class VolumeBlocksRequest(_message.Message):
    __slots__ = ("name", "hashes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    name: str
    hashes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., hashes: _Optional[_Iterable[str]] = ...) -> None: ...

class VolumePutBlocksRequest(_message.Message):
    __slots__ = ("name", "blocks")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    name: str
    blocks: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, name: _Optional[str] = ..., blocks: _Optional[_Iterable[bytes]] = ...) -> None: ...

class VolumeGetBlockRequest(_message.Message):
    __slots__ = ("name", "hash")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    name: str
    hash: str
    def __init__(self, name: _Optional[str] = ..., hash: _Optional[str] = ...) -> None: ...

class VolumeBlock(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class VolumeCommitRequest(_message.Message):
    __slots__ = ("name", "puts", "deletes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PUTS_FIELD_NUMBER: _ClassVar[int]
    DELETES_FIELD_NUMBER: _ClassVar[int]
    name: str
    puts: _containers.RepeatedCompositeFieldContainer[VolumeFile]
    deletes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., puts: _Optional[_Iterable[_Union[VolumeFile, _Mapping]]] = ..., deletes: _Optional[_Iterable[str]] = ...) -> None: ...

class VolumeCommitResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class VolumeGcRequest(_message.Message):
    __slots__ = ("name", "dry_run")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    name: str
    dry_run: bool
    def __init__(self, name: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class VolumeGcResult(_message.Message):
    __slots__ = ("name", "deleted", "versions_kept", "versions_freed", "blocks_kept", "bytes_kept", "blocks_freed", "bytes_freed", "blocks_pending", "bytes_pending", "error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_KEPT_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FREED_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_KEPT_FIELD_NUMBER: _ClassVar[int]
    BYTES_KEPT_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FREED_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_PENDING_FIELD_NUMBER: _ClassVar[int]
    BYTES_PENDING_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    deleted: bool
    versions_kept: int
    versions_freed: int
    blocks_kept: int
    bytes_kept: int
    blocks_freed: int
    bytes_freed: int
    blocks_pending: int
    bytes_pending: int
    error: str
    def __init__(self, name: _Optional[str] = ..., deleted: _Optional[bool] = ..., versions_kept: _Optional[int] = ..., versions_freed: _Optional[int] = ..., blocks_kept: _Optional[int] = ..., bytes_kept: _Optional[int] = ..., blocks_freed: _Optional[int] = ..., bytes_freed: _Optional[int] = ..., blocks_pending: _Optional[int] = ..., bytes_pending: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class VolumeGcResponse(_message.Message):
    __slots__ = ("volumes", "dry_run")
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    volumes: _containers.RepeatedCompositeFieldContainer[VolumeGcResult]
    dry_run: bool
    def __init__(self, volumes: _Optional[_Iterable[_Union[VolumeGcResult, _Mapping]]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class WorkerPreemptRequest(_message.Message):
    __slots__ = ("worker_id", "deadline_s", "reason")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    deadline_s: float
    reason: str
    def __init__(self, worker_id: _Optional[str] = ..., deadline_s: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class WorkerPreemptResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkerPreemptionPollRequest(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class WorkerPreemptionPollResponse(_message.Message):
    __slots__ = ("preempt", "deadline_s", "reason")
    PREEMPT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    preempt: bool
    deadline_s: float
    reason: str
    def __init__(self, preempt: _Optional[bool] = ..., deadline_s: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class WorkerListRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkerSummary(_message.Message):
    __slots__ = ("worker_id", "hostname", "accepting", "containers", "running_inputs", "functions", "gpus")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    ACCEPTING_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_INPUTS_FIELD_NUMBER: _ClassVar[int]
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    hostname: str
    accepting: bool
    containers: int
    running_inputs: int
    functions: _containers.RepeatedScalarFieldContainer[str]
    gpus: _containers.RepeatedCompositeFieldContainer[_common_pb2.GpuInfo]
    def __init__(self, worker_id: _Optional[str] = ..., hostname: _Optional[str] = ..., accepting: _Optional[bool] = ..., containers: _Optional[int] = ..., running_inputs: _Optional[int] = ..., functions: _Optional[_Iterable[str]] = ..., gpus: _Optional[_Iterable[_Union[_common_pb2.GpuInfo, _Mapping]]] = ...) -> None: ...

class WorkerListResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerSummary]
    def __init__(self, workers: _Optional[_Iterable[_Union[WorkerSummary, _Mapping]]] = ...) -> None: ...
