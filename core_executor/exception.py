"""Every exception the SDK raises, each saying when it is raised and what to do."""
from __future__ import annotations

__all__ = [
    "Error",
    "InvalidError",
    "NotFoundError",
    "AuthError",
    "VersionMismatchError",
    "SerializationError",
    "RemoteError",
    "FunctionTimeoutError",
    "InputCancellation",
    "OutputExpiredError",
    "ConnectionError",
    "ExecutionError",
    "InternalFailure",
    "ResourceExhaustedError",
]


class Error(Exception):
    """Base of every gpu-fabric error."""


class InvalidError(Error):
    """An argument or configuration is invalid; the message says which and what to use."""


class NotFoundError(Error):
    """An app, function, call or blob does not exist (or was stopped); check its name or id."""


class AuthError(Error):
    """The fabric refused the token; set GPUFABRIC_TOKEN to the token `gpufabric serve` printed."""


class VersionMismatchError(Error):
    """The caller's Python minor version differs from the container's; pickles would not load.

    Run the caller with the container's Python, or give the function an image with the caller's.
    """


class SerializationError(Error):
    """An argument or return value could not be pickled or unpickled; the message names it."""


class RemoteError(Error):
    """A remote exception that could not be rebuilt locally; its text and traceback are kept."""


class FunctionTimeoutError(Error, TimeoutError):
    """An input ran longer than its function's `timeout`; raise the timeout or split the work."""


class InputCancellation(Error):
    """The call was cancelled before its input finished."""


class OutputExpiredError(Error, TimeoutError):
    """`FunctionCall.get(timeout=...)` returned before the output was ready, or it expired."""


class ConnectionError(Error):  # noqa: A001 - mirrors Modal's name
    """The fabric could not be reached; check GPUFABRIC_URL and that `gpufabric serve` runs."""


class ExecutionError(Error):
    """The fabric could not run the input (the container could not load the function)."""


class InternalFailure(Error):
    """The fabric lost the input's container (it crashed or was killed) after every retry."""


class ResourceExhaustedError(Error):
    """The fabric is refusing more inputs for now (backpressure); the SDK retries these."""
