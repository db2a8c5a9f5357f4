"""Small builders for failure results and messages shared by the engine's parts."""
from __future__ import annotations

from gpu_fabric.proto import common_pb2


class FabricError(Exception):
    """An error the servicer turns into a gRPC status: `code` is a grpc.StatusCode name."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def result(status: int, message: str):
    return common_pb2.FunctionResult(status=status, exception=message)


def one_line(text: str) -> str:
    lines = [l for l in (text or "").strip().splitlines() if l.strip()]
    return lines[-1].strip() if lines else ""
