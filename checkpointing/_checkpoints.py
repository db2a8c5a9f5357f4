"""Atomic, keep-the-last-K checkpoints of user state in a directory (usually a mounted Volume)."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import tempfile
from typing import Any, Callable, Optional

__all__ = ["CheckpointError", "CheckpointManager", "CorruptCheckpoint"]

_NAME = re.compile(r"^ckpt-(\d{12})\.pkl$")
_MAGIC = b"GFCKPT1\n"


class CheckpointError(Exception):
    """Base of checkpoint errors: the directory is unusable (not writable, not a directory)."""


class CorruptCheckpoint(CheckpointError):
    """A checkpoint file is truncated or fails its checksum; `latest()` skips such files."""


class CheckpointManager:
    """Saves `(state, step)` atomically under `directory` and finds the newest good one.

    `keep`: how many checkpoints stay (older ones are removed after a successful save).
    `on_save`: called after each save with the file path (e.g. a Volume's `commit`), so the
    checkpoint outlives this machine. `dumps`/`loads` default to pickle.
    """

    def __init__(self, directory: str, *, keep: int = 3, on_save: Optional[Callable[..., Any]] = None,
                 dumps: Callable[[Any], bytes] = pickle.dumps, loads: Callable[[bytes], Any] = pickle.loads) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.directory = directory
        self.keep = keep
        self._on_save = on_save
        self._dumps, self._loads = dumps, loads
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise CheckpointError(f"cannot use {directory!r} for checkpoints: {exc}") from exc

    def _path(self, step: int) -> str:
        return os.path.join(self.directory, f"ckpt-{step:012d}.pkl")

    def steps(self) -> list[int]:
        """Steps with a checkpoint file, oldest first (files are not validated here)."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for n in names if (m := _NAME.match(n)))

    def save(self, state: Any, step: int) -> str:
        """Write checkpoint `step` (temp file, fsync, rename): a crash leaves the previous one intact."""
        if step < 0:
            raise ValueError("step must be >= 0")
        body = self._dumps(state)
        header = json.dumps({"step": step, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}).encode()
        fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + len(header).to_bytes(4, "big") + header + body)
                f.flush()
                os.fsync(f.fileno())
            path = self._path(step)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _fsync_dir(self.directory)
        for old in self.steps()[:-self.keep]:
            try:
                os.unlink(self._path(old))
            except FileNotFoundError:
                pass
        if self._on_save is not None:
            self._on_save()
        return path

    def load(self, step: int) -> Any:
        """The state saved at `step`; raises CorruptCheckpoint when the file is damaged."""
        try:
            with open(self._path(step), "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise CheckpointError(f"no checkpoint for step {step} in {self.directory}") from None
        if not raw.startswith(_MAGIC) or len(raw) < len(_MAGIC) + 4:
            raise CorruptCheckpoint(f"step {step}: not a checkpoint file")
        start = len(_MAGIC) + 4
        hlen = int.from_bytes(raw[len(_MAGIC):start], "big")
        try:
            header = json.loads(raw[start:start + hlen])
        except ValueError:
            raise CorruptCheckpoint(f"step {step}: damaged header") from None
        body = raw[start + hlen:]
        if len(body) != header.get("size") or hashlib.sha256(body).hexdigest() != header.get("sha256"):
            raise CorruptCheckpoint(f"step {step}: truncated or altered ({len(body)} bytes)")
        try:
            return self._loads(body)
        except Exception as exc:  # noqa: BLE001 - any decode failure means corrupt
            raise CorruptCheckpoint(f"step {step}: cannot decode: {exc}") from exc

    def latest(self) -> Optional[tuple[Any, int]]:
        """`(state, step)` of the newest valid checkpoint, skipping corrupt ones; None if none."""
        for step in reversed(self.steps()):
            try:
                return self.load(step), step
            except CorruptCheckpoint:
                continue
        return None


def _fsync_dir(directory: str) -> None:
    # The rename is durable only once the directory entry is.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
