"""Fork-server zygote: a warmed Python process that forks new workers in ~2 ms.

The zygote is a fresh interpreter that imports the warm-up modules and never starts threads
(no gRPC): forking it is safe. Clients connect over a unix socket, pass the child's stdio as file
descriptors (SCM_RIGHTS) and a JSON request; the zygote forks, the child runs the requested module
as `__main__`, and the zygote sends the child's pid, then its exit status on the same connection.

With `snapshot=True` the zygote can also be dumped with CRIU and restored elsewhere: it runs as
PID 1 of a PID namespace of its own (so many restored copies can run side by side), its stdio are
three pipes (replaced by new ones at restore time with `--inherit-fd`), and after the warm-up it
stops with no socket open, says "warm", and waits on stdin for a hand-off line naming the socket
to listen on. The caller dumps it there (`dump()`, the process keeps running) and then hands it
off; a restored copy (`Zygote.restore()`) gets its own hand-off. Such a zygote exits when its stdin
closes (its owner died), and its children die with it (the namespace goes with its PID 1).
"""
from __future__ import annotations

import array
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Any, Mapping, Optional, Sequence

__all__ = ["Zygote", "ZygoteError", "ZygoteProcess"]


# A unix socket's path must fit sun_path (108 bytes with its NUL on Linux); zygotes whose own
# directory is deeper than that put theirs in a private (0700) directory under /tmp instead.
_MAX_SOCKET_PATH = 107
_SHORT_DIR = "/tmp"


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
# Everything imported so far lives as long as we do: out of the collector's sight (Python's advice
# for fork servers), a child's full collections neither walk it (tens of ms with scipy loaded)
# nor write its GC headers, which would copy each page of it into the child.
import gc
gc.freeze()
handoff = config.get("handoff")
if handoff:
    # Fork once, to nobody: libraries that start worker threads at import (OpenBLAS in numpy and
    # scipy: cores - 1 each) stop them in their fork handlers, so the image holds one thread, not
    # dozens that every restore would rebuild and no forked child would ever see.
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    # Snapshot point: no socket is open. A CRIU dump happens while we wait here, and each copy
    # restored from it wakes up here too, reading its own hand-off from a new stdin pipe.
    sys.stdout.write("warm\n"); sys.stdout.flush()
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(0, 4096)
        if not chunk:
            os._exit(0)
        line += chunk
    path = json.loads(line)["path"]
    # A restored copy is the child of the thread that ran `criu restore`, and inherits the death
    # signal `unshare --kill-child` gave the original: that thread ending must not kill us. We
    # live while our owner holds our stdin open instead.
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG: none
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
import select
while True:
    if handoff:  # our owner holds stdin open: EOF means it is gone, and so are we (and our children)
        ready, _, _ = select.select([srv, 0], [], [])
        if 0 in ready and not os.read(0, 4096):
            os._exit(0)
        if srv not in ready:
            continue
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
    pid_r, pid_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            srv.close(); conn.close(); os.close(pid_r)
            # Our pid as the host sees it (in a PID namespace, os.getpid() is the namespace's).
            os.write(pid_w, os.readlink("/proc/self").encode()); os.close(pid_w)
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
    os.close(pid_w)
    try:
        host_pid = int(os.read(pid_r, 64) or pid)
    except ValueError:
        host_pid = pid
    os.close(pid_r)
    children[pid] = conn
    conn.sendall(json.dumps({"pid": host_pid}).encode() + b"\n")
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


class _RestoredProcess:
    """A zygote restored by CRIU: our child (`--restore-sibling`), known by pid, shaped like Popen."""

    def __init__(self, pid: int, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self.pid = pid
        self.stdin, self.stdout = stdin, stdout
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -9
                return self.returncode
            if pid:
                self.returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self, timeout: Optional[float] = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.01)
        return self.returncode  # type: ignore[return-value]


def _forward(pipe: IO[bytes], sink: Any) -> None:
    """Copy a snapshot zygote's stderr (a pipe, so CRIU can dump it) to ours."""
    try:
        for line in iter(pipe.readline, b""):
            try:
                sink.write(line.decode("utf-8", "replace"))
                sink.flush()
            except (OSError, ValueError):
                pass
    except (OSError, ValueError):
        pass
    finally:
        pipe.close()


