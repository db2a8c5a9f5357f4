"""Token check on every RPC: who the token is (workspace, role) and whether that role may call it."""
from __future__ import annotations

import hashlib
import hmac

import grpc

from ._tokens import TokenRegistry, required_grant, set_workspace

_DENIED = "missing or invalid token"


def _deny(code, message):
    async def unary(request, context):
        await context.abort(code, message)

    async def stream(request, context):
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator

    return unary, stream


def _denial(handler, code=grpc.StatusCode.UNAUTHENTICATED, message=_DENIED):
    unary, stream = _deny(code, message)
    if handler.response_streaming:
        if handler.request_streaming:
            return grpc.stream_stream_rpc_method_handler(stream)
        return grpc.unary_stream_rpc_method_handler(stream)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(unary)
    return grpc.unary_unary_rpc_method_handler(unary)


class _Malformed:
    """What a request that does not parse becomes, so the RPC can answer INVALID_ARGUMENT."""


_MALFORMED = _Malformed()
_BAD_REQUEST = "the request is not a valid protobuf message of this method's type"


def _tolerant(deserializer):
    if deserializer is None:
        return None

    def parse(data: bytes):
        try:
            return deserializer(data)
        except Exception:  # noqa: BLE001 - any parse failure is the caller's malformed request
            return _MALFORMED

    return parse


async def _checked(request_iterator, context):
    async for request in request_iterator:
        if request is _MALFORMED:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _BAD_REQUEST)
        yield request


def _in_workspace(handler, workspace: str | None):
    """`handler` serving with `workspace` as the current one (a contextvar the engine reads; None
    leaves the RPC unscoped), answering INVALID_ARGUMENT to requests that do not parse."""
    kwargs = {"request_deserializer": _tolerant(handler.request_deserializer), "response_serializer": handler.response_serializer}
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        async def unary_unary(request, context):
            if request is _MALFORMED:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _BAD_REQUEST)
            if workspace is not None:
                set_workspace(workspace)
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
    if handler.stream_unary is not None:
        inner_su = handler.stream_unary

        async def stream_unary(request_iterator, context):
            if workspace is not None:
                set_workspace(workspace)
            return await inner_su(_checked(request_iterator, context), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
    inner_stream = handler.unary_stream or handler.stream_stream
    request_streaming = handler.stream_stream is not None

    async def streaming(request, context):
        if request_streaming:
            request = _checked(request, context)
        elif request is _MALFORMED:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _BAD_REQUEST)
        if workspace is not None:
            set_workspace(workspace)
        async for item in inner_stream(request, context):
            yield item

    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(streaming, **kwargs)
    return grpc.stream_stream_rpc_method_handler(streaming, **kwargs)


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Accepts `authorization: Bearer <token>`: the fabric's token (compared as digests in constant
    time), or with a `registry` any token it resolves, when that token's role may call the method;
    the RPC then runs in the token's workspace. UNAUTHENTICATED for an unknown token,
    PERMISSION_DENIED for a known one whose role does not allow the method."""

    def __init__(self, token: str, also_allow=None, registry: TokenRegistry | None = None):
        self._digest = hashlib.sha256(f"Bearer {token}".encode()).digest()
        # Short-lived join tokens of launched workers (the autoscaler's), checked after the fabric token.
        self._also_allow = also_allow
        self._registry = registry

    def allowed(self, metadata) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                if hmac.compare_digest(hashlib.sha256(value.encode()).digest(), self._digest):
                    return True
                return self._also_allow is not None and self._also_allow(value)
        return False

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        if self._registry is None:
            return handler if self.allowed(handler_call_details.invocation_metadata) else _denial(handler)
        authorization = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                authorization = value
                break
        principal = self._registry.resolve(authorization)
        if principal is None:
            return _denial(handler)
        grant = required_grant(handler_call_details.method)
        if not principal.may(grant):
            name = handler_call_details.method.rpartition("/")[2]
            return _denial(handler, grpc.StatusCode.PERMISSION_DENIED,
                           f"a {principal.role} token may not call {name} (it needs {grant} rights)")
        # Workers serve the whole fabric: their RPCs are not scoped to a workspace.
        return _in_workspace(handler, None if grant == "worker" else principal.workspace)
