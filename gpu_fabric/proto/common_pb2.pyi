from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResultStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESULT_STATUS_UNSPECIFIED: _ClassVar[ResultStatus]
    RESULT_STATUS_SUCCESS: _ClassVar[ResultStatus]
    RESULT_STATUS_FAILURE: _ClassVar[ResultStatus]
    RESULT_STATUS_TIMEOUT: _ClassVar[ResultStatus]
    RESULT_STATUS_INIT_FAILURE: _ClassVar[ResultStatus]
    RESULT_STATUS_TERMINATED: _ClassVar[ResultStatus]
    RESULT_STATUS_INTERNAL_FAILURE: _ClassVar[ResultStatus]

class LogStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOG_STREAM_UNSPECIFIED: _ClassVar[LogStream]
    LOG_STREAM_STDOUT: _ClassVar[LogStream]
    LOG_STREAM_STDERR: _ClassVar[LogStream]
    LOG_STREAM_SYSTEM: _ClassVar[LogStream]
RESULT_STATUS_UNSPECIFIED: ResultStatus
RESULT_STATUS_SUCCESS: ResultStatus
RESULT_STATUS_FAILURE: ResultStatus
RESULT_STATUS_TIMEOUT: ResultStatus
RESULT_STATUS_INIT_FAILURE: ResultStatus
RESULT_STATUS_TERMINATED: ResultStatus
RESULT_STATUS_INTERNAL_FAILURE: ResultStatus
LOG_STREAM_UNSPECIFIED: LogStream
LOG_STREAM_STDOUT: LogStream
LOG_STREAM_STDERR: LogStream
LOG_STREAM_SYSTEM: LogStream

class FunctionSpec(_message.Message):
    __slots__ = ("name", "cpu", "memory_mb", "gpus", "timeout_s", "startup_timeout_s", "retries", "min_containers", "max_containers", "buffer_containers", "scaledown_window_s", "max_concurrent_inputs", "target_concurrent_inputs", "batch_max_size", "batch_wait_ms", "image", "volumes", "secret_names", "schedule", "regions", "clouds", "nonpreemptible", "is_generator", "is_async", "env", "cls_name", "method_names", "webhook_config_json", "python_version", "block_network", "enable_memory_snapshot")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    STARTUP_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    MIN_CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    BUFFER_CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    SCALEDOWN_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TARGET_CONCURRENT_INPUTS_FIELD_NUMBER: _ClassVar[int]
    BATCH_MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    BATCH_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    SECRET_NAMES_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    CLOUDS_FIELD_NUMBER: _ClassVar[int]
    NONPREEMPTIBLE_FIELD_NUMBER: _ClassVar[int]
    IS_GENERATOR_FIELD_NUMBER: _ClassVar[int]
    IS_ASYNC_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    CLS_NAME_FIELD_NUMBER: _ClassVar[int]
    METHOD_NAMES_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    BLOCK_NETWORK_FIELD_NUMBER: _ClassVar[int]
    ENABLE_MEMORY_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    name: str
    cpu: float
    memory_mb: int
    gpus: _containers.RepeatedCompositeFieldContainer[GpuRequest]
    timeout_s: float
    startup_timeout_s: float
    retries: RetryPolicy
    min_containers: int
    max_containers: int
    buffer_containers: int
    scaledown_window_s: float
    max_concurrent_inputs: int
    target_concurrent_inputs: int
    batch_max_size: int
    batch_wait_ms: int
    image: ImageRef
    volumes: _containers.RepeatedCompositeFieldContainer[VolumeMount]
    secret_names: _containers.RepeatedScalarFieldContainer[str]
    schedule: Schedule
    regions: _containers.RepeatedScalarFieldContainer[str]
    clouds: _containers.RepeatedScalarFieldContainer[str]
    nonpreemptible: bool
    is_generator: bool
    is_async: bool
    env: _containers.ScalarMap[str, str]
    cls_name: str
    method_names: _containers.RepeatedScalarFieldContainer[str]
    webhook_config_json: str
    python_version: str
    block_network: bool
    enable_memory_snapshot: bool
    def __init__(self, name: _Optional[str] = ..., cpu: _Optional[float] = ..., memory_mb: _Optional[int] = ..., gpus: _Optional[_Iterable[_Union[GpuRequest, _Mapping]]] = ..., timeout_s: _Optional[float] = ..., startup_timeout_s: _Optional[float] = ..., retries: _Optional[_Union[RetryPolicy, _Mapping]] = ..., min_containers: _Optional[int] = ..., max_containers: _Optional[int] = ..., buffer_containers: _Optional[int] = ..., scaledown_window_s: _Optional[float] = ..., max_concurrent_inputs: _Optional[int] = ..., target_concurrent_inputs: _Optional[int] = ..., batch_max_size: _Optional[int] = ..., batch_wait_ms: _Optional[int] = ..., image: _Optional[_Union[ImageRef, _Mapping]] = ..., volumes: _Optional[_Iterable[_Union[VolumeMount, _Mapping]]] = ..., secret_names: _Optional[_Iterable[str]] = ..., schedule: _Optional[_Union[Schedule, _Mapping]] = ..., regions: _Optional[_Iterable[str]] = ..., clouds: _Optional[_Iterable[str]] = ..., nonpreemptible: _Optional[bool] = ..., is_generator: _Optional[bool] = ..., is_async: _Optional[bool] = ..., env: _Optional[_Mapping[str, str]] = ..., cls_name: _Optional[str] = ..., method_names: _Optional[_Iterable[str]] = ..., webhook_config_json: _Optional[str] = ..., python_version: _Optional[str] = ..., block_network: _Optional[bool] = ..., enable_memory_snapshot: _Optional[bool] = ...) -> None: ...

