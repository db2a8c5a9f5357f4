from gpu_fabric.proto import common_pb2 as _common_pb2
from gpu_fabric.proto import client_pb2 as _client_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerResources(_message.Message):
    __slots__ = ("cpu", "memory_mb", "gpus")
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    cpu: float
    memory_mb: int
    gpus: _containers.RepeatedCompositeFieldContainer[_common_pb2.GpuInfo]
    def __init__(self, cpu: _Optional[float] = ..., memory_mb: _Optional[int] = ..., gpus: _Optional[_Iterable[_Union[_common_pb2.GpuInfo, _Mapping]]] = ...) -> None: ...

class WorkerRegisterRequest(_message.Message):
    __slots__ = ("hostname", "resources", "python_version", "provider", "region", "instance_type", "preemptible", "price_per_hour", "worker_id", "running_container_ids")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    PREEMPTIBLE_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    RUNNING_CONTAINER_IDS_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    resources: WorkerResources
    python_version: str
    provider: str
    region: str
    instance_type: str
    preemptible: bool
    price_per_hour: float
    worker_id: str
    running_container_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, hostname: _Optional[str] = ..., resources: _Optional[_Union[WorkerResources, _Mapping]] = ..., python_version: _Optional[str] = ..., provider: _Optional[str] = ..., region: _Optional[str] = ..., instance_type: _Optional[str] = ..., preemptible: _Optional[bool] = ..., price_per_hour: _Optional[float] = ..., worker_id: _Optional[str] = ..., running_container_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class WorkerRegisterResponse(_message.Message):
    __slots__ = ("worker_id", "heartbeat_interval_s", "heartbeat_timeout_s")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    heartbeat_interval_s: float
    heartbeat_timeout_s: float
    def __init__(self, worker_id: _Optional[str] = ..., heartbeat_interval_s: _Optional[float] = ..., heartbeat_timeout_s: _Optional[float] = ...) -> None: ...

class ContainerStatus(_message.Message):
    __slots__ = ("container_id", "active_inputs")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_INPUTS_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    active_inputs: int
    def __init__(self, container_id: _Optional[str] = ..., active_inputs: _Optional[int] = ...) -> None: ...

class WorkerHeartbeatRequest(_message.Message):
    __slots__ = ("worker_id", "containers")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    containers: _containers.RepeatedCompositeFieldContainer[ContainerStatus]
    def __init__(self, worker_id: _Optional[str] = ..., containers: _Optional[_Iterable[_Union[ContainerStatus, _Mapping]]] = ...) -> None: ...

class WorkerHeartbeatResponse(_message.Message):
    __slots__ = ("known",)
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    known: bool
    def __init__(self, known: _Optional[bool] = ...) -> None: ...

class WorkerGetAssignmentsRequest(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class ContainerAssignment(_message.Message):
    __slots__ = ("container_id", "function_id", "app_id", "gpu_indices", "spec", "container_token", "definition_digest")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    GPU_INDICES_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_DIGEST_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    function_id: str
    app_id: str
    gpu_indices: _containers.RepeatedScalarFieldContainer[int]
    spec: _common_pb2.FunctionSpec
    container_token: str
    definition_digest: str
    def __init__(self, container_id: _Optional[str] = ..., function_id: _Optional[str] = ..., app_id: _Optional[str] = ..., gpu_indices: _Optional[_Iterable[int]] = ..., spec: _Optional[_Union[_common_pb2.FunctionSpec, _Mapping]] = ..., container_token: _Optional[str] = ..., definition_digest: _Optional[str] = ...) -> None: ...

class WorkerAssignment(_message.Message):
    __slots__ = ("start", "stop_container_id", "stop_grace_s")
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    STOP_GRACE_S_FIELD_NUMBER: _ClassVar[int]
    start: ContainerAssignment
    stop_container_id: str
    stop_grace_s: float
    def __init__(self, start: _Optional[_Union[ContainerAssignment, _Mapping]] = ..., stop_container_id: _Optional[str] = ..., stop_grace_s: _Optional[float] = ...) -> None: ...

class WorkerContainerExitedRequest(_message.Message):
    __slots__ = ("worker_id", "container_id", "exit_code", "running_input_id", "stderr_tail", "requested")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_INPUT_ID_FIELD_NUMBER: _ClassVar[int]
    STDERR_TAIL_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    container_id: str
    exit_code: int
    running_input_id: str
    stderr_tail: str
    requested: bool
    def __init__(self, worker_id: _Optional[str] = ..., container_id: _Optional[str] = ..., exit_code: _Optional[int] = ..., running_input_id: _Optional[str] = ..., stderr_tail: _Optional[str] = ..., requested: _Optional[bool] = ...) -> None: ...

class WorkerPutLogsRequest(_message.Message):
    __slots__ = ("worker_id", "entries")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    entries: _containers.RepeatedCompositeFieldContainer[_common_pb2.LogEntry]
    def __init__(self, worker_id: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[_common_pb2.LogEntry, _Mapping]]] = ...) -> None: ...

