"""The app log printer: streams AppGetLogs to the caller's terminal, `[function] line`."""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, TextIO

__all__ = ["LogPrinter", "format_entry"]

_STREAM_STDERR = 2
_STREAM_SYSTEM = 3


def format_entry(entry: Any) -> tuple[str, bool]:
    """The text to print for a LogEntry (each line prefixed) and whether it goes to stderr."""
    system = entry.stream == _STREAM_SYSTEM
    prefix = "[fabric] " if system or not entry.function_name else f"[{entry.function_name}] "
    data = entry.data
    if not data:
        return "", False
    lines = data.splitlines()
    text = "".join(prefix + line + "\n" for line in lines)
    return text, system or entry.stream == _STREAM_STDERR


class LogPrinter:
    """Follows an app's log in a background thread and prints each entry.

    `printed_seq` is the seq of the last entry printed; `wait_for(seq)` blocks (up to a bound)
    until the entries up to `seq` are printed, so a function's prints show before its result.
    """

    def __init__(
        self,
        client: Any,
        app_id: str,
        *,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._client = client
        self.app_id = app_id
        self._stdout = stdout
        self._stderr = stderr
        self._sleep = sleep
        self.printed_seq = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._done = False
        self._stream: Any = None
        self._thread = threading.Thread(target=self._run, name=f"gpufabric-logs-{app_id}", daemon=True)

    def start(self) -> "LogPrinter":
        """Start following the log."""
        self._thread.start()
        return self

    def _run(self) -> None:
        delay = 0.1
        while not self._stopping:
            try:
                req = self._client.pb.AppGetLogsRequest(app_id=self.app_id, cursor=self.printed_seq, follow=True)
                self._stream = self._client.stub.AppGetLogs(req, metadata=self._client.metadata)
                if self._stopping:  # stop() ran before the stream existed
                    self._stream.cancel()
                for batch in self._stream:
                    delay = 0.1
                    self.print_entries(batch.entries)
                    if batch.app_done:
                        self._finish()
                        return
            except Exception:  # noqa: BLE001 - a broken stream is reconnected from printed_seq
                if self._stopping:
                    break
                self._sleep(delay)
                delay = min(delay * 2, 2.0)
        self._finish()

    def print_entries(self, entries: Any) -> None:
        """Print entries past `printed_seq` and advance it."""
        last = self.printed_seq
        out = self._stdout or sys.stdout
        err = self._stderr or sys.stderr
        for entry in entries:
            if entry.seq and entry.seq <= last:
                continue  # a reconnect may resend what we have
            text, to_stderr = format_entry(entry)
            if text:
                target = err if to_stderr else out
                try:
                    target.write(text)
                except (OSError, ValueError):
                    pass
            last = max(last, entry.seq)
        for target in (out, err):
            try:
                target.flush()
            except (OSError, ValueError):
                pass
        with self._cond:
            self.printed_seq = max(self.printed_seq, last)
            self._cond.notify_all()

    def _finish(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def wait_for(self, seq: int, timeout: float = 2.0) -> bool:
        """Wait until entries up to `seq` are printed (True), or `timeout` passes (False)."""
        if seq <= self.printed_seq:
            return True
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.printed_seq < seq and not self._done:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return self.printed_seq >= seq

    def stop(self, drain_s: float = 1.0) -> None:
        """Stop following: give the stream `drain_s` to deliver the app's last entries, then cancel."""
        if self._thread.is_alive() and drain_s > 0:
            self._thread.join(drain_s)
        self._stopping = True
        stream = self._stream
        if stream is not None:
            try:
                stream.cancel()
            except Exception:  # noqa: BLE001
                pass
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5.0)