class GpuRequest(_message.Message):
    __slots__ = ("type", "count")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    type: str
    count: int
    def __init__(self, type: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("max_retries", "initial_delay_s", "backoff_coefficient", "max_delay_s")
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    INITIAL_DELAY_S_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_COEFFICIENT_FIELD_NUMBER: _ClassVar[int]
    MAX_DELAY_S_FIELD_NUMBER: _ClassVar[int]
    max_retries: int
    initial_delay_s: float
    backoff_coefficient: float
    max_delay_s: float
    def __init__(self, max_retries: _Optional[int] = ..., initial_delay_s: _Optional[float] = ..., backoff_coefficient: _Optional[float] = ..., max_delay_s: _Optional[float] = ...) -> None: ...

class ImageRef(_message.Message):
    __slots__ = ("image_id", "recipe_json")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPE_JSON_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    recipe_json: str
    def __init__(self, image_id: _Optional[str] = ..., recipe_json: _Optional[str] = ...) -> None: ...

class VolumeMount(_message.Message):
    __slots__ = ("mount_path", "volume_name", "read_only")
    MOUNT_PATH_FIELD_NUMBER: _ClassVar[int]
    VOLUME_NAME_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    mount_path: str
    volume_name: str
    read_only: bool
    def __init__(self, mount_path: _Optional[str] = ..., volume_name: _Optional[str] = ..., read_only: _Optional[bool] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("cron", "timezone", "period_s")
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_S_FIELD_NUMBER: _ClassVar[int]
    cron: str
    timezone: str
    period_s: float
    def __init__(self, cron: _Optional[str] = ..., timezone: _Optional[str] = ..., period_s: _Optional[float] = ...) -> None: ...

class FunctionDefinition(_message.Message):
    __slots__ = ("kind", "module_name", "qualname", "source_path", "source_text", "pickled_function", "sys_path", "python_version", "pickled_cls_params")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[FunctionDefinition.Kind]
        KIND_FILE: _ClassVar[FunctionDefinition.Kind]
        KIND_SERIALIZED: _ClassVar[FunctionDefinition.Kind]
    KIND_UNSPECIFIED: FunctionDefinition.Kind
    KIND_FILE: FunctionDefinition.Kind
    KIND_SERIALIZED: FunctionDefinition.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODULE_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALNAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PATH_FIELD_NUMBER: _ClassVar[int]
    SOURCE_TEXT_FIELD_NUMBER: _ClassVar[int]
    PICKLED_FUNCTION_FIELD_NUMBER: _ClassVar[int]
    SYS_PATH_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    PICKLED_CLS_PARAMS_FIELD_NUMBER: _ClassVar[int]
    kind: FunctionDefinition.Kind
    module_name: str
    qualname: str
    source_path: str
    source_text: str
    pickled_function: bytes
    sys_path: _containers.RepeatedScalarFieldContainer[str]
    python_version: str
    pickled_cls_params: bytes
    def __init__(self, kind: _Optional[_Union[FunctionDefinition.Kind, str]] = ..., module_name: _Optional[str] = ..., qualname: _Optional[str] = ..., source_path: _Optional[str] = ..., source_text: _Optional[str] = ..., pickled_function: _Optional[bytes] = ..., sys_path: _Optional[_Iterable[str]] = ..., python_version: _Optional[str] = ..., pickled_cls_params: _Optional[bytes] = ...) -> None: ...

class FunctionInput(_message.Message):
    __slots__ = ("args", "args_blob_id", "python_version", "method_name", "final_input")
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ARGS_BLOB_ID_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    METHOD_NAME_FIELD_NUMBER: _ClassVar[int]
    FINAL_INPUT_FIELD_NUMBER: _ClassVar[int]
    args: bytes
    args_blob_id: str
    python_version: str
    method_name: str
    final_input: bool
    def __init__(self, args: _Optional[bytes] = ..., args_blob_id: _Optional[str] = ..., python_version: _Optional[str] = ..., method_name: _Optional[str] = ..., final_input: _Optional[bool] = ...) -> None: ...

class FunctionResult(_message.Message):
    __slots__ = ("status", "data", "data_blob_id", "exception", "traceback", "serialized_exception", "gen_index", "gen_done")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DATA_BLOB_ID_FIELD_NUMBER: _ClassVar[int]
    EXCEPTION_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    SERIALIZED_EXCEPTION_FIELD_NUMBER: _ClassVar[int]
    GEN_INDEX_FIELD_NUMBER: _ClassVar[int]
    GEN_DONE_FIELD_NUMBER: _ClassVar[int]
    status: ResultStatus
    data: bytes
    data_blob_id: str
    exception: str
    traceback: str
    serialized_exception: bytes
    gen_index: int
    gen_done: bool
    def __init__(self, status: _Optional[_Union[ResultStatus, str]] = ..., data: _Optional[bytes] = ..., data_blob_id: _Optional[str] = ..., exception: _Optional[str] = ..., traceback: _Optional[str] = ..., serialized_exception: _Optional[bytes] = ..., gen_index: _Optional[int] = ..., gen_done: _Optional[bool] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("seq", "timestamp", "stream", "data", "function_name", "container_id", "input_id", "call_id", "app_id")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    seq: int
    timestamp: float
    stream: LogStream
    data: str
    function_name: str
    container_id: str
    input_id: str
    call_id: str
    app_id: str
    def __init__(self, seq: _Optional[int] = ..., timestamp: _Optional[float] = ..., stream: _Optional[_Union[LogStream, str]] = ..., data: _Optional[str] = ..., function_name: _Optional[str] = ..., container_id: _Optional[str] = ..., input_id: _Optional[str] = ..., call_id: _Optional[str] = ..., app_id: _Optional[str] = ...) -> None: ...

class GpuInfo(_message.Message):
    __slots__ = ("index", "type", "name", "memory_mb", "uuid", "simulated", "driver_version", "cuda_version")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CUDA_VERSION_FIELD_NUMBER: _ClassVar[int]
    index: int
    type: str
    name: str
    memory_mb: int
    uuid: str
    simulated: bool
    driver_version: str
    cuda_version: str
    def __init__(self, index: _Optional[int] = ..., type: _Optional[str] = ..., name: _Optional[str] = ..., memory_mb: _Optional[int] = ..., uuid: _Optional[str] = ..., simulated: _Optional[bool] = ..., driver_version: _Optional[str] = ..., cuda_version: _Optional[str] = ...) -> None: ...
