from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BillingReportRequest(_message.Message):
    __slots__ = ("group_by", "baseline_cloud", "decisions")
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    BASELINE_CLOUD_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    group_by: str
    baseline_cloud: str
    decisions: int
    def __init__(self, group_by: _Optional[str] = ..., baseline_cloud: _Optional[str] = ..., decisions: _Optional[int] = ...) -> None: ...

class BillingRow(_message.Message):
    __slots__ = ("name", "seconds", "usd")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    USD_FIELD_NUMBER: _ClassVar[int]
    name: str
    seconds: float
    usd: float
    def __init__(self, name: _Optional[str] = ..., seconds: _Optional[float] = ..., usd: _Optional[float] = ...) -> None: ...

class BillingReportResponse(_message.Message):
    __slots__ = ("rows", "instance_usd", "actual_usd", "baseline_usd", "baseline_cloud", "providers", "decisions")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_USD_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_USD_FIELD_NUMBER: _ClassVar[int]
    BASELINE_USD_FIELD_NUMBER: _ClassVar[int]
    BASELINE_CLOUD_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[BillingRow]
    instance_usd: float
    actual_usd: float
    baseline_usd: float
    baseline_cloud: str
    providers: _containers.RepeatedScalarFieldContainer[str]
    decisions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rows: _Optional[_Iterable[_Union[BillingRow, _Mapping]]] = ..., instance_usd: _Optional[float] = ..., actual_usd: _Optional[float] = ..., baseline_usd: _Optional[float] = ..., baseline_cloud: _Optional[str] = ..., providers: _Optional[_Iterable[str]] = ..., decisions: _Optional[_Iterable[str]] = ...) -> None: ...
