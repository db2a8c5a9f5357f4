from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class WebEndpointInfoRequest(_message.Message):
    __slots__ = ("function_id", "method_name")
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_NAME_FIELD_NUMBER: _ClassVar[int]
    function_id: str
    method_name: str
    def __init__(self, function_id: _Optional[str] = ..., method_name: _Optional[str] = ...) -> None: ...

class WebEndpointInfoResponse(_message.Message):
    __slots__ = ("url", "label", "token")
    URL_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    url: str
    label: str
    token: str
    def __init__(self, url: _Optional[str] = ..., label: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...
