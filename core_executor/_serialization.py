"""Pickling of arguments, results and exceptions, with the blob path for large payloads."""
from __future__ import annotations

import sys
import traceback as _traceback
from typing import Any, Iterable, Protocol

import cloudpickle

from .exception import (
    ExecutionError,
    FunctionTimeoutError,
    InputCancellation,
    InternalFailure,
    InvalidError,
    RemoteError,
    SerializationError,
    VersionMismatchError,
)

INLINE_LIMIT = 2 * 1024 * 1024
MAX_PAYLOAD = 8 * 1024 * 1024 * 1024

_PICKLE_PROTOCOL = 5


def _pb():
    # Generated stubs import protobuf; keep `import core_executor` free of it.
    from gpu_fabric.proto import common_pb2

    return common_pb2


class BlobIO(Protocol):
    """Where payloads over the inline limit go: a blob store reached through the fabric."""

    def put(self, data: bytes) -> str: ...

    def get(self, blob_id: str) -> bytes: ...


def python_version() -> str:
    """This interpreter's "major.minor"."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def check_python_version(remote: str, *, what: str) -> None:
    """Raise VersionMismatchError when `remote` ("major.minor") is not this interpreter's."""
    local = python_version()
    if remote and remote != local:
        raise VersionMismatchError(
            f"{what} runs Python {remote} but this process runs Python {local}; pickled "
            f"arguments and results do not cross minor versions. Run the caller with Python "
            f"{remote}, or give the function an image with python_version={local!r}."
        )


def serialize(obj: Any) -> bytes:
    return cloudpickle.dumps(obj, protocol=_PICKLE_PROTOCOL)


def deserialize(data: bytes) -> Any:
    return cloudpickle.loads(data)


def _describe_unpicklable(args: tuple, kwargs: dict) -> str:
    for position, value in enumerate(args):
        try:
            serialize(value)
        except Exception as exc:  # noqa: BLE001 - we only name the culprit
            return f"positional argument {position} ({type(value).__name__}): {exc}"
    for name, value in kwargs.items():
        try:
            serialize(value)
        except Exception as exc:  # noqa: BLE001
            return f"keyword argument {name!r} ({type(value).__name__}): {exc}"
    return "the arguments as a whole"


def serialize_args(args: tuple, kwargs: dict) -> bytes:
    """Pickle a call's arguments; an unpicklable one raises SerializationError naming it."""
    try:
        return serialize((tuple(args), dict(kwargs)))
    except Exception as exc:
        culprit = _describe_unpicklable(tuple(args), dict(kwargs))
        raise SerializationError(
            f"cannot send {culprit}; arguments must be picklable with cloudpickle "
            f"(pass a path, a Volume or plain data instead of open files, locks or sockets)"
        ) from exc


def _check_size(size: int, max_payload: int, what: str) -> None:
    if size > max_payload:
        raise InvalidError(
            f"{what} is {size:,} bytes, over the fabric's payload limit of {max_payload:,} bytes; "
            f"store large data on a Volume and pass its path instead"
        )


def _payload_fields(data: bytes, blobs: BlobIO | None, inline_limit: int, max_payload: int, what: str):
    _check_size(len(data), max_payload, what)
    if len(data) <= inline_limit:
        return data, ""
    if blobs is None:
        raise InvalidError(f"{what} is over the inline limit and no blob store is available")
    return b"", blobs.put(data)


def encode_input(
    args: tuple,
    kwargs: dict,
    *,
    blobs: BlobIO | None,
    inline_limit: int = INLINE_LIMIT,
    max_payload: int = MAX_PAYLOAD,
    method_name: str = "",
):
    """Build a FunctionInput for one call, sending large payloads through the blob store."""
    data = serialize_args(args, kwargs)
    inline, blob_id = _payload_fields(data, blobs, inline_limit, max_payload, "the call's arguments")
    return _pb().FunctionInput(
        args=inline, args_blob_id=blob_id, python_version=python_version(), method_name=method_name
    )