class WorkerPreemptionNoticeRequest(_message.Message):
    __slots__ = ("worker_id", "deadline_s", "reason")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    deadline_s: float
    reason: str
    def __init__(self, worker_id: _Optional[str] = ..., deadline_s: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class ContainerHelloRequest(_message.Message):
    __slots__ = ("container_id", "python_version")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    python_version: str
    def __init__(self, container_id: _Optional[str] = ..., python_version: _Optional[str] = ...) -> None: ...

class ContainerHelloResponse(_message.Message):
    __slots__ = ("function_id", "app_id", "spec", "definition", "app_function_ids", "secret_env")
    class AppFunctionIdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SecretEnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    APP_FUNCTION_IDS_FIELD_NUMBER: _ClassVar[int]
    SECRET_ENV_FIELD_NUMBER: _ClassVar[int]
    function_id: str
    app_id: str
    spec: _common_pb2.FunctionSpec
    definition: _common_pb2.FunctionDefinition
    app_function_ids: _containers.ScalarMap[str, str]
    secret_env: _containers.ScalarMap[str, str]
    def __init__(self, function_id: _Optional[str] = ..., app_id: _Optional[str] = ..., spec: _Optional[_Union[_common_pb2.FunctionSpec, _Mapping]] = ..., definition: _Optional[_Union[_common_pb2.FunctionDefinition, _Mapping]] = ..., app_function_ids: _Optional[_Mapping[str, str]] = ..., secret_env: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ContainerInput(_message.Message):
    __slots__ = ("input_id", "call_id", "input", "attempt", "timeout_s", "idx")
    INPUT_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    IDX_FIELD_NUMBER: _ClassVar[int]
    input_id: str
    call_id: str
    input: _common_pb2.FunctionInput
    attempt: int
    timeout_s: float
    idx: int
    def __init__(self, input_id: _Optional[str] = ..., call_id: _Optional[str] = ..., input: _Optional[_Union[_common_pb2.FunctionInput, _Mapping]] = ..., attempt: _Optional[int] = ..., timeout_s: _Optional[float] = ..., idx: _Optional[int] = ...) -> None: ...

class ContainerOutput(_message.Message):
    __slots__ = ("input_id", "result", "duration_s")
    INPUT_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    input_id: str
    result: _common_pb2.FunctionResult
    duration_s: float
    def __init__(self, input_id: _Optional[str] = ..., result: _Optional[_Union[_common_pb2.FunctionResult, _Mapping]] = ..., duration_s: _Optional[float] = ...) -> None: ...

class ContainerExchangeRequest(_message.Message):
    __slots__ = ("container_id", "outputs", "logs", "max_inputs", "timeout_s", "ready", "init_failure", "start_kind")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    INIT_FAILURE_FIELD_NUMBER: _ClassVar[int]
    START_KIND_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    outputs: _containers.RepeatedCompositeFieldContainer[ContainerOutput]
    logs: _containers.RepeatedCompositeFieldContainer[_common_pb2.LogEntry]
    max_inputs: int
    timeout_s: float
    ready: bool
    init_failure: _common_pb2.FunctionResult
    start_kind: str
    def __init__(self, container_id: _Optional[str] = ..., outputs: _Optional[_Iterable[_Union[ContainerOutput, _Mapping]]] = ..., logs: _Optional[_Iterable[_Union[_common_pb2.LogEntry, _Mapping]]] = ..., max_inputs: _Optional[int] = ..., timeout_s: _Optional[float] = ..., ready: _Optional[bool] = ..., init_failure: _Optional[_Union[_common_pb2.FunctionResult, _Mapping]] = ..., start_kind: _Optional[str] = ...) -> None: ...

class ContainerExchangeResponse(_message.Message):
    __slots__ = ("inputs", "shutdown", "cancelled_input_ids")
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_INPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.RepeatedCompositeFieldContainer[ContainerInput]
    shutdown: bool
    cancelled_input_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, inputs: _Optional[_Iterable[_Union[ContainerInput, _Mapping]]] = ..., shutdown: _Optional[bool] = ..., cancelled_input_ids: _Optional[_Iterable[str]] = ...) -> None: ...
