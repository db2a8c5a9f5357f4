"""The mount launcher: one pre-started process that has imported FUSE and forks a mount server per image.

A fresh Python process spends most of its first 100 ms importing mfusepy (ctypes structures)
and this package; that is on the critical path of every lazy container start. The launcher
pays it once per worker: it imports everything, then forks a server for each mount request.
It never starts a thread, so forking it is safe.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Optional

__all__ = ["MountLauncher", "ServerProcess", "default_launcher", "server_argv", "server_env"]

# Mount servers start on the critical path of a container start, so they skip `site` (its
# import machinery costs tens of milliseconds) and get this process's import path instead.
_BOOT = "import sys; sys.path[:0] = sys.argv.pop(1).split('\\n'); from fs_lazy.__main__ import main; main()"


def server_argv(args: list[str]) -> list[str]:
    """The command line running `python -m fs_lazy <args>` without `site`, on this process's import path."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = [package_parent] + [p for p in sys.path if p and os.path.isdir(p)]
    return [sys.executable, "-S", "-c", _BOOT, "\n".join(dict.fromkeys(path)), *args]


def server_env() -> dict[str, str]:
    """This process's environment, plus where libfuse is when this process already found it."""
    env = dict(os.environ)
    # mfusepy looks libfuse up with ctypes.util.find_library (which runs ldconfig) unless told.
    found = getattr(sys.modules.get("mfusepy"), "_libfuse_path", None)
    if found and "FUSE_LIBRARY_PATH" not in env:
        env["FUSE_LIBRARY_PATH"] = found
    return env


class ServerProcess:
    """A mount server forked by the launcher: not our child, so watched through a pidfd.

    Offers the part of `subprocess.Popen` that MountedImage uses.
    """

    def __init__(self, pid: int, log_path: str) -> None:
        self.pid = pid
        self.log_path = log_path
        self.returncode: Optional[int] = None
        try:
            self._pidfd: Optional[int] = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self._pidfd = None

    def _gone(self) -> bool:
        if self._pidfd is not None:
            return bool(select.select([self._pidfd], [], [], 0)[0])
        try:
            os.kill(self.pid, 0)
            return False
        except ProcessLookupError:
            return True

    def poll(self) -> Optional[int]:
        if self.returncode is None and self._gone():
            self.returncode = -1  # the launcher reaped it; its status is not ours to read
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is not None:
            return
        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signum)
            else:
                os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: Optional[float] = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(["fs_lazy mount", str(self.pid)], timeout)
            if self._pidfd is not None:
                select.select([self._pidfd], [], [], left)
            else:
                time.sleep(0.005 if left is None else min(0.005, left))
        return self.returncode  # type: ignore[return-value]

    def __del__(self) -> None:
        if getattr(self, "_pidfd", None) is not None:
            os.close(self._pidfd)  # type: ignore[arg-type]
            self._pidfd = None

    def error_output(self) -> str:
        """The end of what the server wrote to its stderr."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""


class MountLauncher:
    """The parent's handle on the launcher process; `launch` asks it for a new mount server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: Optional[subprocess.Popen] = None
        self._pid = os.getpid()

    def start(self, wait: bool = False) -> None:
        """Starts the launcher (imports happen there, in the background); idempotent.

        `wait`: return only once it has imported everything and can fork servers at once.
        """
        with self._lock:
            proc = self._start_locked()
            if wait:
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(b'{"ping": true}\n')
                proc.stdin.flush()
                if not proc.stdout.readline():
                    raise OSError("the fs_lazy mount launcher exited while starting")

    def _start_locked(self) -> subprocess.Popen:
        if self._pid != os.getpid():  # a forked copy of the process that started it: not ours to share
            self._proc, self._pid = None, os.getpid()
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(server_argv(["launcher"]), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, start_new_session=True, env=server_env())
        return self._proc

    def launch(self, args: list[str], log_path: str) -> ServerProcess:
        """Forks a server running `python -m fs_lazy <args>`, its stderr going to `log_path`."""
        with self._lock:
            for attempt in (1, 2):
                proc = self._start_locked()
                try:
                    assert proc.stdin is not None and proc.stdout is not None
                    # The server sees this process's environment and directory as of now, as a
                    # freshly started one would.
                    request = {"args": args, "log": log_path, "env": server_env(), "cwd": os.getcwd()}
                    proc.stdin.write((json.dumps(request) + "\n").encode())
                    proc.stdin.flush()
                    reply = json.loads(proc.stdout.readline() or b"null")
                except (OSError, ValueError):
                    reply = None
                if reply and "pid" in reply:
                    return ServerProcess(int(reply["pid"]), log_path)
                proc.kill()
                proc.wait()
                self._proc = None
                if attempt == 2:
                    raise OSError(f"the fs_lazy mount launcher failed: {reply!r}")
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stops the launcher; mount servers it started keep running until unmounted."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


_default: Optional[MountLauncher] = None
_default_lock = threading.Lock()


def default_launcher() -> MountLauncher:
    """This process's launcher (created, not started, on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = MountLauncher()
        return _default


def run_launcher() -> None:
    """The launcher process's main: import everything a server needs, then fork one per request."""
    import mfusepy  # noqa: F401 - the point: imported once, inherited by every fork

    from . import _cache, _fuse, _manifest, _mount, _store  # noqa: F401
    from .__main__ import main

    # Forked servers are reaped by the kernel: the launcher never waits for them.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    for line in requests:
        try:
            request = json.loads(line)
            if request.get("ping"):
                replies.write(b'{"pong": true}\n')
                replies.flush()
                continue
            args, log_path = [str(a) for a in request["args"]], str(request["log"])
            env, cwd = dict(request.get("env") or os.environ), str(request.get("cwd") or "/")
            pid = os.fork()
        except Exception as exc:  # a bad request or no fork: say so, keep serving
            replies.write((json.dumps({"error": repr(exc)}) + "\n").encode())
            replies.flush()
            continue
        if pid == 0:
            code = 1
            try:
                os.setsid()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # libfuse may wait for fusermount3
                log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                null_fd = os.open(os.devnull, os.O_RDWR)
                os.dup2(null_fd, 0)
                os.dup2(null_fd, 1)
                os.dup2(log_fd, 2)
                os.close(log_fd)
                os.close(null_fd)
                os.environ.clear()
                os.environ.update(env)
                os.chdir(cwd)
                sys.argv = ["fs_lazy", *args]
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                try:
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        replies.write((json.dumps({"pid": pid}) + "\n").encode())
        replies.flush()
