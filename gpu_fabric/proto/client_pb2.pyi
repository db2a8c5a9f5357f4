from gpu_fabric.proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AppKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APP_KIND_UNSPECIFIED: _ClassVar[AppKind]
    APP_KIND_EPHEMERAL: _ClassVar[AppKind]
    APP_KIND_DEPLOYED: _ClassVar[AppKind]

class AppState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APP_STATE_UNSPECIFIED: _ClassVar[AppState]
    APP_STATE_RUNNING: _ClassVar[AppState]
    APP_STATE_DEPLOYED: _ClassVar[AppState]
    APP_STATE_STOPPED: _ClassVar[AppState]
    APP_STATE_DETACHED: _ClassVar[AppState]

class CallKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CALL_KIND_UNSPECIFIED: _ClassVar[CallKind]
    CALL_KIND_REMOTE: _ClassVar[CallKind]
    CALL_KIND_MAP: _ClassVar[CallKind]
    CALL_KIND_SPAWN: _ClassVar[CallKind]
    CALL_KIND_SCHEDULED: _ClassVar[CallKind]
APP_KIND_UNSPECIFIED: AppKind
APP_KIND_EPHEMERAL: AppKind
APP_KIND_DEPLOYED: AppKind
APP_STATE_UNSPECIFIED: AppState
APP_STATE_RUNNING: AppState
APP_STATE_DEPLOYED: AppState
APP_STATE_STOPPED: AppState
APP_STATE_DETACHED: AppState
CALL_KIND_UNSPECIFIED: CallKind
CALL_KIND_REMOTE: CallKind
CALL_KIND_MAP: CallKind
CALL_KIND_SPAWN: CallKind
CALL_KIND_SCHEDULED: CallKind

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HelloRequest(_message.Message):
    __slots__ = ("client_version", "python_version")
    CLIENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    client_version: str
    python_version: str
    def __init__(self, client_version: _Optional[str] = ..., python_version: _Optional[str] = ...) -> None: ...

class HelloResponse(_message.Message):
    __slots__ = ("server_version", "default_python_version", "inline_limit_bytes", "max_payload_bytes", "max_inputs_per_batch", "workspace")
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    INLINE_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUTS_PER_BATCH_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    server_version: str
    default_python_version: str
    inline_limit_bytes: int
    max_payload_bytes: int
    max_inputs_per_batch: int
    workspace: str
    def __init__(self, server_version: _Optional[str] = ..., default_python_version: _Optional[str] = ..., inline_limit_bytes: _Optional[int] = ..., max_payload_bytes: _Optional[int] = ..., max_inputs_per_batch: _Optional[int] = ..., workspace: _Optional[str] = ...) -> None: ...

class AppCreateRequest(_message.Message):
    __slots__ = ("name", "kind", "description", "detach")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DETACH_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: AppKind
    description: str
    detach: bool
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[AppKind, str]] = ..., description: _Optional[str] = ..., detach: _Optional[bool] = ...) -> None: ...

class AppCreateResponse(_message.Message):
    __slots__ = ("app_id", "heartbeat_timeout_s")
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    app_id: str
    heartbeat_timeout_s: float
    def __init__(self, app_id: _Optional[str] = ..., heartbeat_timeout_s: _Optional[float] = ...) -> None: ...

class AppHeartbeatRequest(_message.Message):
    __slots__ = ("app_id",)
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    app_id: str
    def __init__(self, app_id: _Optional[str] = ...) -> None: ...