def encode_inputs_fast(
    calls: Iterable[tuple[tuple, dict]],
    *,
    blobs: BlobIO | None,
    inline_limit: int = INLINE_LIMIT,
    max_payload: int = MAX_PAYLOAD,
    method_name: str = "",
) -> list:
    """Batch version of encode_input for map: same result, less per-item overhead."""
    FunctionInput = _pb().FunctionInput
    version = python_version()
    out = []
    for args, kwargs in calls:
        try:
            data = cloudpickle.dumps((args, kwargs), protocol=_PICKLE_PROTOCOL)
        except Exception:
            data = serialize_args(args, kwargs)  # raises with the culprit named
        if len(data) <= inline_limit:
            out.append(FunctionInput(args=data, python_version=version, method_name=method_name))
        else:
            inline, blob_id = _payload_fields(data, blobs, inline_limit, max_payload, "a map input")
            out.append(
                FunctionInput(args=inline, args_blob_id=blob_id, python_version=version, method_name=method_name)
            )
    return out


def decode_input(inp, *, blobs: BlobIO | None) -> tuple[tuple, dict]:
    """The (args, kwargs) a FunctionInput carries."""
    if inp.python_version:
        check_python_version(inp.python_version, what="the caller")
    data = inp.args
    if inp.args_blob_id:
        if blobs is None:
            raise InvalidError("input arguments are in a blob but no blob store is available")
        data = blobs.get(inp.args_blob_id)
    args, kwargs = deserialize(data)
    return tuple(args), dict(kwargs)


def encode_success(value: Any, *, blobs: BlobIO | None, inline_limit: int = INLINE_LIMIT, max_payload: int = MAX_PAYLOAD):
    """A SUCCESS FunctionResult holding `value` (a failure result if it cannot be pickled)."""
    pb = _pb()
    try:
        data = serialize(value)
    except Exception as exc:  # noqa: BLE001 - reported to the caller as the call's error
        err = SerializationError(f"the return value ({type(value).__name__}) cannot be pickled: {exc}")
        return encode_failure(err)
    try:
        inline, blob_id = _payload_fields(data, blobs, inline_limit, max_payload, "the return value")
    except InvalidError as exc:
        return encode_failure(exc)
    return pb.FunctionResult(status=pb.RESULT_STATUS_SUCCESS, data=inline, data_blob_id=blob_id)


def encode_failure(exc: BaseException, status: int | None = None, *, tb: str | None = None):
    """A failure FunctionResult: the exception's text, traceback and (if possible) pickle."""
    pb = _pb()
    if status is None:
        status = pb.RESULT_STATUS_FAILURE
    if tb is None:
        tb = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        pickled = serialize(exc)
        deserialize(pickled)  # an exception that pickles but does not load is no use to the caller
    except Exception:  # noqa: BLE001
        pickled = b""
    return pb.FunctionResult(
        status=status, exception=f"{type(exc).__name__}: {exc}", traceback=tb, serialized_exception=pickled
    )


class RemoteTraceback(Exception):
    """Carries the remote traceback text; set as `__cause__` of a re-raised remote exception."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f"\n\nRemote traceback:\n\"\"\"\n{self.tb}\"\"\""


def result_exception(result) -> BaseException:
    """The exception a failed FunctionResult stands for, with its remote traceback attached."""
    pb = _pb()
    status = result.status
    if status == pb.RESULT_STATUS_TIMEOUT:
        exc: BaseException = FunctionTimeoutError(result.exception or "the input timed out")
    elif status == pb.RESULT_STATUS_TERMINATED:
        exc = InputCancellation(result.exception or "the call was cancelled")
    elif status == pb.RESULT_STATUS_INIT_FAILURE:
        exc = ExecutionError(f"the container could not load the function: {result.exception}")
    elif status == pb.RESULT_STATUS_INTERNAL_FAILURE:
        exc = InternalFailure(result.exception or "the fabric lost the input")
    else:
        exc = None
        if result.serialized_exception:
            try:
                exc = deserialize(result.serialized_exception)
            except Exception:  # noqa: BLE001 - fall back to the text
                exc = None
        if not isinstance(exc, BaseException):
            exc = RemoteError(result.exception or "the remote function failed")
    if result.traceback:
        exc.__cause__ = RemoteTraceback(result.traceback)
    return exc


def decode_result(result, *, blobs: BlobIO | None) -> Any:
    """The value of a SUCCESS result; for a failure, raise the remote exception."""
    pb = _pb()
    if result.status != pb.RESULT_STATUS_SUCCESS:
        raise result_exception(result)
    data = result.data
    if result.data_blob_id:
        if blobs is None:
            raise InvalidError("the result is in a blob but no blob store is available")
        data = blobs.get(result.data_blob_id)
    return deserialize(data)
