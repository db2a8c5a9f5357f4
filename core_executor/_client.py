"""The gRPC connection to a fabric: channel, stubs, token, retries, error mapping and blobs."""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

from . import exception as exc_mod
from .config import NOT_CONFIGURED_HINT, Config

__all__ = ["Client", "get_client", "translate_error", "CLIENT_VERSION"]

CLIENT_VERSION = "0.1.0"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
BLOB_CHUNK_BYTES = 1024 * 1024
# How long an idempotent call keeps retrying while the fabric is UNAVAILABLE.
RETRY_WINDOW_S = 20.0


def _grpc():
    import grpc

    return grpc


def _jitter() -> float:
    import random

    return random.random()


def parse_url(url: str) -> tuple[str, bool]:
    """`grpc://host:port` -> ("host:port", secure=False); `grpcs://` is TLS.

    `unix:///path` is a unix socket: how a container without network (block_network=True)
    reaches the fabric, through its worker.
    """
    url = url.strip()
    if url.startswith("unix://") and url[len("unix://"):].startswith("/"):
        return "unix:" + url[len("unix://"):], False
    for scheme, secure in (("grpc://", False), ("grpcs://", True)):
        if url.startswith(scheme):
            target = url[len(scheme):].rstrip("/")
            break
    else:
        if "://" in url:
            raise exc_mod.InvalidError(f"fabric URL {url!r} must look like grpc://HOST:PORT")
        target, secure = url.rstrip("/"), False
    if not target or ":" not in target:
        raise exc_mod.InvalidError(f"fabric URL {url!r} must look like grpc://HOST:PORT")
    return target, secure


# --- TLS (shared fabric): grpcs:// URLs, trusting GPUFABRIC_CA_BUNDLE or the system roots ---
def channel_credentials() -> Any:
    """Credentials for a grpcs:// fabric: the PEM bundle GPUFABRIC_CA_BUNDLE names, else the system roots."""
    grpc = _grpc()
    bundle = os.environ.get("GPUFABRIC_CA_BUNDLE", "").strip()
    if not bundle:
        return grpc.ssl_channel_credentials()
    try:
        with open(bundle, "rb") as f:
            return grpc.ssl_channel_credentials(root_certificates=f.read())
    except OSError as err:
        raise exc_mod.InvalidError(f"GPUFABRIC_CA_BUNDLE={bundle}: cannot read it ({err.strerror})") from None


def open_channel(url: str, options: list) -> Any:
    """A gRPC channel to the fabric at `url` (grpc:// plain, grpcs:// TLS)."""
    grpc = _grpc()
    target, secure = parse_url(url)
    if secure:
        return grpc.secure_channel(target, channel_credentials(), options=options)
    return grpc.insecure_channel(target, options=options)
# --- end TLS ---


def translate_error(err: Exception, url: str = "") -> Exception:
    """The SDK exception for a grpc.RpcError (anything else is returned unchanged)."""
    grpc = _grpc()
    if not isinstance(err, grpc.RpcError) or not hasattr(err, "code"):
        return err
    code, details = err.code(), (err.details() or "")
    where = f" at {url}" if url else ""
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        new: Exception = exc_mod.AuthError(
            f"the fabric{where} refused the token; set GPUFABRIC_TOKEN to the token `gpufabric serve` printed"
        )
    elif code == grpc.StatusCode.NOT_FOUND:
        new = exc_mod.NotFoundError(details or "not found")
    elif code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE):
        new = exc_mod.InvalidError(details or "the fabric rejected the request")
    elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        new = exc_mod.ResourceExhaustedError(details or "the fabric is refusing more inputs for now")
    elif code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        new = exc_mod.ConnectionError(
            f"cannot reach the fabric{where} ({code.name}: {details}); check GPUFABRIC_URL and that "
            "`gpufabric serve` is running"
        )
    else:
        new = exc_mod.Error(f"the fabric{where} failed the call ({code.name}): {details}")
    new.__cause__ = err
    return new