class Zygote:
    """A warmed process that forks children; `preload` modules are imported once, up front.

    `warmup` ("module", "function", [args]) is called after the imports, before the first fork:
    the place for work that is not an import (loading user code, running setup hooks). It must
    leave no threads behind. `parent_pid`: the zygote dies (SIGKILL) when that process does; pass
    os.getpid() from a thread that lives as long as the caller. `wait=False` returns at once: call
    `wait_ready()` (from any thread) before `spawn()`.

    `snapshot=True` (Linux, needs `unshare`): the zygote can be dumped with CRIU between its
    warm-up and its first fork (`wait_ready(before_handoff=...)` calls back there; see `dump()`),
    and copies restored from the image with `Zygote.restore()`. It runs as PID 1 of its own PID
    namespace, so its children see their parent as pid 1 (`children_parent_pid`).
    """

    def __init__(self, preload: Sequence[str] = (), *, python: str = sys.executable,
                 env: Optional[Mapping[str, str]] = None, start_timeout_s: float = 60.0,
                 warmup: Optional[tuple] = None, parent_pid: Optional[int] = None,
                 directory: Optional[str] = None, wait: bool = True, snapshot: bool = False,
                 _restored: Optional[_RestoredProcess] = None) -> None:
        self._dir = tempfile.mkdtemp(prefix="gpufabric-zygote-", dir=directory)
        self.path = os.path.join(self._dir, "sock")
        if len(os.fsencode(self.path)) > _MAX_SOCKET_PATH:  # a deep runtime dir: a unix socket cannot live there
            os.rmdir(self._dir)
            self._dir = tempfile.mkdtemp(prefix="gpufabric-zygote-", dir=_SHORT_DIR)
            self.path = os.path.join(self._dir, "sock")
        self._preload = list(preload)
        self._warmup = ".".join(warmup[:2]) if warmup else None
        self._ready = False
        self._warm = False
        self.warmup_s = 0.0
        self.snapshot = snapshot or _restored is not None
        self.restored = _restored is not None
        self._started = time.monotonic()
        self._children: list[ZygoteProcess] = []
        self._last_used = time.monotonic()
        self._proc: Any
        if _restored is not None:
            self._proc = _restored
            self._warm = True
            return
        config = {"preload": self._preload, "warmup": list(warmup) if warmup else None,
                  "parent": None if snapshot else parent_pid, "handoff": snapshot}
        argv = [python, "-c", _SERVER, self.path, json.dumps(config)]
        if snapshot:
            # PID 1 of a namespace of its own (restorable many times side by side), a session
            # leader inside it (CRIU refuses one whose session leader is outside), killed with
            # the `unshare` that holds it.
            argv = ["unshare", "--pid", "--fork", "--kill-child", "setsid", *argv]
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE if snapshot else subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if snapshot else None,
            env=dict(env) if env is not None else None, start_new_session=True,
        )
        if snapshot:
            threading.Thread(target=_forward, args=(self._proc.stderr, sys.stderr),
                             name="gpufabric-zygote-stderr", daemon=True).start()
        if wait:
            self.wait_ready(start_timeout_s)

    @property
    def pid(self) -> int:
        """The zygote's own pid as this process sees it (for a snapshot zygote: its namespace's PID 1)."""
        if self.snapshot and not self.restored:
            try:
                with open(f"/proc/{self._proc.pid}/task/{self._proc.pid}/children") as f:
                    return int(f.read().split()[0])
            except (OSError, IndexError, ValueError):
                pass
        return self._proc.pid

    @property
    def children_parent_pid(self) -> int:
        """What `os.getppid()` returns in a child: the zygote's pid, or 1 inside its PID namespace."""
        return 1 if self.snapshot else self._proc.pid

    def _read_line(self, timeout_s: float) -> bytes:
        assert self._proc.stdout is not None
        readable, _, _ = select.select([self._proc.stdout], [], [], max(timeout_s, 0.0))
        return self._proc.stdout.readline() if readable else b""

    def _fail(self, what: str, timeout_s: float) -> None:
        code = self._proc.poll()
        self.close()
        why = f"exit {code}" if code is not None else f"not {what} within {timeout_s:g}s"
        raise ZygoteError(f"the zygote did not start ({why}); preload={self._preload}, warmup={self._warmup}")

    def wait_ready(self, timeout_s: float = 60.0, before_handoff: Optional[Any] = None) -> None:
        """Block until the imports and warm-up are done; ZygoteError (and the zygote stopped) if they fail.

        For a snapshot zygote, `before_handoff(self)` runs once it is warm, before it opens its
        socket: the moment to `dump()` it. An exception there is the caller's (the zygote goes on).
        """
        if self._ready:
            return
        deadline = time.monotonic() + timeout_s
        if self.snapshot:
            if not self._warm:
                if self._read_line(timeout_s).strip() != b"warm":
                    self._fail("warm", timeout_s)
                self._warm = True
                self.warmup_s = time.monotonic() - self._started
            try:
                if before_handoff is not None:
                    before_handoff(self)
            finally:
                assert self._proc.stdin is not None
                try:
                    self._proc.stdin.write(json.dumps({"path": self.path}).encode() + b"\n")
                    self._proc.stdin.flush()
                except OSError:
                    pass
        if self._read_line(max(deadline - time.monotonic(), 1.0)).strip() != b"ready":
            self._fail("ready", timeout_s)
        self._ready = True
        if not self.snapshot or not self.warmup_s:
            self.warmup_s = time.monotonic() - self._started

    def stdio_inodes(self) -> list[int]:
        """The pipe inodes of a warm snapshot zygote's fds 0-2: a restore replaces them (--inherit-fd)."""
        return [os.stat(f"/proc/{self.pid}/fd/{fd}").st_ino for fd in (0, 1, 2)]

    def dump(self, images_dir: str, *, criu: str, timeout_s: float = 300.0) -> dict:
        """CRIU-dump a warm snapshot zygote (call from `before_handoff`); it keeps running.

        Returns what a restore needs besides the images: {"stdio_inodes": [...], "dump_s": ...}.
        CriuError (with the end of CRIU's log) when the dump fails, e.g. a TCP socket is open.
        """
        from ._criu import dump_tree

        if not (self.snapshot and self._warm and not self._ready):
            raise ZygoteError("only a warm snapshot zygote that has not been handed off can be dumped")
        inodes = self.stdio_inodes()
        dump_s = dump_tree(self.pid, images_dir, criu=criu, leave_running=True, timeout_s=timeout_s)
        return {"stdio_inodes": inodes, "dump_s": dump_s}

    @classmethod
    def restore(cls, images_dir: str, stdio_inodes: Sequence[int], *, criu: str,
                directory: Optional[str] = None, timeout_s: float = 60.0) -> "Zygote":
        """A new zygote restored from a `dump()` image (warm, not handed off: call `wait_ready()`).

        It is this process's child; its stdio are new pipes put in place of the dumped ones.
        ZygoteError (with CRIU's log) when the restore fails: start cold instead.
        """
        from ._criu import CriuError, restore_tree

        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ours = [in_w, out_r, err_r]
        try:
            pid = restore_tree(images_dir, criu=criu, inherit={in_r: stdio_inodes[0], out_w: stdio_inodes[1],
                                                              err_w: stdio_inodes[2]}, timeout_s=timeout_s)
        except CriuError as exc:
            for fd in ours:
                os.close(fd)
            raise ZygoteError(f"cannot restore the snapshot: {exc}") from exc
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        proc = _RestoredProcess(pid, os.fdopen(in_w, "wb"), os.fdopen(out_r, "rb"))
        threading.Thread(target=_forward, args=(os.fdopen(err_r, "rb"), sys.stderr),
                         name="gpufabric-zygote-stderr", daemon=True).start()
        return cls(directory=directory, _restored=proc)

    def alive(self) -> bool:
        """False once the zygote has exited (or was closed)."""
        return self._proc.poll() is None

    def touch(self) -> None:
        """Count now as a use (a container is about to be forked): `idle_s` starts again."""
        self._last_used = time.monotonic()

    def idle_s(self) -> float:
        """Seconds since the zygote last had a running child (0 while one runs)."""
        # returncode is set by whoever waits on the child (never poll here: another thread waits).
        self._children = [c for c in self._children if c.returncode is None]
        if self._children:
            self._last_used = time.monotonic()
            return 0.0
        return time.monotonic() - self._last_used

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
        self._children.append(child)
        self._last_used = time.monotonic()
        return child

    def close(self) -> None:
        """Stop the zygote (its running children keep going, except a snapshot zygote's: they share
        its PID namespace, which ends with it)."""
        if self.snapshot and not self.restored and self._proc.poll() is None:
            try:  # PID 1 of the namespace: its children go with it
                os.kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)
        for pipe in (self._proc.stdout, self._proc.stdin):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
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
