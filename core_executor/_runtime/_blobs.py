"""Blob store access from a container (BlobPut/BlobGet on the FabricClient service)."""
from __future__ import annotations

from typing import Iterator, Sequence

from gpu_fabric.proto import client_pb2, client_pb2_grpc

__all__ = ["BlobIO", "CHUNK_SIZE"]

CHUNK_SIZE = 1024 * 1024


class BlobIO:
    """`put(bytes) -> blob_id` and `get(blob_id) -> bytes`, as the serialization helpers expect."""

    def __init__(
        self,
        stub: client_pb2_grpc.FabricClientStub,
        metadata: Sequence[tuple[str, str]],
        *,
        timeout_s: float = 600.0,
    ) -> None:
        self._stub = stub
        self._metadata = tuple(metadata)
        self._timeout_s = timeout_s

    def put(self, data: bytes) -> str:
        def chunks() -> Iterator[client_pb2.BlobChunk]:
            view = memoryview(data)
            if not data:
                yield client_pb2.BlobChunk(data=b"", total_size=0)
                return
            for start in range(0, len(data), CHUNK_SIZE):
                piece = bytes(view[start : start + CHUNK_SIZE])
                # total_size travels on the first chunk only (the server checks it at the end).
                yield client_pb2.BlobChunk(data=piece, total_size=len(data) if start == 0 else 0)

        response = self._stub.BlobPut(chunks(), metadata=self._metadata, timeout=self._timeout_s)
        return response.blob_id

    def get(self, blob_id: str) -> bytes:
        parts = [
            chunk.data
            for chunk in self._stub.BlobGet(
                client_pb2.BlobGetRequest(blob_id=blob_id),
                metadata=self._metadata,
                timeout=self._timeout_s,
            )
        ]
        return b"".join(parts)
