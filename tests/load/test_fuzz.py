"""Fuzz: random bytes and random well-typed messages to every unary RPC; the fabric stays up and sane."""
from __future__ import annotations

import os

import grpc
import pytest

from gpu_fabric.proto import billing_pb2, client_pb2, objects_pb2, worker_pb2

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

# FUZZ_EXAMPLES=2000 for a long run; CI runs a few per RPC.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
# Codes a garbage request may get: never UNKNOWN or INTERNAL (a crash or an unhandled exception).
ACCEPTABLE = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
              grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.ALREADY_EXISTS,
              grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.PERMISSION_DENIED}


def _unary_methods():
    for module in (client_pb2, worker_pb2, objects_pb2, billing_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                if not method.client_streaming and not method.server_streaming:
                    yield f"/{service.full_name}/{method.name}", method.input_type._concrete_class


METHODS = sorted(_unary_methods(), key=lambda m: m[0])


@pytest.fixture(scope="module")
def fuzz_plane(tmp_path_factory):
    from tests.control_plane.conftest import RunningPlane

    running = RunningPlane(str(tmp_path_factory.mktemp("fuzz")), heartbeat_timeout_s=5.0)
    yield running
    running.stop()


def _call(plane, path: str, payload: bytes):
    call = plane.channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    try:
        call(payload, metadata=plane.md, timeout=3.0)
    except grpc.RpcError as err:
        assert err.code() in ACCEPTABLE, f"{path}: {err.code()} {err.details()}"
        assert "Traceback" not in (err.details() or "")


@pytest.mark.parametrize("path,request_type", METHODS, ids=[m[0].rsplit("/", 1)[1] for m in METHODS])
def test_random_bytes_and_random_messages(fuzz_plane, path, request_type):
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(raw=st.binary(max_size=256), text=st.text(max_size=40), number=st.integers(-2**31, 2**31 - 1))
    def fuzz(raw, text, number):
        _call(fuzz_plane, path, raw)
        message = request_type()
        for field in request_type.DESCRIPTOR.fields:  # every scalar field set to something odd
            if field.is_repeated or field.message_type is not None:
                continue
            try:
                setattr(message, field.name, {9: text, 12: raw, 8: bool(number & 1)}.get(field.type, number))
            except (TypeError, ValueError):
                pass
        if "timeout_s" in request_type.DESCRIPTOR.fields_by_name:
            message.timeout_s = 0.0  # never park a long-poll for the whole deadline
        _call(fuzz_plane, path, message.SerializeToString())

    fuzz()
    # Still serving, and the state it keeps is still consistent.
    assert fuzz_plane.client.Hello(client_pb2.HelloRequest(), metadata=fuzz_plane.md).server_version
    engine = fuzz_plane.engine
    assert all(rec.call_id in engine.calls for rec in engine.inputs.values())


def _streaming_methods():
    for module in (client_pb2, worker_pb2, objects_pb2, billing_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                if method.client_streaming or method.server_streaming:
                    yield f"/{service.full_name}/{method.name}", method.client_streaming, method.server_streaming


STREAMING = sorted(_streaming_methods())


def _call_stream(plane, path: str, client_streaming: bool, server_streaming: bool, payloads: list[bytes]):
    kinds = {
        (False, True): plane.channel.unary_stream, (True, False): plane.channel.stream_unary,
        (True, True): plane.channel.stream_stream,
    }
    call = kinds[(client_streaming, server_streaming)](path, request_serializer=None, response_deserializer=None)
    request = iter(payloads) if client_streaming else payloads[0]
    try:
        result = call(request, metadata=plane.md, timeout=2.0)
        if server_streaming:
            for _ in zip(range(20), result):  # bounded: a follow-mode stream is cut by the deadline
                pass
    except grpc.RpcError as err:
        assert err.code() in ACCEPTABLE, f"{path}: {err.code()} {err.details()}"
        assert "Traceback" not in (err.details() or "")


@pytest.mark.parametrize("path,client_streaming,server_streaming", STREAMING, ids=[m[0].rsplit("/", 1)[1] for m in STREAMING])
def test_random_bytes_to_streaming_rpcs(fuzz_plane, path, client_streaming, server_streaming):
    @settings(max_examples=max(5, EXAMPLES // 3), deadline=None, suppress_health_check=list(HealthCheck))
    @given(raws=st.lists(st.binary(max_size=128), min_size=1, max_size=4))
    def fuzz(raws):
        _call_stream(fuzz_plane, path, client_streaming, server_streaming, raws)

    fuzz()
    assert fuzz_plane.client.Hello(client_pb2.HelloRequest(), metadata=fuzz_plane.md).server_version
