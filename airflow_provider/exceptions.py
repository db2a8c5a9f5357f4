"""Every exception the Airflow provider raises itself (remote failures keep their own type)."""
from __future__ import annotations

from airflow.sdk.exceptions import AirflowException

__all__ = ["GpuFabricAirflowError", "ConnectionConfigError", "FabricUnreachableError", "CallFailedError"]


class GpuFabricAirflowError(AirflowException):
    """Base of the provider's errors; a task that raises one fails (and Airflow's retries apply)."""


class ConnectionConfigError(GpuFabricAirflowError):
    """The connection lacks the fabric URL or token; the message names the connection and the field.

    Set them on the connection (host = `grpc://HOST:PORT`, password = the token `gpufabric serve`
    printed), or set GPUFABRIC_URL / GPUFABRIC_TOKEN in the worker's and triggerer's environment.
    """


class FabricUnreachableError(GpuFabricAirflowError):
    """The fabric could not be reached for longer than the operator allows.

    The remote call may still be running: retrying the task reconnects to it.
    """


class CallFailedError(GpuFabricAirflowError):
    """The call was cancelled on the fabric, or its output is gone; the message says which."""
