"""Request/response pairs over one long-lived gRPC stream, called like a unary stub method."""
from __future__ import annotations

import queue
import threading
import weakref
from typing import Any, Callable, Optional

import grpc


class StreamEnded(grpc.RpcError):
    """The server ended the stream; treated like UNAVAILABLE (the next call reopens it)."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "the stream ended"


class StreamCaller:
    """One bidirectional stream whose server answers each request with one response, in order.

    A message on an open stream costs about half a unary call on loopback, which is most of
    what a warm call spends. Not thread-safe: one caller at a time (see ThreadLocalStreams).
    A stream that ended while idle is reopened before the request is sent; one that breaks with a
    request in flight raises its RpcError (the request may have been received) and is reopened by
    the next call.
    """

    def __init__(self, open_stream: Callable[..., Any]):
        self._open_stream = open_stream
        self._requests: Optional[queue.SimpleQueue] = None
        self._responses: Any = None

    def _open(self, metadata: Any) -> None:
        requests: queue.SimpleQueue = queue.SimpleQueue()

        def feed():
            while True:
                item = requests.get()
                if item is None:
                    return
                yield item

        self._requests = requests
        self._responses = self._open_stream(feed(), metadata=metadata)

    def __call__(self, request: Any, metadata: Any = None, timeout: Optional[float] = None) -> Any:
        if self._responses is not None and self._responses.done():
            # It ended while idle (say the control plane restarted): nothing of this request was
            # sent on it, so a new stream can carry it safely.
            self.close()
        if self._responses is None:
            self._open(metadata)
        self._requests.put(request)
        try:
            return next(self._responses)
        except grpc.RpcError:
            self.close()
            raise
        except StopIteration:
            self.close()
            raise StreamEnded() from None

    def close(self) -> None:
        requests, responses = self._requests, self._responses
        self._requests = self._responses = None
        if requests is not None:
            requests.put(None)
        if responses is not None:
            responses.cancel()


class ThreadLocalStreams:
    """A StreamCaller per calling thread, closed when the thread ends or on close()."""

    def __init__(self, open_stream: Callable[..., Any]):
        self._open_stream = open_stream
        self._local = threading.local()
        self._all: "weakref.WeakSet[_Holder]" = weakref.WeakSet()

    def __call__(self, request: Any, metadata: Any = None, timeout: Optional[float] = None) -> Any:
        holder = getattr(self._local, "holder", None)
        if holder is None:
            holder = _Holder(StreamCaller(self._open_stream))
            self._local.holder = holder
            self._all.add(holder)
        return holder.caller(request, metadata=metadata, timeout=timeout)

    def close(self) -> None:
        for holder in list(self._all):
            holder.caller.close()


class _Holder:
    """Owns a thread's stream; when the thread's locals go away the stream is closed."""

    def __init__(self, caller: StreamCaller):
        self.caller = caller
        weakref.finalize(self, caller.close)
