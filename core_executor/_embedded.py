"""The embedded fabric: `python -m gpu_fabric serve --embedded` run as a child of the caller."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Callable

from .config import Config
from .exception import ConnectionError

__all__ = ["EmbeddedFabric"]

LOG_FILE_NAME = "embedded.log"


# The exit code of `serve` when another fabric holds its data dir (gpu_fabric.__main__).
DATA_DIR_IN_USE_EXIT = 75


class _DataDirTaken(Exception):
    pass


def _held_by_another_fabric(data_dir: str) -> bool:
    """True when a running control plane holds the data dir's lock (see gpu_fabric serve)."""
    import fcntl

    try:
        fd = os.open(os.path.join(data_dir, "lock"), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


class EmbeddedFabric:
    """A control plane plus one local worker on this machine, started and stopped by the SDK.

    `with EmbeddedFabric() as fabric: fabric.url, fabric.token`. Its own output goes to
    `embedded.log` in the data dir (GPUFABRIC_DATA_DIR, default ~/.gpufabric/embedded).
    """

    def __init__(
        self,
        data_dir: str | None = None,
        *,
        start_timeout_s: float = 60.0,
        extra_args: list[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.data_dir = os.path.abspath(os.path.expanduser(data_dir or Config.from_env().data_dir))
        self.start_timeout_s = start_timeout_s
        self.extra_args = list(extra_args or [])
        self.url = ""
        self.token = ""
        self.server_pid = 0
        self.log_path = os.path.join(self.data_dir, LOG_FILE_NAME)
        self._proc: subprocess.Popen | None = None
        self._ready_file = ""
        self._log_offset = 0
        self._clock = clock
        self._sleep = sleep

    def command(self) -> list[str]:
        """The command line that starts the embedded fabric."""
        return [
            sys.executable, "-m", "gpu_fabric", "serve", "--embedded", "--port", "0",
            "--data-dir", self.data_dir, "--ready-file", self._ready_file, *self.extra_args,
        ]  # fmt: skip

    def start(self) -> "EmbeddedFabric":
        """Start the fabric and wait until it accepts calls (ConnectionError if it cannot)."""
        os.makedirs(self.data_dir, exist_ok=True)
        if _held_by_another_fabric(self.data_dir):
            self._use_own_data_dir()
        try:
            return self._launch()
        except _DataDirTaken:
            self._use_own_data_dir()  # lost a race for the shared one
            return self._launch()

    def _use_own_data_dir(self) -> None:
        # Another `gpufabric run` on this machine has the data dir: one control plane per store.
        self.data_dir = os.path.join(self.data_dir, "concurrent", str(os.getpid()))
        self.log_path = os.path.join(self.data_dir, LOG_FILE_NAME)
        os.makedirs(self.data_dir, exist_ok=True)

    def _launch(self) -> "EmbeddedFabric":
        self._ready_file = os.path.join(self.data_dir, f"ready-{os.getpid()}-{uuid.uuid4().hex[:8]}.json")
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            # Its own session: the user's Ctrl-C reaches us, and we stop the fabric in order
            # (the app is stopped first). Closing stdin stops it if we die.
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = self._clock() + self.start_timeout_s
        while True:
            info = self._read_ready_file()
            if info is not None:
                self.url, self.token = info["url"], info.get("token", "")
                self.server_pid = int(info.get("pid") or self._proc.pid)
                return
            code = self._proc.poll()
            if code == DATA_DIR_IN_USE_EXIT:
                raise _DataDirTaken()
            if code is not None:
                raise ConnectionError(
                    f"the embedded fabric exited with code {code} before it was ready; "
                    f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            if self._clock() > deadline:
                raise ConnectionError(
                    f"the embedded fabric was not ready after {self.start_timeout_s:g} s; "
                    f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            self._sleep(0.02)

    def _read_ready_file(self) -> dict | None:
        try:
            with open(self._ready_file, encoding="utf-8") as fh:
                info = json.load(fh)
        except (FileNotFoundError, json.JSONDecodeError):
            return None  # not written yet, or half written
        return info if isinstance(info, dict) and info.get("url") else None

    def log_tail(self, max_bytes: int = 4000) -> str:
        """The end of what this run of the fabric wrote to its log."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(self._log_offset, size - max_bytes))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop the fabric: close its stdin, then SIGTERM, then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=min(3.0, grace_s))
        except subprocess.TimeoutExpired:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5.0)
        finally:
            try:
                os.unlink(self._ready_file)
            except OSError:
                pass

    @property
    def running(self) -> bool:
        """True while the fabric process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> "EmbeddedFabric":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
