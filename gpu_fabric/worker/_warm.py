"""Warm starts on a worker: per-function fork-server zygotes, and CRIU snapshots of them.

A function that asks for memory snapshots gets a zygote on each worker that runs it: a process
that imported the code and ran the snap=True @enter methods, from which containers are forked in
milliseconds. Where CRIU works on the host (detected on first use), the zygote is also dumped once
warm and the image stored through the worker's image store (fs_lazy chunks, a manifest and a ref
named by the function and this host's Python); another worker, or this one after a restart,
restores the zygote from it instead of warming one up, after checking the snapshot was taken on a
compatible host. Any failure along the way starts cold and says so in the app's log.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from checkpointing import (CriuError, CriuSupport, Zygote, ZygoteError, detect_criu, host_fingerprint,
                           incompatibility)
from gpu_fabric.proto import worker_pb2, worker_pb2_grpc

logger = logging.getLogger(__name__)

__all__ = ["ForkedProcess", "WarmStarts", "fork_container"]

# Launch(zygote, kind): kind is "cold"/"fork_server"/"snapshot" with a zygote; with None it says why not.
Launch = Callable[[Optional[Zygote], str], None]
# Note(text): a system line for the app's log.
Note = Callable[[str], None]
# The warm-up imports the user's code and runs its snap=True @enter methods: as long as a cold start.
DEFAULT_WARMUP_TIMEOUT_S = 300.0
# A zygote with no container running for this long is stopped (GPUFABRIC_ZYGOTE_IDLE_S); a later
# container warms a new one (or restores it from its snapshot, much faster).
DEFAULT_ZYGOTE_IDLE_S = 600.0
SNAPSHOT_FORMAT = 1


class ForkedProcess:
    """A container forked by a zygote, shaped like the subprocess.Popen the manager watches."""

    def __init__(self, child: Any, stdout: Any, stderr: Any, start_kind: str) -> None:
        self._child = child
        self.start_kind = start_kind
        self.pid = child.pid
        self.stdout, self.stderr = stdout, stderr

    @property
    def returncode(self) -> Optional[int]:
        return self._child.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        return self._child.wait(timeout)


@dataclass
class _Entry:
    zygote: Optional[Zygote] = None
    state: str = "warming"  # -> "ready" | "failed"
    reason: str = ""
    first_kind: str = "cold"  # how the container that waited for the zygote starts: cold or snapshot
    waiters: list = field(default_factory=list)
    # The ContainerHello the worker fetched for the container that made this zygote: handed to it
    # (take_hello), so it need not ask again.
    first_hello: Optional[tuple[str, worker_pb2.ContainerHelloResponse]] = None
    digest: str = ""  # of the definition the zygote loaded ("" when the control plane does not say)


def definition_digest(definition: Any) -> str:
    """SHA-256 (hex) of a FunctionDefinition, as the control plane sends it in ContainerAssignment."""
    return hashlib.sha256(definition.SerializeToString(deterministic=True)).hexdigest()


def snapshot_key(function_id: str, definition_digest: str, python: str) -> str:
    """The store ref of a function's snapshot: per function (so per workspace), code (the digest of
    its definition) and interpreter."""
    digest = hashlib.sha256()
    for part in (function_id.encode(), definition_digest.encode(), os.path.abspath(python).encode(),
                 sys.version.encode()):
        digest.update(len(part).to_bytes(8, "big") + part)
    return f"snapshot-v{SNAPSHOT_FORMAT}-{digest.hexdigest()[:40]}"


def _in_background(fn: Callable[[], Any], name: str) -> concurrent.futures.Future:
    """`fn()` on a daemon thread of its own (it never holds up the agent's exit), as a Future."""
    future: concurrent.futures.Future = concurrent.futures.Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
                future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


class WarmStarts:
    """The zygotes of one worker, one per function that asked for memory snapshots.

    The first container of such a function waits while its zygote is restored from a snapshot
    (start kind "snapshot") or warmed up (kind "cold": it pays the whole import); later containers
    are forked at once ("fork_server"). Zygotes hold no gRPC threads, so forking them is safe; they
    die with the agent. `store` (a fs_lazy ChunkStore, the worker's image store) keeps snapshots;
    without it, or without a working CRIU, zygotes are warmed up every time.
    """

    def __init__(self, *, url: str, python: str, directory: str, store: Any = None,
                 idle_s: Optional[float] = None) -> None:
        self._url = url
        self._python = python
        self._dir = os.path.join(directory, "zygotes")
        self._store = store
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._channel: Any = None
        self._channel_lock = threading.Lock()
        self._criu: Optional[CriuSupport] = None
        self.idle_s = idle_s if idle_s is not None else float(
            os.environ.get("GPUFABRIC_ZYGOTE_IDLE_S", DEFAULT_ZYGOTE_IDLE_S))
        self._reaper: Optional[threading.Thread] = None
        # Zygotes of code since redeployed: stopped once their last container has ended.
        self._retired: list[Zygote] = []
        self._closed = threading.Event()

    @staticmethod
    def wants(assignment: worker_pb2.ContainerAssignment) -> bool:
        """True for the containers this worker can fork: snapshot functions in the worker's own Python."""
        spec = assignment.spec
        return spec.enable_memory_snapshot and not spec.image.recipe_json and not spec.block_network

    def snapshot_support(self) -> CriuSupport:
        """Whether zygotes are snapshotted here (`usable`), or why not (`reason`); checked once."""
        if self._criu is None:
            if os.environ.get("GPUFABRIC_CRIU_SNAPSHOTS", "1") in ("0", "false", "no"):
                support = CriuSupport(False, "CRIU snapshots are turned off (GPUFABRIC_CRIU_SNAPSHOTS=0)")
            elif self._store is None:
                support = CriuSupport(False, "this worker has no image store to keep snapshots in")
            elif not shutil.which("unshare"):
                support = CriuSupport(False, "unshare (util-linux) is not installed")
            else:
                support = detect_criu()
            logger.info("CRIU snapshots of warm zygotes: %s", "on" if support.usable else f"off ({support.reason})")
            if support.usable and not support.kernel_cache:
                logger.warning("criu keeps no kernel probe between runs on this host (its RUNDIR is not a tmpfs): "
                               "every restore probes the kernel again, ~25-40 ms; scripts/install_criu.sh builds "
                               "criu with RUNDIR=/dev/shm where /run is not a tmpfs (docs/volumes.md)")
            self._criu = support
        return self._criu

    def start(self, assignment: worker_pb2.ContainerAssignment, env: dict[str, str], launch: Launch,
              note: Optional[Note] = None) -> None:
        """Calls `launch` now or, while the function's zygote is restored or warms up, from another thread.

        Call from the agent's long-lived thread: a zygote started here without CRIU dies when that
        thread does (PR_SET_PDEATHSIG); a snapshot zygote dies when the agent closes its stdin.
        """
        note = note or (lambda text: None)
        key = assignment.function_id
        redeployed = False
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.state == "ready" and not entry.zygote.alive():
                self._entries.pop(key, None)  # it died (or was stopped as idle): make a new one
                entry = None
            if (entry is not None and entry.state != "warming" and entry.digest and assignment.definition_digest
                    and entry.digest != assignment.definition_digest):
                # New code (a redeploy): a new zygote; the old one goes once its containers have.
                self._entries.pop(key, None)
                if entry.zygote is not None:
                    self._retired.append(entry.zygote)
                entry, redeployed = None, True
            if entry is not None and entry.zygote is not None:
                entry.zygote.touch()
        if redeployed:
            logger.info("function %s has new code: a new fork-server zygote", key)
            note("the function's code changed: warming a new process for warm starts\n")
        first = entry is None
        if entry is None:
            entry = _Entry(digest=assignment.definition_digest)
            if self.snapshot_support().usable:
                with self._lock:
                    self._entries[key] = entry
                threading.Thread(target=self._prepare_snapshot, args=(entry, assignment, env, note),
                                 name=f"gpufabric-zygote-{key}", daemon=True).start()
            else:
                try:
                    entry.zygote = self._new_zygote(assignment, env, snapshot=False, entry=entry)
                except Exception as exc:  # noqa: BLE001 - any trouble here means a cold start
                    launch(None, f"cannot start a fork-server zygote: {exc}")
                    return
                with self._lock:
                    self._entries[key] = entry
                threading.Thread(target=self._warm, args=(entry, assignment.spec.startup_timeout_s),
                                 name=f"gpufabric-zygote-{key}", daemon=True).start()
            self._start_reaper()
        with self._lock:
            if entry.state == "warming":
                entry.waiters.append((launch, first))
                return
        self._launch(entry, launch, first)

    def take_hello(self, assignment: worker_pb2.ContainerAssignment) -> Optional[worker_pb2.ContainerHelloResponse]:
        """The ContainerHello fetched for this container while its zygote was made (once; else None)."""
        with self._lock:
            entry = self._entries.get(assignment.function_id)
            if entry is None or entry.first_hello is None or entry.first_hello[0] != assignment.container_id:
                return None
            hello, entry.first_hello = entry.first_hello[1], None
        return hello

    @staticmethod
    def _launch(entry: _Entry, launch: Launch, first: bool) -> None:
        if entry.state == "ready":
            launch(entry.zygote, entry.first_kind if first else "fork_server")
        else:
            launch(None, entry.reason)

    def _new_zygote(self, assignment: worker_pb2.ContainerAssignment, env: dict[str, str], *, snapshot: bool,
                    hello: Optional[worker_pb2.ContainerHelloResponse] = None,
                    entry: Optional[_Entry] = None) -> Zygote:
        hello = hello or self._hello(assignment)
        if entry is not None:
            entry.first_hello = (assignment.container_id, hello)
        os.makedirs(self._dir, mode=0o700, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="hello-", dir=self._dir)  # 0600: it holds the secrets' values
        with os.fdopen(fd, "wb") as f:
            f.write(hello.SerializeToString())
        return Zygote(python=self._python, env=env, warmup=("core_executor._runtime._warm", "prepare", [path]),
                      parent_pid=None if snapshot else os.getpid(), directory=self._dir, wait=False,
                      snapshot=snapshot)

    def _hello(self, assignment: worker_pb2.ContainerAssignment) -> worker_pb2.ContainerHelloResponse:
        # Read-only on the control plane: the container's own hello after the fork gets the same.
        with self._channel_lock:
            if self._channel is None:
                from core_executor._client import open_channel

                self._channel = open_channel(self._url, [("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        stub = worker_pb2_grpc.FabricContainerStub(self._channel)
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return stub.ContainerHello(
            worker_pb2.ContainerHelloRequest(container_id=assignment.container_id, python_version=version),
            metadata=(("authorization", f"Bearer {assignment.container_token}"),), timeout=30.0)

    def _warm(self, entry: _Entry, startup_timeout_s: float) -> None:
        assert entry.zygote is not None
        try:
            entry.zygote.wait_ready(startup_timeout_s or DEFAULT_WARMUP_TIMEOUT_S)
            state, reason = "ready", ""
            logger.info("fork-server zygote %d warm in %.2fs", entry.zygote.pid, entry.zygote.warmup_s)
        except ZygoteError as exc:
            state, reason = "failed", f"the warm-up failed ({exc}; the worker's log has its error)"
        self._finish(entry, state, reason)

    def _finish(self, entry: _Entry, state: str, reason: str) -> None:
        with self._lock:
            entry.state, entry.reason = state, reason
            waiters, entry.waiters = entry.waiters, []
        for launch, first in waiters:
            self._launch(entry, launch, first)

    # -- CRIU snapshots ------------------------------------------------------------------------

    def _prepare_snapshot(self, entry: _Entry, assignment: worker_pb2.ContainerAssignment,
                          env: dict[str, str], note: Note) -> None:
        """Restore the function's zygote from its snapshot, or warm one up and snapshot it."""
        criu = self.snapshot_support().path
        timeout_s = assignment.spec.startup_timeout_s or DEFAULT_WARMUP_TIMEOUT_S
        # The assignment names the code by its digest: the restore starts at once, while the
        # definition (needed for a warm-up, and by the container) is fetched beside it.
        fetching = _in_background(lambda: self._hello(assignment), f"gpufabric-hello-{assignment.container_id}")
        digest = assignment.definition_digest
        if not digest:  # a control plane that does not send it
            try:
                digest = definition_digest(fetching.result(60.0).definition)
            except Exception as exc:  # noqa: BLE001
                self._finish(entry, "failed", f"cannot start a fork-server zygote: {exc}")
                return
        entry.digest = digest
        key = snapshot_key(assignment.function_id, digest, self._python)
        try:
            zygote = self._restore(key, criu, note)
        except Exception as exc:  # noqa: BLE001 - a failed restore is a cold start, said aloud
            note(f"snapshot restore failed, warming up cold instead: {exc}\n")
            zygote = None
        if zygote is not None:
            entry.zygote, entry.first_kind = zygote, "snapshot"
            try:
                entry.first_hello = (assignment.container_id, fetching.result(10.0))
            except Exception as exc:  # noqa: BLE001 - the container asks for itself
                logger.info("container %s will fetch its own hello: %s", assignment.container_id, exc)
            self._finish(entry, "ready", "")
            return
        try:
            hello = fetching.result(60.0)
        except Exception as exc:  # noqa: BLE001
            self._finish(entry, "failed", f"cannot start a fork-server zygote: {exc}")
            return
        dumped: dict = {}

        def dump(z: Zygote) -> None:
            images = tempfile.mkdtemp(prefix="dump-", dir=self._dir)
            try:
                dumped.update(z.dump(images, criu=criu), images=images)
            except (CriuError, ZygoteError, OSError) as exc:
                shutil.rmtree(images, ignore_errors=True)
                note(f"cannot snapshot the warm process (fork-server starts go on): {exc}\n")

        try:
            entry.zygote = self._new_zygote(assignment, env, snapshot=True, hello=hello, entry=entry)
            entry.zygote.wait_ready(timeout_s, before_handoff=dump)
            logger.info("fork-server zygote %d warm in %.2fs", entry.zygote.pid, entry.zygote.warmup_s)
            self._finish(entry, "ready", "")
        except ZygoteError as exc:
            self._finish(entry, "failed", f"the warm-up failed ({exc}; the worker's log has its error)")
        except Exception as exc:  # noqa: BLE001
            self._finish(entry, "failed", f"cannot start a fork-server zygote: {exc}")
        if dumped.get("images"):
            try:
                record = self._store_snapshot(key, dumped)
                note(f"snapshot of the warm process stored ({record['size'] / 2**20:.0f} MiB, dump "
                     f"{dumped['dump_s'] * 1000:.0f} ms): later workers restore it instead of warming up\n")
                self._keep_local(dumped["images"], record["manifest"])
            except Exception as exc:  # noqa: BLE001
                note(f"cannot store the snapshot: {exc}\n")
            finally:
                shutil.rmtree(dumped["images"], ignore_errors=True)

    def _store_snapshot(self, key: str, dumped: dict) -> dict:
        from fs_lazy import pack_tree

        manifest = pack_tree(dumped["images"], self._store)
        record = {"format": SNAPSHOT_FORMAT, "manifest": manifest.store(self._store),
                  "stdio_inodes": dumped["stdio_inodes"], "host": host_fingerprint(self._python),
                  "criu": list(self.snapshot_support().version), "dump_s": dumped["dump_s"],
                  "created": time.time(), "size": manifest.total_size()}
        self._store.set_ref(key, self._store.put_blob(json.dumps(record, sort_keys=True).encode()))
        return record

    def _local_images(self, manifest_digest: str) -> str:
        """Where this worker keeps a snapshot's images, as CRIU reads them, once dumped or fetched."""
        return os.path.join(self._dir, "snapshots", manifest_digest[:32])

    def _keep_local(self, images: str, manifest_digest: str) -> None:
        """Keep the images this worker just dumped where its restores look first: restoring here
        after the zygote was stopped as idle then fetches nothing from the store (~0.5 s for 70 MiB)."""
        target = self._local_images(manifest_digest)
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.rename(images, target)
        except OSError as exc:  # already there (same code, dumped again): the caller removes ours
            logger.info("not keeping the snapshot images of %s here: %s", manifest_digest[:12], exc)

    def _restore(self, key: str, criu: str, note: Note) -> Optional[Zygote]:
        """The zygote restored from the function's snapshot; None (said why) when there is none to use."""
        from fs_lazy import Manifest, materialize

        ref = self._store.get_ref(key)
        if ref is None:
            return None
        record = json.loads(self._store.get_blob(ref))
        why = incompatibility(record["host"], host_fingerprint(self._python))
        if record.get("format") != SNAPSHOT_FORMAT:
            why = f"snapshot format {record.get('format')}, this worker reads {SNAPSHOT_FORMAT}"
        if why:
            note(f"not restoring the snapshot: it was {why}; warming up cold\n")
            return None
        started = time.monotonic()
        images = self._local_images(record["manifest"])
        if not os.path.isdir(images):  # kept on this worker's disk once dumped or fetched: restores reuse it
            partial = tempfile.mkdtemp(prefix="fetch-", dir=self._dir)
            try:
                materialize(Manifest.load(self._store, record["manifest"]), self._store.get_chunk, partial)
                os.makedirs(os.path.dirname(images), exist_ok=True)
                os.rename(partial, images)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            note(f"fetched the CRIU snapshot ({record['size'] / 2**20:.0f} MiB) from the image store in "
                 f"{(time.monotonic() - started) * 1000:.0f} ms\n")
            started = time.monotonic()
        zygote = Zygote.restore(images, record["stdio_inodes"], criu=criu, directory=self._dir)
        try:
            zygote.wait_ready(30.0)
        except ZygoteError:
            zygote.close()
            raise
        took = time.monotonic() - started
        logger.info("fork-server zygote %d restored from snapshot %s in %.3fs", zygote.pid, key, took)
        note(f"restored the warm process from its CRIU snapshot in {took * 1000:.0f} ms\n")
        return zygote

    # -- idle zygotes --------------------------------------------------------------------------

    def _start_reaper(self) -> None:
        with self._lock:
            if self._reaper is not None:
                return
            self._reaper = threading.Thread(target=self._reap_loop, name="gpufabric-zygote-reaper", daemon=True)
        self._reaper.start()

    def _reap_loop(self) -> None:
        while not self._closed.wait(min(max(self.idle_s / 4, 0.05), 15.0)):
            self.reap_idle()

    def reap_idle(self) -> list[str]:
        """Stop the zygotes with no container for `idle_s` seconds, and those of redeployed code
        with no container left; returns the function ids of the former."""
        with self._lock:
            idle = [(key, entry) for key, entry in self._entries.items()
                    if entry.state != "warming" and (entry.zygote is None or entry.zygote.idle_s() >= self.idle_s)]
            for key, _ in idle:
                self._entries.pop(key, None)
            done = [z for z in self._retired if z.idle_s() > 0 or not z.alive()]
            self._retired = [z for z in self._retired if z not in done]
        for zygote in done:
            logger.info("stopping fork-server zygote %d: its code was redeployed and its containers have ended",
                        zygote.pid)
            zygote.close()
        for key, entry in idle:
            if entry.zygote is not None:
                logger.info("stopping fork-server zygote %d of %s: no container for %.0fs", entry.zygote.pid, key,
                            self.idle_s)
                entry.zygote.close()
        return [key for key, _ in idle]

    def close(self) -> None:
        """Stops every zygote (containers forked from them die with them)."""
        self._closed.set()
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
            retired, self._retired = self._retired, []
        for zygote in retired:
            zygote.close()
        for entry in entries:
            if entry.zygote is not None:
                entry.zygote.close()
        if self._channel is not None:
            self._channel.close()


def fork_container(zygote: Zygote, env: dict[str, str], cwd: str, kind: str,
                   hello: Optional[worker_pb2.ContainerHelloResponse] = None,
                   hello_path: str = "") -> ForkedProcess:
    """Fork one container from `zygote`: its stdout/stderr are pipes, as for a cold Popen.

    `hello`: the container's ContainerHello, already fetched; it is written to `hello_path` (0600:
    it holds the secrets' values) for the container to read instead of asking the control plane."""
    from core_executor._runtime._warm import HELLO_FILE_ENV, START_KIND_ENV

    # The runtime dies with its parent, which is the zygote here (and the zygote with the agent).
    env = dict(env, GPUFABRIC_AGENT_PID=str(zygote.children_parent_pid), **{START_KIND_ENV: kind})
    if hello is not None and hello_path:
        fd = os.open(hello_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(hello.SerializeToString())
        env[HELLO_FILE_ENV] = hello_path
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        child = zygote.spawn("core_executor._runtime", env=env, cwd=cwd, stdin=null, stdout=out_w, stderr=err_w)
    except BaseException:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        for fd in (out_w, err_w, null):
            os.close(fd)
    return ForkedProcess(child, os.fdopen(out_r, "rb"), os.fdopen(err_r, "rb"), kind)
