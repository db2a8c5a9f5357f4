from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ObjectKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OBJECT_KIND_UNSPECIFIED: _ClassVar[ObjectKind]
    OBJECT_KIND_DICT: _ClassVar[ObjectKind]
    OBJECT_KIND_QUEUE: _ClassVar[ObjectKind]
OBJECT_KIND_UNSPECIFIED: ObjectKind
OBJECT_KIND_DICT: ObjectKind
OBJECT_KIND_QUEUE: ObjectKind

class ObjectsEmpty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ObjectGetOrCreateRequest(_message.Message):
    __slots__ = ("kind", "name", "create_if_missing", "ephemeral")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATE_IF_MISSING_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_FIELD_NUMBER: _ClassVar[int]
    kind: ObjectKind
    name: str
    create_if_missing: bool
    ephemeral: bool
    def __init__(self, kind: _Optional[_Union[ObjectKind, str]] = ..., name: _Optional[str] = ..., create_if_missing: _Optional[bool] = ..., ephemeral: _Optional[bool] = ...) -> None: ...

class ObjectGetOrCreateResponse(_message.Message):
    __slots__ = ("object_id", "created", "ephemeral_ttl_s")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_TTL_S_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    created: bool
    ephemeral_ttl_s: float
    def __init__(self, object_id: _Optional[str] = ..., created: _Optional[bool] = ..., ephemeral_ttl_s: _Optional[float] = ...) -> None: ...

class ObjectDeleteRequest(_message.Message):
    __slots__ = ("object_id", "kind", "name", "allow_missing")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    kind: ObjectKind
    name: str
    allow_missing: bool
    def __init__(self, object_id: _Optional[str] = ..., kind: _Optional[_Union[ObjectKind, str]] = ..., name: _Optional[str] = ..., allow_missing: _Optional[bool] = ...) -> None: ...

class ObjectHeartbeatRequest(_message.Message):
    __slots__ = ("object_ids",)
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    object_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, object_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ObjectListRequest(_message.Message):
    __slots__ = ("kind",)
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: ObjectKind
    def __init__(self, kind: _Optional[_Union[ObjectKind, str]] = ...) -> None: ...

class ObjectInfo(_message.Message):
    __slots__ = ("object_id", "kind", "name", "created_at", "size")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    kind: ObjectKind
    name: str
    created_at: float
    size: int
    def __init__(self, object_id: _Optional[str] = ..., kind: _Optional[_Union[ObjectKind, str]] = ..., name: _Optional[str] = ..., created_at: _Optional[float] = ..., size: _Optional[int] = ...) -> None: ...

class ObjectListResponse(_message.Message):
    __slots__ = ("objects",)
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    objects: _containers.RepeatedCompositeFieldContainer[ObjectInfo]
    def __init__(self, objects: _Optional[_Iterable[_Union[ObjectInfo, _Mapping]]] = ...) -> None: ...

class DictEntry(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ...) -> None: ...

class DictGetRequest(_message.Message):
    __slots__ = ("object_id", "key")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    key: bytes
    def __init__(self, object_id: _Optional[str] = ..., key: _Optional[bytes] = ...) -> None: ...

class DictGetResponse(_message.Message):
    __slots__ = ("found", "value")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    found: bool
    value: bytes
    def __init__(self, found: _Optional[bool] = ..., value: _Optional[bytes] = ...) -> None: ...

class DictPutRequest(_message.Message):
    __slots__ = ("object_id", "entries", "skip_if_exists")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    SKIP_IF_EXISTS_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    entries: _containers.RepeatedCompositeFieldContainer[DictEntry]
    skip_if_exists: bool
    def __init__(self, object_id: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[DictEntry, _Mapping]]] = ..., skip_if_exists: _Optional[bool] = ...) -> None: ...

class DictPutResponse(_message.Message):
    __slots__ = ("stored",)
    STORED_FIELD_NUMBER: _ClassVar[int]
    stored: int
    def __init__(self, stored: _Optional[int] = ...) -> None: ...

class DictPopRequest(_message.Message):
    __slots__ = ("object_id", "key")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    key: bytes
    def __init__(self, object_id: _Optional[str] = ..., key: _Optional[bytes] = ...) -> None: ...

class DictContainsRequest(_message.Message):
    __slots__ = ("object_id", "key")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    key: bytes
    def __init__(self, object_id: _Optional[str] = ..., key: _Optional[bytes] = ...) -> None: ...

class DictContainsResponse(_message.Message):
    __slots__ = ("found",)
    FOUND_FIELD_NUMBER: _ClassVar[int]
    found: bool
    def __init__(self, found: _Optional[bool] = ...) -> None: ...

class DictLenRequest(_message.Message):
    __slots__ = ("object_id",)
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    def __init__(self, object_id: _Optional[str] = ...) -> None: ...

class DictLenResponse(_message.Message):
    __slots__ = ("len",)
    LEN_FIELD_NUMBER: _ClassVar[int]
    len: int
    def __init__(self, len: _Optional[int] = ...) -> None: ...

