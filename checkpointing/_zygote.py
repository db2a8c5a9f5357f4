"""Fork-server zygote: a warmed Python process that forks new workers in ~2 ms.

The zygote is a fresh interpreter that imports the warm-up modules and never starts threads
(no gRPC): forking it is safe. Clients connect over a unix socket, pass the child's stdio as file
descriptors (SCM_RIGHTS) and a JSON request; the zygote forks, the child runs the requested module
as `__main__`, and the zygote sends the child's pid, then its exit status on the same connection.
"""
from __future__ import annotations

import array
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from typing import Mapping, Optional, Sequence

__all__ = ["Zygote", "ZygoteError", "ZygoteProcess"]


class ZygoteError(Exception):
    """The zygote could not start or fork; start the process cold instead."""


_SERVER = r'''
import array, importlib, json, os, runpy, signal, socket, sys
path, config = sys.argv[1], json.loads(sys.argv[2])
if config.get("parent"):
    # Die with the process that started us (and, through the children's own request, they with us).
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != config["parent"]:
        os._exit(1)
for name in config["preload"]:
    importlib.import_module(name)
if config.get("warmup"):
    module, func, args = config["warmup"]
    getattr(importlib.import_module(module), func)(*args)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path); srv.listen(64)
sys.stdout.write("ready\n"); sys.stdout.flush()
children = {}
def reap(*_):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is not None:
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            try:
                conn.sendall(json.dumps({"exit": code}).encode() + b"\n")
            except OSError:
                pass
            conn.close()
signal.signal(signal.SIGCHLD, reap)
while True:
    try:
        conn, _ = srv.accept()
    except InterruptedError:
        continue
    fds = array.array("i")
    msg, anc, _, _ = conn.recvmsg(65536, socket.CMSG_LEN(3 * fds.itemsize))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    req = json.loads(msg)
    pid = os.fork()
    if pid == 0:
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            srv.close(); conn.close()
            os.setsid()
            for i, fd in enumerate(fds):
                os.dup2(fd, i)
            os.environ.clear(); os.environ.update(req["env"])
            os.chdir(req["cwd"])
            sys.argv = [req["module"]] + req["argv"]
            if req["env"].get("PYTHONUNBUFFERED"):  # the flag is read at interpreter start: apply it here
                for stream in (sys.stdout, sys.stderr):
                    try:
                        stream.reconfigure(write_through=True)
                    except Exception:
                        pass
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            import traceback; traceback.print_exc(); code = 1
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
        os._exit(code)
    for fd in fds:
        os.close(fd)
    children[pid] = conn
    conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    reap()
'''


class ZygoteProcess:
    """A child forked by the zygote: `pid`, `wait()`, `poll()`, `returncode` (negative: signal)."""

    def __init__(self, pid: int, conn: socket.socket) -> None:
        self.pid = pid
        self.returncode: Optional[int] = None
        self._conn = conn
        self._buf = b""

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            self._conn.setblocking(False)
            try:
                self._read()
            except BlockingIOError:
                pass
            finally:
                self._conn.setblocking(True)
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        if self.returncode is None:
            self._conn.settimeout(timeout)
            try:
                while self.returncode is None:
                    self._read()
            except socket.timeout:
                raise TimeoutError(f"zygote child {self.pid} still running") from None
        return self.returncode  # type: ignore[return-value]

    def _read(self) -> None:
        data = self._conn.recv(4096)
        if not data:  # the zygote died: we cannot know the code
            self.returncode = -9 if self.returncode is None else self.returncode
            return
        self._buf += data
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            self.returncode = json.loads(line)["exit"]
        if self.returncode is not None:
            self._conn.close()


class Zygote:
    """A warmed process that forks children; `preload` modules are imported once, up front.

    `warmup` ("module", "function", [args]) is called after the imports, before the first fork:
    the place for work that is not an import (loading user code, running setup hooks). It must
    leave no threads behind. `parent_pid`: the zygote dies (SIGKILL) when that process does; pass
    os.getpid() from a thread that lives as long as the caller. `wait=False` returns at once: call
    `wait_ready()` (from any thread) before `spawn()`.
    """

    def __init__(self, preload: Sequence[str] = (), *, python: str = sys.executable,
                 env: Optional[Mapping[str, str]] = None, start_timeout_s: float = 60.0,
                 warmup: Optional[tuple] = None, parent_pid: Optional[int] = None,
                 directory: Optional[str] = None, wait: bool = True) -> None:
        self._dir = tempfile.mkdtemp(prefix="gpufabric-zygote-", dir=directory)
        self.path = os.path.join(self._dir, "sock")
        self._preload = list(preload)
        self._warmup = ".".join(warmup[:2]) if warmup else None
        self._ready = False
        self.warmup_s = 0.0
        self._started = time.monotonic()
        config = {"preload": self._preload, "warmup": list(warmup) if warmup else None, "parent": parent_pid}
        self._proc = subprocess.Popen(
            [python, "-c", _SERVER, self.path, json.dumps(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=dict(env) if env is not None else None,
            start_new_session=True,
        )
        if wait:
            self.wait_ready(start_timeout_s)

    @property
    def pid(self) -> int:
        """The zygote's own pid (its children's parent)."""
        return self._proc.pid

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until the imports and warm-up are done; ZygoteError (and the zygote stopped) if they fail."""
        if self._ready:
            return
        assert self._proc.stdout is not None
        readable, _, _ = select.select([self._proc.stdout], [], [], max(timeout_s, 0.0))
        line = self._proc.stdout.readline() if readable else b""
        if line.strip() != b"ready":
            code = self._proc.poll()
            self.close()
            why = f"exit {code}" if code is not None else f"not ready within {timeout_s:g}s"
            raise ZygoteError(f"the zygote did not start ({why}); preload={self._preload}, warmup={self._warmup}")
        self._ready = True
        self.warmup_s = time.monotonic() - self._started

    def spawn(self, module: str, argv: Sequence[str] = (), *, env: Optional[Mapping[str, str]] = None,
              cwd: Optional[str] = None, stdin: int = 0, stdout: int = 1, stderr: int = 2) -> ZygoteProcess:
        """Fork a child that runs `module` as `__main__` with `argv`, `env` and the given stdio fds."""
        if not self._ready or self._proc.poll() is not None:
            raise ZygoteError("the zygote is not ready" if self._proc.poll() is None else "the zygote has exited")
        request = {"module": module, "argv": list(argv), "env": dict(os.environ if env is None else env),
                   "cwd": cwd or os.getcwd()}
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(self.path)
            conn.sendmsg([json.dumps(request).encode()],
                         [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [stdin, stdout, stderr]))])
            buf = b""
            while b"\n" not in buf:
                chunk = conn.recv(4096)
                if not chunk:
                    raise ZygoteError("the zygote closed the connection before forking")
                buf += chunk
        except OSError as exc:
            conn.close()
            raise ZygoteError(f"cannot reach the zygote: {exc}") from exc
        line, rest = buf.split(b"\n", 1)
        child = ZygoteProcess(json.loads(line)["pid"], conn)
        child._buf = rest
        return child

    def close(self) -> None:
        """Stop the zygote (its running children keep going)."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        try:
            os.rmdir(self._dir)
        except OSError:
            pass

    def __enter__(self) -> "Zygote":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