class AppStopRequest(_message.Message):
    __slots__ = ("app_id", "name")
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    app_id: str
    name: str
    def __init__(self, app_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class AppListRequest(_message.Message):
    __slots__ = ("include_stopped",)
    INCLUDE_STOPPED_FIELD_NUMBER: _ClassVar[int]
    include_stopped: bool
    def __init__(self, include_stopped: _Optional[bool] = ...) -> None: ...

class AppInfo(_message.Message):
    __slots__ = ("app_id", "name", "kind", "state", "created_at", "stopped_at", "function_names", "running_containers", "version")
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STOPPED_AT_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_NAMES_FIELD_NUMBER: _ClassVar[int]
    RUNNING_CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    app_id: str
    name: str
    kind: AppKind
    state: AppState
    created_at: float
    stopped_at: float
    function_names: _containers.RepeatedScalarFieldContainer[str]
    running_containers: int
    version: int
    def __init__(self, app_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[AppKind, str]] = ..., state: _Optional[_Union[AppState, str]] = ..., created_at: _Optional[float] = ..., stopped_at: _Optional[float] = ..., function_names: _Optional[_Iterable[str]] = ..., running_containers: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class AppListResponse(_message.Message):
    __slots__ = ("apps",)
    APPS_FIELD_NUMBER: _ClassVar[int]
    apps: _containers.RepeatedCompositeFieldContainer[AppInfo]
    def __init__(self, apps: _Optional[_Iterable[_Union[AppInfo, _Mapping]]] = ...) -> None: ...

class AppGetLogsRequest(_message.Message):
    __slots__ = ("app_id", "app_name", "cursor", "follow")
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    APP_NAME_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    app_id: str
    app_name: str
    cursor: int
    follow: bool
    def __init__(self, app_id: _Optional[str] = ..., app_name: _Optional[str] = ..., cursor: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class LogBatch(_message.Message):
    __slots__ = ("entries", "app_done")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    APP_DONE_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_common_pb2.LogEntry]
    app_done: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[_common_pb2.LogEntry, _Mapping]]] = ..., app_done: _Optional[bool] = ...) -> None: ...

class AppScheduleHistoryRequest(_message.Message):
    __slots__ = ("app_id", "app_name", "limit")
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    APP_NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    app_id: str
    app_name: str
    limit: int
    def __init__(self, app_id: _Optional[str] = ..., app_name: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ScheduleRun(_message.Message):
    __slots__ = ("function_name", "tick", "call_id", "started_at", "finished_at", "status", "error")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    TICK_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    tick: float
    call_id: str
    started_at: float
    finished_at: float
    status: _common_pb2.ResultStatus
    error: str
    def __init__(self, function_name: _Optional[str] = ..., tick: _Optional[float] = ..., call_id: _Optional[str] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., status: _Optional[_Union[_common_pb2.ResultStatus, str]] = ..., error: _Optional[str] = ...) -> None: ...

class AppScheduleHistoryResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[ScheduleRun]
    def __init__(self, runs: _Optional[_Iterable[_Union[ScheduleRun, _Mapping]]] = ...) -> None: ...

class FunctionCreateRequest(_message.Message):
    __slots__ = ("app_id", "spec", "definition")
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    app_id: str
    spec: _common_pb2.FunctionSpec
    definition: _common_pb2.FunctionDefinition
    def __init__(self, app_id: _Optional[str] = ..., spec: _Optional[_Union[_common_pb2.FunctionSpec, _Mapping]] = ..., definition: _Optional[_Union[_common_pb2.FunctionDefinition, _Mapping]] = ...) -> None: ...

class FunctionCreateResponse(_message.Message):
    __slots__ = ("function_id", "container_python_version")
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    function_id: str
    container_python_version: str
    def __init__(self, function_id: _Optional[str] = ..., container_python_version: _Optional[str] = ...) -> None: ...

class FunctionLookupRequest(_message.Message):
    __slots__ = ("app_name", "function_name")
    APP_NAME_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    app_name: str
    function_name: str
    def __init__(self, app_name: _Optional[str] = ..., function_name: _Optional[str] = ...) -> None: ...

class FunctionLookupResponse(_message.Message):
    __slots__ = ("function_id", "spec", "app_id", "container_python_version")
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    function_id: str
    spec: _common_pb2.FunctionSpec
    app_id: str
    container_python_version: str
    def __init__(self, function_id: _Optional[str] = ..., spec: _Optional[_Union[_common_pb2.FunctionSpec, _Mapping]] = ..., app_id: _Optional[str] = ..., container_python_version: _Optional[str] = ...) -> None: ...

class FunctionBindParamsRequest(_message.Message):
    __slots__ = ("function_id", "pickled_params", "options", "has_options")
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    PICKLED_PARAMS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    HAS_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    function_id: str
    pickled_params: bytes
    options: _common_pb2.FunctionSpec
    has_options: bool
    def __init__(self, function_id: _Optional[str] = ..., pickled_params: _Optional[bytes] = ..., options: _Optional[_Union[_common_pb2.FunctionSpec, _Mapping]] = ..., has_options: _Optional[bool] = ...) -> None: ...

class FunctionBindParamsResponse(_message.Message):
    __slots__ = ("function_id",)
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    function_id: str
    def __init__(self, function_id: _Optional[str] = ...) -> None: ...

class FunctionMapRequest(_message.Message):
    __slots__ = ("function_id", "kind", "inputs", "closed")
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    function_id: str
    kind: CallKind
    inputs: _containers.RepeatedCompositeFieldContainer[_common_pb2.FunctionInput]
    closed: bool
    def __init__(self, function_id: _Optional[str] = ..., kind: _Optional[_Union[CallKind, str]] = ..., inputs: _Optional[_Iterable[_Union[_common_pb2.FunctionInput, _Mapping]]] = ..., closed: _Optional[bool] = ...) -> None: ...

class FunctionMapResponse(_message.Message):
    __slots__ = ("call_id", "input_ids")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    input_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, call_id: _Optional[str] = ..., input_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class FunctionPutInputsRequest(_message.Message):
    __slots__ = ("call_id", "inputs", "closed")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    inputs: _containers.RepeatedCompositeFieldContainer[_common_pb2.FunctionInput]
    closed: bool
    def __init__(self, call_id: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[_common_pb2.FunctionInput, _Mapping]]] = ..., closed: _Optional[bool] = ...) -> None: ...

