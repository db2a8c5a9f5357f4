"""The image builder: steps applied to a root filesystem, each step's result stored and reused by key."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

from ._errors import BuildError
from ._manifest import Manifest, materialize, pack_tree
from ._store import ChunkStore

__all__ = ["BuildStep", "BuildResult", "ImageBuilder", "run_in_root", "step_keys"]

Log = Callable[[str], None]


@dataclass
class BuildStep:
    """One step: `key_data` decides its result (with everything before it); `apply` makes it.

    `apply(root, log)` changes the tree at `root`, writing its output through `log`, and raises
    BuildError when it fails. A `force` step is rebuilt even if cached, and so is everything after.
    """

    key_data: str
    apply: Callable[[str, Log], None]
    description: str = ""
    force: bool = False


@dataclass
class BuildResult:
    """What a build produced: the image manifest, its key, and how many steps came from the cache."""

    manifest_digest: str
    key: str
    cached_steps: int
    built_steps: int
    step_keys: list[str] = field(default_factory=list)


def step_keys(base_key: str, steps: Sequence[BuildStep]) -> list[str]:
    """Keys of the base and of each step: a hash chain, so a changed step changes all after it."""
    keys = [hashlib.sha256(f"base\0{base_key}".encode()).hexdigest()]
    for step in steps:
        keys.append(hashlib.sha256(f"{keys[-1]}\0{step.key_data}".encode()).hexdigest())
    return keys


class ImageBuilder:
    """Builds images into a store, under `work_dir` for the trees being built."""

    def __init__(self, store: ChunkStore, work_dir: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.work_dir = os.path.abspath(work_dir)
        self._clock = clock
        os.makedirs(self.work_dir, exist_ok=True)

    def lookup(self, key: str) -> Optional[str]:
        """The manifest digest built for `key`, or None."""
        return self.store.get_ref(f"image-{key}")

    def build(self, base_key: str, make_base: Callable[[str, Log], None], steps: Sequence[BuildStep], *,
              log: Log = lambda line: None, force: bool = False) -> BuildResult:
        """Builds base + steps, reusing the longest cached prefix; every finished step is cached.

        A failing step raises BuildError carrying its log, and nothing is cached for it.
        """
        keys = step_keys(base_key, steps)
        forced_from = 0 if force else next((i + 1 for i, s in enumerate(steps) if s.force), len(keys))
        hit, digest = -1, None
        for index in range(min(forced_from, len(keys)) - 1, -1, -1):
            digest = self.lookup(keys[index])
            if digest:
                hit = index
                break
        total = len(keys)
        if hit == total - 1:
            log(f"=> image {keys[-1][:12]} is cached ({total} step(s))\n")
            return BuildResult(digest, keys[-1], total, 0, keys)
        build_dir = tempfile.mkdtemp(prefix="build-", dir=self.work_dir)
        root = os.path.join(build_dir, "root")
        try:
            manifest: Optional[Manifest] = None
            if hit >= 0:
                log(f"=> reusing {hit + 1} cached step(s)\n")
                manifest = Manifest.load(self.store, digest)
                materialize(manifest, self.store.get_chunk, root)
            for index in range(hit + 1, total):
                step = None if index == 0 else steps[index - 1]
                title = "base" if step is None else (step.description or step.key_data[:60])
                log(f"=> step {index + 1}/{total}: {title}\n")
                started = self._clock()
                if step is None:
                    os.makedirs(root, exist_ok=True)
                    make_base(root, log)
                else:
                    step.apply(root, log)
                manifest = pack_tree(root, self.store, previous=manifest)
                self.store.set_ref(f"image-{keys[index]}", manifest.digest)
                log(f"   done in {self._clock() - started:.1f}s\n")
            assert manifest is not None
            return BuildResult(manifest.digest, keys[-1], hit + 1, total - hit - 1, keys)
        finally:
            shutil.rmtree(build_dir, ignore_errors=True)


_PASS_ENV = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")


def run_in_root(root: str, argv: Sequence[str], log: Log, *, env: Optional[Mapping[str, str]] = None,
                cwd: str = "/", binds: Sequence[tuple[str, str]] = (), network: bool = True) -> None:
    """Runs `argv` with `root` as its root filesystem (bubblewrap), streaming its output to `log`.

    Raises BuildError with the command's output when it exits non-zero.
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise BuildError("building images needs bubblewrap (Debian package bubblewrap)")
    command = [bwrap, "--bind", root, "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
               "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--chdir", cwd]
    if os.geteuid() == 0:
        command += ["--cap-add", "ALL"]  # package managers chown and drop privileges
    if not network:
        command.append("--unshare-net")
    elif os.path.exists("/etc/resolv.conf"):
        command += ["--ro-bind", os.path.realpath("/etc/resolv.conf"), "/etc/resolv.conf"]
    for source, dest in binds:
        command += ["--ro-bind", source, dest]
    full_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    full_env.update({k: os.environ[k] for k in _PASS_ENV if k in os.environ})
    full_env.update(env or {})
    proc = subprocess.Popen(command + ["--"] + list(argv), env=full_env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tail: list[str] = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode("utf-8", errors="replace")
        tail.append(line)
        del tail[:-200]
        log(line)
    code = proc.wait()
    if code != 0:
        raise BuildError(f"`{' '.join(argv)}` exited with code {code}", "".join(tail))
