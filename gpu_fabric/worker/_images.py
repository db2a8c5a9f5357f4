"""Images on a worker: building a recipe into fs_lazy chunks (debian_slim from debootstrap) and mounting it."""
from __future__ import annotations

import base64
import fcntl
import glob
import json
import logging
import os
import shlex
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from importlib import metadata
from typing import Callable, Optional

from fs_lazy import (BuildError, BuildStep, ImageBuilder, MountedImage, mount_image, open_store, run_in_root,
                     start_mount_launcher)

logger = logging.getLogger(__name__)

__all__ = ["BuiltImage", "ImageService", "default_image_dir", "RUNTIME_PACKAGES"]

Log = Callable[[str], None]

# Debian releases by the Python they ship: debian_slim matches the client's minor version.
DEBIAN_SUITES = {"3.9": "bullseye", "3.11": "bookworm", "3.13": "trixie"}
# What core_executor._runtime imports besides itself, pinned to the worker's versions so the
# container speaks exactly the worker's protocol (the runtime's own code is mounted, not copied).
RUNTIME_PACKAGES = ("grpcio", "protobuf", "cloudpickle", "typing_extensions")
_PIP_ENV = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT",
            "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_DEFAULT_INDEX")


def default_image_dir() -> str:
    """Where a worker keeps its image store, chunk cache and build trees (GPUFABRIC_IMAGE_DIR)."""
    return os.environ.get("GPUFABRIC_IMAGE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "gpufabric", "images")


def _debian_mirror() -> Optional[str]:
    """The Debian mirror this host's apt uses (so builds work wherever apt works), else None."""
    override = os.environ.get("GPUFABRIC_DEBIAN_MIRROR")
    if override:
        return override
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path) as f:
            for stanza in f.read().split("\n\n"):
                fields = dict(line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#"))
                uris = fields.get("URIs", "").split()
                if "deb" in fields.get("Types", "").split() and uris and "security" not in uris[0]:
                    return uris[0]
    try:
        with open("/etc/apt/sources.list") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                    return parts[1] if not parts[1].startswith("[") else parts[2]
    except OSError:
        pass
    return None


def _pip_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in _PIP_ENV if k in os.environ}
    if _host_ca():
        # Builds trust what the worker trusts (a TLS-inspecting proxy's CA, say).
        env.update(PIP_CERT=_HOST_CA_INSIDE, SSL_CERT_FILE=_HOST_CA_INSIDE, REQUESTS_CA_BUNDLE=_HOST_CA_INSIDE)
    return env


# The worker's CA bundle inside a build step; under /tmp, a tmpfs there, so it never enters the image.
_HOST_CA_INSIDE = "/tmp/.gpufabric-host-ca.crt"