class DictContentsRequest(_message.Message):
    __slots__ = ("object_id", "cursor", "max_entries", "keys_only")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    MAX_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    KEYS_ONLY_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    cursor: int
    max_entries: int
    keys_only: bool
    def __init__(self, object_id: _Optional[str] = ..., cursor: _Optional[int] = ..., max_entries: _Optional[int] = ..., keys_only: _Optional[bool] = ...) -> None: ...

class DictContentsResponse(_message.Message):
    __slots__ = ("entries", "cursor", "done")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[DictEntry]
    cursor: int
    done: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[DictEntry, _Mapping]]] = ..., cursor: _Optional[int] = ..., done: _Optional[bool] = ...) -> None: ...

class DictClearRequest(_message.Message):
    __slots__ = ("object_id",)
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    def __init__(self, object_id: _Optional[str] = ...) -> None: ...

class QueuePutRequest(_message.Message):
    __slots__ = ("object_id", "partition", "values")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    partition: str
    values: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, object_id: _Optional[str] = ..., partition: _Optional[str] = ..., values: _Optional[_Iterable[bytes]] = ...) -> None: ...

class QueuePutResponse(_message.Message):
    __slots__ = ("stored",)
    STORED_FIELD_NUMBER: _ClassVar[int]
    stored: int
    def __init__(self, stored: _Optional[int] = ...) -> None: ...

class QueueGetRequest(_message.Message):
    __slots__ = ("object_id", "partition", "max_items", "timeout_s")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    partition: str
    max_items: int
    timeout_s: float
    def __init__(self, object_id: _Optional[str] = ..., partition: _Optional[str] = ..., max_items: _Optional[int] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class QueueGetResponse(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, values: _Optional[_Iterable[bytes]] = ...) -> None: ...

class QueueLenRequest(_message.Message):
    __slots__ = ("object_id", "partition", "total")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    partition: str
    total: bool
    def __init__(self, object_id: _Optional[str] = ..., partition: _Optional[str] = ..., total: _Optional[bool] = ...) -> None: ...

class QueueLenResponse(_message.Message):
    __slots__ = ("len",)
    LEN_FIELD_NUMBER: _ClassVar[int]
    len: int
    def __init__(self, len: _Optional[int] = ...) -> None: ...

class QueueItem(_message.Message):
    __slots__ = ("item_id", "value")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    item_id: int
    value: bytes
    def __init__(self, item_id: _Optional[int] = ..., value: _Optional[bytes] = ...) -> None: ...

class QueueNextItemsRequest(_message.Message):
    __slots__ = ("object_id", "partition", "after_id", "timeout_s", "max_items")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    partition: str
    after_id: int
    timeout_s: float
    max_items: int
    def __init__(self, object_id: _Optional[str] = ..., partition: _Optional[str] = ..., after_id: _Optional[int] = ..., timeout_s: _Optional[float] = ..., max_items: _Optional[int] = ...) -> None: ...

class QueueNextItemsResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[QueueItem]
    def __init__(self, items: _Optional[_Iterable[_Union[QueueItem, _Mapping]]] = ...) -> None: ...

class QueueClearRequest(_message.Message):
    __slots__ = ("object_id", "partition", "all")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    partition: str
    all: bool
    def __init__(self, object_id: _Optional[str] = ..., partition: _Optional[str] = ..., all: _Optional[bool] = ...) -> None: ...

class SecretCreateRequest(_message.Message):
    __slots__ = ("name", "env", "overwrite", "app_id")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    env: _containers.ScalarMap[str, str]
    overwrite: bool
    app_id: str
    def __init__(self, name: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., overwrite: _Optional[bool] = ..., app_id: _Optional[str] = ...) -> None: ...

class SecretCreateResponse(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class SecretListRequest(_message.Message):
    __slots__ = ("include_anonymous",)
    INCLUDE_ANONYMOUS_FIELD_NUMBER: _ClassVar[int]
    include_anonymous: bool
    def __init__(self, include_anonymous: _Optional[bool] = ...) -> None: ...

class SecretInfo(_message.Message):
    __slots__ = ("name", "keys", "created_at", "updated_at", "app_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    created_at: float
    updated_at: float
    app_id: str
    def __init__(self, name: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ..., app_id: _Optional[str] = ...) -> None: ...

class SecretListResponse(_message.Message):
    __slots__ = ("secrets",)
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    secrets: _containers.RepeatedCompositeFieldContainer[SecretInfo]
    def __init__(self, secrets: _Optional[_Iterable[_Union[SecretInfo, _Mapping]]] = ...) -> None: ...

class SecretDeleteRequest(_message.Message):
    __slots__ = ("name", "allow_missing")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    name: str
    allow_missing: bool
    def __init__(self, name: _Optional[str] = ..., allow_missing: _Optional[bool] = ...) -> None: ...