class FunctionPutInputsResponse(_message.Message):
    __slots__ = ("input_ids",)
    INPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    input_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, input_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class FunctionInvokeRequest(_message.Message):
    __slots__ = ("function_id", "input", "timeout_s")
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    function_id: str
    input: _common_pb2.FunctionInput
    timeout_s: float
    def __init__(self, function_id: _Optional[str] = ..., input: _Optional[_Union[_common_pb2.FunctionInput, _Mapping]] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class FunctionInvokeResponse(_message.Message):
    __slots__ = ("call_id", "output")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    output: FunctionOutput
    def __init__(self, call_id: _Optional[str] = ..., output: _Optional[_Union[FunctionOutput, _Mapping]] = ...) -> None: ...

class FunctionOutput(_message.Message):
    __slots__ = ("input_id", "idx", "result", "attempts", "log_seq", "seq")
    INPUT_ID_FIELD_NUMBER: _ClassVar[int]
    IDX_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LOG_SEQ_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    input_id: str
    idx: int
    result: _common_pb2.FunctionResult
    attempts: int
    log_seq: int
    seq: int
    def __init__(self, input_id: _Optional[str] = ..., idx: _Optional[int] = ..., result: _Optional[_Union[_common_pb2.FunctionResult, _Mapping]] = ..., attempts: _Optional[int] = ..., log_seq: _Optional[int] = ..., seq: _Optional[int] = ...) -> None: ...

class FunctionGetOutputsRequest(_message.Message):
    __slots__ = ("call_id", "cursor", "timeout_s", "max_items")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    cursor: int
    timeout_s: float
    max_items: int
    def __init__(self, call_id: _Optional[str] = ..., cursor: _Optional[int] = ..., timeout_s: _Optional[float] = ..., max_items: _Optional[int] = ...) -> None: ...

class FunctionGetOutputsResponse(_message.Message):
    __slots__ = ("outputs", "num_inputs", "num_done", "closed", "cancelled")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    NUM_INPUTS_FIELD_NUMBER: _ClassVar[int]
    NUM_DONE_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[FunctionOutput]
    num_inputs: int
    num_done: int
    closed: bool
    cancelled: bool
    def __init__(self, outputs: _Optional[_Iterable[_Union[FunctionOutput, _Mapping]]] = ..., num_inputs: _Optional[int] = ..., num_done: _Optional[int] = ..., closed: _Optional[bool] = ..., cancelled: _Optional[bool] = ...) -> None: ...

class FunctionCallCancelRequest(_message.Message):
    __slots__ = ("call_id", "terminate_containers")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TERMINATE_CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    terminate_containers: bool
    def __init__(self, call_id: _Optional[str] = ..., terminate_containers: _Optional[bool] = ...) -> None: ...

class FunctionCallGetInfoRequest(_message.Message):
    __slots__ = ("call_id",)
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    def __init__(self, call_id: _Optional[str] = ...) -> None: ...

class FunctionCallInfo(_message.Message):
    __slots__ = ("call_id", "function_id", "kind", "num_inputs", "num_done", "closed", "cancelled", "function_name", "app_id")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NUM_INPUTS_FIELD_NUMBER: _ClassVar[int]
    NUM_DONE_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    function_id: str
    kind: CallKind
    num_inputs: int
    num_done: int
    closed: bool
    cancelled: bool
    function_name: str
    app_id: str
    def __init__(self, call_id: _Optional[str] = ..., function_id: _Optional[str] = ..., kind: _Optional[_Union[CallKind, str]] = ..., num_inputs: _Optional[int] = ..., num_done: _Optional[int] = ..., closed: _Optional[bool] = ..., cancelled: _Optional[bool] = ..., function_name: _Optional[str] = ..., app_id: _Optional[str] = ...) -> None: ...

class FunctionCallGetUsageRequest(_message.Message):
    __slots__ = ("call_id",)
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    def __init__(self, call_id: _Optional[str] = ...) -> None: ...

class CapacityUsage(_message.Message):
    __slots__ = ("gpu_type", "gpu_count", "price_per_hour", "attempts", "seconds", "gpu_seconds", "usd")
    GPU_TYPE_FIELD_NUMBER: _ClassVar[int]
    GPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    GPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    USD_FIELD_NUMBER: _ClassVar[int]
    gpu_type: str
    gpu_count: int
    price_per_hour: float
    attempts: int
    seconds: float
    gpu_seconds: float
    usd: float
    def __init__(self, gpu_type: _Optional[str] = ..., gpu_count: _Optional[int] = ..., price_per_hour: _Optional[float] = ..., attempts: _Optional[int] = ..., seconds: _Optional[float] = ..., gpu_seconds: _Optional[float] = ..., usd: _Optional[float] = ...) -> None: ...

class FunctionCallUsage(_message.Message):
    __slots__ = ("call_id", "num_inputs", "num_finished", "num_running", "attempts", "seconds", "gpu_seconds", "usd", "gpu_type", "gpu_count", "capacity", "lost_attempts", "lost_seconds")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_INPUTS_FIELD_NUMBER: _ClassVar[int]
    NUM_FINISHED_FIELD_NUMBER: _ClassVar[int]
    NUM_RUNNING_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    GPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    USD_FIELD_NUMBER: _ClassVar[int]
    GPU_TYPE_FIELD_NUMBER: _ClassVar[int]
    GPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    LOST_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LOST_SECONDS_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    num_inputs: int
    num_finished: int
    num_running: int
    attempts: int
    seconds: float
    gpu_seconds: float
    usd: float
    gpu_type: str
    gpu_count: int
    capacity: _containers.RepeatedCompositeFieldContainer[CapacityUsage]
    lost_attempts: int
    lost_seconds: float
    def __init__(self, call_id: _Optional[str] = ..., num_inputs: _Optional[int] = ..., num_finished: _Optional[int] = ..., num_running: _Optional[int] = ..., attempts: _Optional[int] = ..., seconds: _Optional[float] = ..., gpu_seconds: _Optional[float] = ..., usd: _Optional[float] = ..., gpu_type: _Optional[str] = ..., gpu_count: _Optional[int] = ..., capacity: _Optional[_Iterable[_Union[CapacityUsage, _Mapping]]] = ..., lost_attempts: _Optional[int] = ..., lost_seconds: _Optional[float] = ...) -> None: ...

class BlobChunk(_message.Message):
    __slots__ = ("data", "total_size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    total_size: int
    def __init__(self, data: _Optional[bytes] = ..., total_size: _Optional[int] = ...) -> None: ...

class BlobPutResponse(_message.Message):
    __slots__ = ("blob_id",)
    BLOB_ID_FIELD_NUMBER: _ClassVar[int]
    blob_id: str
    def __init__(self, blob_id: _Optional[str] = ...) -> None: ...

class BlobGetRequest(_message.Message):
    __slots__ = ("blob_id",)
    BLOB_ID_FIELD_NUMBER: _ClassVar[int]
    blob_id: str
    def __init__(self, blob_id: _Optional[str] = ...) -> None: ...
