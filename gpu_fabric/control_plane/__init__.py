"""The control plane: state store, queues, dispatch, retries, autoscaling and the gRPC API."""
from ._engine import Engine, FabricError
from ._server import ControlPlane, DataDirInUse
from ._store import SQLiteStore, StateStore

__all__ = ["ControlPlane", "DataDirInUse", "Engine", "FabricError", "SQLiteStore", "StateStore"]