def _host_ca() -> Optional[str]:
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      os.environ.get("REQUESTS_CA_BUNDLE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


def _build_binds() -> list[tuple[str, str]]:
    ca = _host_ca()
    return [(ca, _HOST_CA_INSIDE)] if ca else []


def _runtime_pins() -> list[str]:
    pins = []
    for name in RUNTIME_PACKAGES:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


@dataclass
class BuiltImage:
    """A built image: its manifest in the store and how its containers run."""

    manifest_digest: str
    key: str
    python_version: str
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/root"


def _copy_into(root: str, source: str, dest: str) -> None:
    target = os.path.join(root, dest.lstrip("/"))
    if os.path.isdir(source):
        shutil.copytree(source, target, dirs_exist_ok=True, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(source, target)


class _Recipe:
    """A recipe's steps as fs_lazy build steps, plus the container settings they imply."""

    def __init__(self, recipe: dict) -> None:
        base = recipe.get("base", {})
        if base.get("kind") != "debian_slim":
            raise BuildError(f"image base {base.get('kind')!r} cannot be built here; use Image.debian_slim()")
        self.python_version = base.get("python_version") or "3.11"
        self.suite = DEBIAN_SUITES.get(self.python_version)
        if self.suite is None:
            raise BuildError(
                f"no Debian release ships Python {self.python_version}; debian_slim supports "
                f"{', '.join(sorted(DEBIAN_SUITES))}")
        self.pins = _runtime_pins()
        self.base_key = json.dumps({"suite": self.suite, "python": self.python_version, "runtime": self.pins})
        self.env: dict[str, str] = {}
        self.workdir = "/root"
        self.steps = [self._step(step) for step in recipe.get("steps", [])]

    def make_base(self, root: str, log: Log) -> None:
        if shutil.which("debootstrap") is None:
            raise BuildError("debian_slim needs debootstrap on the worker (Debian package debootstrap)")
        argv = ["debootstrap", "--variant=minbase", "--include=python3,python3-pip,python3-venv,ca-certificates",
                self.suite, root]
        mirror = _debian_mirror()
        if mirror:
            argv.append(mirror)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        tail = []
        for raw in proc.stdout:  # type: ignore[union-attr]
            line = raw.decode(errors="replace")
            tail = (tail + [line])[-100:]
            log(line)
        if proc.wait() != 0:
            raise BuildError(f"debootstrap {self.suite} failed with code {proc.returncode}", "".join(tail))
        # Like the slim Python images: pip works system-wide and `python` is python3.
        for marker in glob.glob(os.path.join(root, "usr/lib/python3*/EXTERNALLY-MANAGED")):
            os.unlink(marker)
        os.makedirs(os.path.join(root, "usr/local/bin"), exist_ok=True)
        link = os.path.join(root, "usr/local/bin/python")
        if not os.path.lexists(link):
            os.symlink("/usr/bin/python3", link)
        shutil.rmtree(os.path.join(root, "var/cache/apt/archives"), ignore_errors=True)
        os.makedirs(os.path.join(root, "var/cache/apt/archives/partial"), exist_ok=True)
        run_in_root(root, ["python3", "-m", "pip", "install", "--no-cache-dir", *self.pins], log, env=_pip_env(),
                    binds=_build_binds())

    def _step(self, step: dict) -> BuildStep:
        op = step.get("op")
        key = json.dumps({k: v for k, v in step.items() if k != "pickled_b64"}, sort_keys=True)
        env, cwd = dict(self.env), self.workdir

        def sh(commands: list[str]) -> Callable[[str, Log], None]:
            def run(root: str, log: Log) -> None:
                for command in commands:
                    run_in_root(root, ["sh", "-c", command], log, env={**_pip_env(), **env}, cwd=cwd,
                                binds=_build_binds())
            return run

        if op in ("pip_install", "uv_pip_install"):
            flags = []
            if step.get("index_url"):
                flags += ["--index-url", step["index_url"]]
            if step.get("extra_index_url"):
                flags += ["--extra-index-url", step["extra_index_url"]]
            if step.get("pre"):
                flags.append("--pre")
            flags += shlex.split(step.get("extra_options", ""))
            args = " ".join(shlex.quote(a) for a in flags + list(step["packages"]))
            if op == "pip_install":
                apply = sh([f"python3 -m pip install --no-cache-dir {args}"])
            else:
                apply = sh(["command -v uv >/dev/null || python3 -m pip install --no-cache-dir uv",
                            f"uv pip install --system --no-cache {args}"])
        elif op == "apt_install":
            pkgs = " ".join(shlex.quote(p) for p in step["packages"])
            apply = sh([f"apt-get update -q && apt-get install -y -q --no-install-recommends {pkgs}"
                        " && rm -rf /var/lib/apt/lists/*"])
        elif op == "run_commands":
            apply = sh(list(step["commands"]))
        elif op == "env":
            self.env.update(step["vars"])
            apply = lambda root, log: None  # noqa: E731 - it changes later steps and the containers
        elif op == "workdir":
            self.workdir = step["path"]
            apply = lambda root, log: os.makedirs(os.path.join(root, step["path"].lstrip("/")), exist_ok=True)  # noqa: E731
        elif op in ("add_local_dir", "add_local_file"):
            def apply(root: str, log: Log) -> None:
                if not os.path.exists(step["local_path"]):
                    raise BuildError(f"{op}: {step['local_path']} does not exist on this worker")
                _copy_into(root, step["local_path"], step["remote_path"])
        elif op == "add_local_python_source":
            def apply(root: str, log: Log) -> None:
                for module in step["modules"]:
                    if not os.path.exists(module["local_path"]):
                        raise BuildError(f"add_local_python_source: {module['local_path']} does not exist on this worker")
                    leaf = os.path.basename(module["local_path"].rstrip("/"))
                    _copy_into(root, module["local_path"], f"{step.get('remote_path', '/root')}/{leaf}")
        elif op == "run_function":
            def apply(root: str, log: Log) -> None:
                payload = os.path.join(root, ".gpufabric-run-function.pkl")
                with open(payload, "wb") as f:
                    f.write(base64.b64decode(step["pickled_b64"]))
                try:
                    code = ("import cloudpickle; f, a, k = cloudpickle.load(open('/.gpufabric-run-function.pkl', 'rb'));"
                            " f(*a, **k)")
                    run_in_root(root, ["python3", "-c", code], log, env={**_pip_env(), **env}, cwd=cwd,
                                binds=_build_binds())
                finally:
                    os.unlink(payload)
        else:
            raise BuildError(f"unknown image step {op!r}; the worker is older than the client")
        return BuildStep(key, apply, description=f"{op} {step.get('packages') or step.get('commands') or ''}".strip(),
                         force=bool(step.get("force_build")))


class ImageService:
    """A worker's images: one store, one chunk cache, builds serialized, mounts shared by digest."""

    def __init__(self, image_dir: Optional[str] = None, *, store_url: Optional[str] = None,
                 cache_max_bytes: int = 8 << 30, lazy: bool = True) -> None:
        self.image_dir = os.path.abspath(image_dir or default_image_dir())
        os.makedirs(self.image_dir, exist_ok=True)
        self.store = open_store(store_url or os.environ.get("GPUFABRIC_IMAGE_STORE")
                                or os.path.join(self.image_dir, "store"))
        self.builder = ImageBuilder(self.store, os.path.join(self.image_dir, "build"))
        self.cache_dir = os.path.join(self.image_dir, "cache")
        self.cache_max_bytes = cache_max_bytes
        self.lazy = lazy
        self._lock = threading.Lock()
        self._mounts: dict[str, tuple[MountedImage, int]] = {}
        self._mount_root = os.path.join(self.image_dir, "mnt", str(os.getpid()))

    def build(self, recipe_json: str, log: Log = lambda line: None, *, force: bool = False) -> BuiltImage:
        """Builds (or finds cached) the image of `recipe_json`; raises BuildError with the failing step's log."""
        recipe = _Recipe(json.loads(recipe_json))
        if self.lazy:  # FUSE imported once, while this builds, not on every mount (fs_lazy/_launcher.py)
            start_mount_launcher()
        # Builds of one machine take turns: two agents building the same base would both debootstrap.
        with open(os.path.join(self.image_dir, "build.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            result = self.builder.build(recipe.base_key, recipe.make_base, recipe.steps, log=log, force=force)
        return BuiltImage(result.manifest_digest, result.key, recipe.python_version, recipe.env, recipe.workdir)

    def acquire(self, manifest_digest: str) -> MountedImage:
        """The image mounted (lazily when FUSE works); shared by every container of this image."""
        with self._lock:
            mounted, users = self._mounts.get(manifest_digest, (None, 0))
            if mounted is None:
                mounted = mount_image(
                    self.store, manifest_digest, os.path.join(self._mount_root, manifest_digest[:16]),
                    cache_dir=self.cache_dir, cache_max_bytes=self.cache_max_bytes, lazy=self.lazy,
                    working_set=os.path.join(self.image_dir, "working-sets", manifest_digest + ".json"))
                if mounted.reason:
                    logger.warning("image %s: %s", manifest_digest[:12], mounted.reason)
            self._mounts[manifest_digest] = (mounted, users + 1)
            return mounted

    def release(self, manifest_digest: str) -> None:
        """One container of the image is done; the mount stays for the next (warm cache)."""
        with self._lock:
            mounted, users = self._mounts.get(manifest_digest, (None, 0))
            if mounted is not None:
                self._mounts[manifest_digest] = (mounted, max(users - 1, 0))

    def close(self) -> None:
        """Unmounts every image (the agent is stopping)."""
        with self._lock:
            mounts, self._mounts = list(self._mounts.values()), {}
        for mounted, _ in mounts:
            mounted.unmount()
        shutil.rmtree(self._mount_root, ignore_errors=True)
