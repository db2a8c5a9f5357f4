"""Token check on every RPC: a missing or wrong bearer token gets UNAUTHENTICATED, nothing more."""
from __future__ import annotations

import hashlib
import hmac

import grpc

_DENIED = "missing or invalid token"


async def _deny_unary(request, context):
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, _DENIED)


async def _deny_stream(request, context):
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, _DENIED)
    yield  # pragma: no cover - makes this an async generator


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Accepts `authorization: Bearer <token>` for the fabric's token; compares digests in constant time."""

    def __init__(self, token: str, also_allow=None):
        self._digest = hashlib.sha256(f"Bearer {token}".encode()).digest()
        # Short-lived join tokens of launched workers (the autoscaler's), checked after the fabric token.
        self._also_allow = also_allow

    def allowed(self, metadata) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                if hmac.compare_digest(hashlib.sha256(value.encode()).digest(), self._digest):
                    return True
                return self._also_allow is not None and self._also_allow(value)
        return False

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or self.allowed(handler_call_details.invocation_metadata):
            return handler
        if handler.response_streaming:
            if handler.request_streaming:
                return grpc.stream_stream_rpc_method_handler(_deny_stream)
            return grpc.unary_stream_rpc_method_handler(_deny_stream)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(_deny_unary)
        return grpc.unary_unary_rpc_method_handler(_deny_unary)
