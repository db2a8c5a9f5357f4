"""Capture of sys.stdout/sys.stderr inside a container as tagged log entries."""
from __future__ import annotations

import contextvars
import io
import sys
import threading
import time
from typing import Callable, Optional

from gpu_fabric.proto import common_pb2

__all__ = ["LogBuffer", "CapturedStream", "install", "uninstall"]

# A writer that never sees a newline still ships its text in bounded pieces.
_MAX_PARTIAL = 64 * 1024

# The input a thread or task runs when a container runs several at once (@concurrent); a
# single-input container uses the buffer's shared context so threads the user starts are tagged too.
_input_context: contextvars.ContextVar[Optional[tuple[str, str]]] = contextvars.ContextVar(
    "gpufabric_input", default=None
)


class LogBuffer:
    """Thread-safe buffer of LogEntry messages plus the tags of the input now running."""

    def __init__(
        self,
        *,
        container_id: str = "",
        function_name: str = "",
        app_id: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.container_id = container_id
        self.function_name = function_name
        self.app_id = app_id
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: list[common_pb2.LogEntry] = []
        # Set by the runtime loop; read (without locking: a tuple swap is atomic) by writers,
        # including user threads that print while an input runs.
        self._context: tuple[str, str] = ("", "")

    def set_input(self, input_id: str = "", call_id: str = "") -> None:
        self._context = (input_id, call_id)

    @staticmethod
    def set_local_input(input_id: str = "", call_id: str = "") -> None:
        """Tag lines written by this thread or task (concurrent inputs); empty to stop."""
        _input_context.set((input_id, call_id) if input_id else None)

    def add(self, stream: int, data: str) -> None:
        input_id, call_id = _input_context.get() or self._context
        entry = common_pb2.LogEntry(
            timestamp=self._clock(), stream=stream, data=data,
            function_name=self.function_name, container_id=self.container_id,
            input_id=input_id, call_id=call_id, app_id=self.app_id,
        )
        with self._lock:
            self._entries.append(entry)

    def drain(self) -> list[common_pb2.LogEntry]:
        with self._lock:
            entries, self._entries = self._entries, []
        return entries

    def put_back(self, entries: list[common_pb2.LogEntry]) -> None:
        """Returns entries that could not be sent, ahead of newer ones."""
        if entries:
            with self._lock:
                self._entries[:0] = entries

    def __len__(self) -> int:
        return len(self._entries)


class _BinaryWriter(io.RawIOBase):
    """`sys.stdout.buffer` of a captured stream: bytes are decoded and captured as text."""

    def __init__(self, text: "CapturedStream") -> None:
        super().__init__()
        self._text = text

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        data = bytes(b)
        self._text.write(data.decode("utf-8", errors="replace"))
        return len(data)

    def flush(self) -> None:
        self._text.flush()


class CapturedStream(io.TextIOBase):
    """A text stream that turns each complete line into a LogEntry (partial lines on flush)."""

    def __init__(self, buffer: LogBuffer, stream: int, original: Optional[io.TextIOBase]) -> None:
        super().__init__()
        self._buffer = buffer
        self._stream = stream
        self._original = original
        self._partial = ""
        self._lock = threading.Lock()
        self._binary = _BinaryWriter(self)

    # Libraries probe these; answer like a non-tty utf-8 stream.
    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "replace"

    @property
    def line_buffering(self) -> bool:
        return True

    @property
    def buffer(self) -> _BinaryWriter:
        return self._binary

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        # Code that writes to the fd (faulthandler, subprocess) reaches the worker's pipe.
        if self._original is None:
            raise io.UnsupportedOperation("fileno")
        return self._original.fileno()

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if not s:
            return 0
        with self._lock:
            text = self._partial + s
            if "\n" not in text and len(text) < _MAX_PARTIAL:
                self._partial = text
                return len(s)
            lines = text.splitlines(keepends=True)
            if lines and not lines[-1].endswith("\n") and len(lines[-1]) < _MAX_PARTIAL:
                self._partial = lines.pop()
            else:
                self._partial = ""
            for line in lines:
                self._buffer.add(self._stream, line)
        return len(s)

    def flush(self) -> None:
        with self._lock:
            if self._partial:
                self._buffer.add(self._stream, self._partial)
                self._partial = ""

    def close(self) -> None:
        # print(file=sys.stdout) after a user closed it should not break the runtime.
        self.flush()


def install(buffer: LogBuffer) -> tuple[CapturedStream, CapturedStream]:
    """Replaces sys.stdout and sys.stderr with captured streams feeding `buffer`."""
    out = CapturedStream(buffer, common_pb2.LOG_STREAM_STDOUT, sys.__stdout__)
    err = CapturedStream(buffer, common_pb2.LOG_STREAM_STDERR, sys.__stderr__)
    sys.stdout, sys.stderr = out, err
    return out, err


def uninstall() -> None:
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, CapturedStream):
            stream.flush()
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