class Client:
    """One connection to a fabric: `client.stub` (FabricClient), `client.container_stub`
    (FabricContainer), `client.metadata` (the token), plus retries and the blob store
    (`put`/`get`, the BlobIO the serialization module uses)."""

    def __init__(self, url: str, token: str, *, sleep: Callable[[float], None] = time.sleep):
        from gpu_fabric.proto import client_pb2, client_pb2_grpc, common_pb2, worker_pb2_grpc

        grpc = _grpc()
        if not url:
            raise exc_mod.ConnectionError(f"no fabric URL: {NOT_CONFIGURED_HINT}")
        self.url = url
        self.token = token
        self.pid = os.getpid()
        self.pb = client_pb2
        self.common_pb = common_pb2
        self._sleep = sleep
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_permit_without_calls", 0),
        ]
        self.channel = open_channel(url, options)
        self.stub = client_pb2_grpc.FabricClientStub(self.channel)
        self.container_stub = worker_pb2_grpc.FabricContainerStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),)
        from ._stream import ThreadLocalStreams

        # `.remote()`'s one message each way, on a stream per calling thread.
        self.invoke = ThreadLocalStreams(self.stub.FunctionInvokeStream)
        self._hello: Any = None
        self._hello_lock = threading.Lock()
        self.closed = False

    @classmethod
    def from_env(cls) -> "Client":
        """A new client for GPUFABRIC_URL / GPUFABRIC_TOKEN (ConnectionError when unset)."""
        cfg = Config.from_env()
        if not cfg.url:
            raise exc_mod.ConnectionError(f"no fabric configured: {NOT_CONFIGURED_HINT}")
        return cls(cfg.url, cfg.token)

    # ---- calls ----

    def call(self, method: str, request: Any, *, timeout: float | None = 30.0, idempotent: bool = True) -> Any:
        """Call a FabricClient unary method; idempotent calls retry with back-off while UNAVAILABLE."""
        fn = getattr(self.stub, method)
        return self._retrying(lambda: fn(request, metadata=self.metadata, timeout=timeout), idempotent)

    def _retrying(self, attempt: Callable[[], Any], idempotent: bool) -> Any:
        grpc = _grpc()
        deadline = time.monotonic() + RETRY_WINDOW_S
        delay = 0.05
        while True:
            try:
                return attempt()
            except grpc.RpcError as err:
                if not (
                    idempotent
                    and err.code() == grpc.StatusCode.UNAVAILABLE
                    and time.monotonic() + delay < deadline
                    and not self.closed
                ):
                    raise translate_error(err, self.url) from None
            self._sleep(delay * (0.5 + _jitter()))
            delay = min(delay * 2, 2.0)

    def hello(self) -> Any:
        """The server's HelloResponse (asked once per client, then cached)."""
        if self._hello is None:
            with self._hello_lock:
                if self._hello is None:
                    from ._serialization import python_version

                    req = self.pb.HelloRequest(client_version=CLIENT_VERSION, python_version=python_version())
                    self._hello = self.call("Hello", req, timeout=10.0)
        return self._hello

    @property
    def inline_limit(self) -> int:
        """Payloads up to this many bytes travel inline."""
        return int(self.hello().inline_limit_bytes) or 2 * 1024 * 1024

    @property
    def max_payload(self) -> int:
        """The largest payload the fabric accepts."""
        return int(self.hello().max_payload_bytes) or 1 << 40

    @property
    def max_inputs_per_batch(self) -> int:
        """Inputs one FunctionMap / FunctionPutInputs may carry."""
        return int(self.hello().max_inputs_per_batch) or 1000

    # ---- blobs (BlobIO) ----

    def put(self, data: bytes) -> str:
        """Store `data` in the fabric's blob store (1 MiB chunks) and return its blob id."""
        view = memoryview(data)
        chunk_type = self.pb.BlobChunk

        def chunks():
            if not len(view):
                yield chunk_type(data=b"", total_size=0)
            for offset in range(0, len(view), BLOB_CHUNK_BYTES):
                piece = bytes(view[offset : offset + BLOB_CHUNK_BYTES])
                yield chunk_type(data=piece, total_size=len(view)) if offset == 0 else chunk_type(data=piece)

        timeout = 60.0 + len(data) / (20 * 1024 * 1024)
        resp = self._retrying(lambda: self.stub.BlobPut(chunks(), metadata=self.metadata, timeout=timeout), True)
        return resp.blob_id

    def get(self, blob_id: str) -> bytes:
        """The bytes of a blob."""

        def fetch() -> bytes:
            stream = self.stub.BlobGet(self.pb.BlobGetRequest(blob_id=blob_id), metadata=self.metadata, timeout=600.0)
            return b"".join(chunk.data for chunk in stream)

        return self._retrying(fetch, True)

    # ---- lifecycle ----

    def close(self) -> None:
        """Close the channel (calls in flight fail with CANCELLED)."""
        if not self.closed:
            self.closed = True
            self.invoke.close()
            self.channel.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"


_clients: dict[tuple[str, str], Client] = {}
_clients_lock = threading.Lock()


def get_client(url: str | None = None, token: str | None = None) -> Client:
    """This process's client for (url, token), by default GPUFABRIC_URL / GPUFABRIC_TOKEN.

    One client per process and fabric; a forked child builds its own (gRPC channels do not
    survive fork).
    """
    if url is None:
        cfg = Config.from_env()
        url, token = cfg.url, cfg.token
        if not url:
            raise exc_mod.ConnectionError(f"no fabric configured: {NOT_CONFIGURED_HINT}")
    key = (url, token or "")
    client = _clients.get(key)
    if client is not None and client.pid == os.getpid() and not client.closed:
        return client
    with _clients_lock:
        client = _clients.get(key)
        if client is None or client.pid != os.getpid() or client.closed:
            client = _clients[key] = Client(url, token or "")
        return client


def forget_client(client: Client) -> None:
    """Close `client` and drop it from the process cache (e.g. when its embedded fabric stops)."""
    with _clients_lock:
        for key, value in list(_clients.items()):
            if value is client:
                del _clients[key]
    if client.pid == os.getpid():
        client.close()


def current(client: Client) -> Client:
    """`client`, or this process's fresh one if `client` was built before a fork."""
    if client.pid == os.getpid() and not client.closed:
        return client
    return get_client(client.url, client.token)
