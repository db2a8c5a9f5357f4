"""What a function asks for besides code: Image, Volume, Secret, Retries, Cron and Period."""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Sequence

from .exception import InvalidError

__all__ = ["Image", "Volume", "Secret", "Retries", "Cron", "Period"]

_PYTHON_VERSION = re.compile(r"^3\.\d{1,2}$")


def _strings(values: Iterable[Any], what: str) -> list[str]:
    out = []
    for value in values:
        if isinstance(value, (list, tuple)):
            out.extend(_strings(value, what))
        elif isinstance(value, str):
            if value.strip():
                out.append(value)
        else:
            raise InvalidError(f"{what} must be strings, got {type(value).__name__} {value!r}")
    return out


def _tree_digest(path: str) -> str:
    """A content hash of a file or directory tree (names, modes, bytes): a changed file changes the step."""
    import hashlib
    import os
    import stat

    if _in_container():
        return ""
    digest = hashlib.sha256()

    def add_file(rel: str, full: str) -> None:
        st = os.lstat(full)
        digest.update(f"{rel}\0{stat.S_IMODE(st.st_mode):o}\0".encode())
        if stat.S_ISLNK(st.st_mode):
            digest.update(os.readlink(full).encode())
        elif stat.S_ISREG(st.st_mode):
            with open(full, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)

    if os.path.isdir(path):
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                if not name.endswith(".pyc"):
                    full = os.path.join(dirpath, name)
                    add_file(os.path.relpath(full, path), full)
    else:
        add_file(os.path.basename(path), path)
    return digest.hexdigest()


def _in_container() -> bool:
    # Inside a container the module defining the image is imported again, without the caller's
    # files: local paths are neither checked nor hashed there (the image is already built).
    from .config import is_container

    return is_container()


def _local_path(local_path: Any, what: str) -> str:
    import os

    if not isinstance(local_path, (str, os.PathLike)):
        raise InvalidError(f"{what} takes a local path, got {local_path!r}")
    path = os.path.abspath(os.path.expanduser(os.fspath(local_path)))
    if not os.path.exists(path) and not _in_container():
        raise InvalidError(f"{what}: local path {os.fspath(local_path)!r} does not exist")
    return path


def _remote_path(remote_path: Any, what: str) -> str:
    if not isinstance(remote_path, str) or not remote_path.startswith("/"):
        raise InvalidError(f"{what} needs an absolute remote_path in the image, got {remote_path!r}")
    return remote_path


def _force_env() -> bool:
    import os

    return os.environ.get("GPUFABRIC_FORCE_BUILD", "") not in ("", "0")


class Image:
    """A container image recipe, built on a worker step by step and cached per step.

    Each method returns a new Image, so a base image can be shared:
    `Image.debian_slim(python_version="3.11").pip_install("numpy").env({"A": "1"})`.
    Every step is keyed by a hash of itself and everything before it, so changing one step
    rebuilds only from there; `force_build=True` (or GPUFABRIC_FORCE_BUILD=1) rebuilds anyway.
    """

    def __init__(self, base: dict[str, Any], steps: Sequence[dict[str, Any]] = ()):
        self._base = dict(base)
        self._steps = tuple(dict(step) for step in steps)

    @classmethod
    def debian_slim(cls, python_version: str | None = None, force_build: bool = False) -> "Image":
        """Debian with the given Python ("3.11"; default: the caller's own minor version)."""
        import sys

        if python_version is not None and not _PYTHON_VERSION.match(str(python_version)):
            raise InvalidError(f'python_version must look like "3.11", got {python_version!r}')
        base: dict[str, Any] = {"kind": "debian_slim",
                                "python_version": python_version or "%d.%d" % sys.version_info[:2]}
        if force_build or _force_env():
            base["force_build"] = True
        return cls(base)

    @classmethod
    def from_registry(cls, tag: str, *, add_python: str | None = None) -> "Image":
        """An image from a container registry (`tag` like "nvidia/cuda:12.4.1-runtime-ubuntu22.04")."""
        if not isinstance(tag, str) or not tag.strip():
            raise InvalidError("Image.from_registry needs an image tag like 'python:3.11-slim'")
        if add_python is not None and not _PYTHON_VERSION.match(str(add_python)):
            raise InvalidError(f'add_python must look like "3.11", got {add_python!r}')
        return cls({"kind": "registry", "tag": tag, "python_version": add_python or ""})

    def _with(self, step: dict[str, Any], force_build: bool = False) -> "Image":
        if force_build or _force_env():
            step["force_build"] = True
        return Image(self._base, self._steps + (step,))

    def _install_step(self, op: str, packages: tuple, *, find_links: str | None, index_url: str | None,
                      extra_index_url: str | None, pre: bool, extra_options: str) -> dict[str, Any]:
        step: dict[str, Any] = {"op": op, "packages": _strings(packages, f"{op} packages")}
        for name, value in (("find_links", find_links), ("index_url", index_url),
                            ("extra_index_url", extra_index_url), ("extra_options", extra_options)):
            if value:
                if not isinstance(value, str):
                    raise InvalidError(f"{op} {name} must be a string, got {value!r}")
                step[name] = value
        if pre:
            step["pre"] = True
        if step.get("find_links"):
            step["extra_options"] = f"{step.get('extra_options', '')} --find-links {step['find_links']}".strip()
        return step

    def pip_install(self, *packages: str | list[str], find_links: str | None = None, index_url: str | None = None,
                    extra_index_url: str | None = None, pre: bool = False, extra_options: str = "",
                    force_build: bool = False) -> "Image":
        """Install Python packages with pip."""
        return self._with(self._install_step("pip_install", packages, find_links=find_links, index_url=index_url,
                                             extra_index_url=extra_index_url, pre=pre, extra_options=extra_options),
                          force_build)

    def uv_pip_install(self, *packages: str | list[str], find_links: str | None = None, index_url: str | None = None,
                       extra_index_url: str | None = None, pre: bool = False, extra_options: str = "",
                       force_build: bool = False) -> "Image":
        """Install Python packages with uv (installed into the image first when missing)."""
        return self._with(self._install_step("uv_pip_install", packages, find_links=find_links, index_url=index_url,
                                             extra_index_url=extra_index_url, pre=pre, extra_options=extra_options),
                          force_build)

    def apt_install(self, *packages: str | list[str], force_build: bool = False) -> "Image":
        """Install Debian packages with apt-get."""
        return self._with({"op": "apt_install", "packages": _strings(packages, "apt_install packages")}, force_build)

    def run_commands(self, *commands: str | list[str], force_build: bool = False) -> "Image":
        """Run shell commands in the image (each with `sh -c`, in the image's workdir and env)."""
        return self._with({"op": "run_commands", "commands": _strings(commands, "run_commands commands")}, force_build)

    def env(self, vars: Mapping[str, str]) -> "Image":  # noqa: A002 - Modal's name
        """Set environment variables in the image."""
        if not isinstance(vars, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in vars.items()):
            raise InvalidError("Image.env takes a dict of str to str, e.g. {'HF_HOME': '/cache'}")
        return self._with({"op": "env", "vars": dict(vars)})

    def workdir(self, path: str) -> "Image":
        """Set the working directory of later build steps and of the image's containers."""
        if not isinstance(path, str) or not path.startswith("/"):
            raise InvalidError(f"Image.workdir needs an absolute path, got {path!r}")
        return self._with({"op": "workdir", "path": path})

    def add_local_dir(self, local_path: Any, remote_path: str, *, copy: bool = True) -> "Image":
        """Copy a local directory into the image at `remote_path` (keyed by its content)."""
        path = _local_path(local_path, "Image.add_local_dir")
        import os

        if not os.path.isdir(path) and not _in_container():
            raise InvalidError(f"Image.add_local_dir: {os.fspath(local_path)!r} is not a directory")
        return self._with({"op": "add_local_dir", "local_path": path,
                           "remote_path": _remote_path(remote_path, "Image.add_local_dir"),
                           "content_sha256": _tree_digest(path)})

    def add_local_file(self, local_path: Any, remote_path: str, *, copy: bool = True) -> "Image":
        """Copy a local file into the image at `remote_path` (a path ending in "/" keeps the file name)."""
        import os

        path = _local_path(local_path, "Image.add_local_file")
        if not os.path.isfile(path) and not _in_container():
            raise InvalidError(f"Image.add_local_file: {os.fspath(local_path)!r} is not a file")
        remote = _remote_path(remote_path, "Image.add_local_file")
        if remote.endswith("/"):
            remote += os.path.basename(path)
        return self._with({"op": "add_local_file", "local_path": path, "remote_path": remote,
                           "content_sha256": _tree_digest(path)})

    def add_local_python_source(self, *modules: str, copy: bool = True) -> "Image":
        """Copy local Python modules or packages (by import name, not imported) into /root."""
        import importlib.util
        import os

        entries = []
        for name in _strings(modules, "add_local_python_source modules"):
            if _in_container():
                entries.append({"name": name, "local_path": "", "content_sha256": ""})
                continue
            spec = importlib.util.find_spec(name)
            if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
                raise InvalidError(f"add_local_python_source: module {name!r} is not a local Python source module")
            path = os.path.dirname(spec.origin) if spec.submodule_search_locations else spec.origin
            entries.append({"name": name, "local_path": path, "content_sha256": _tree_digest(path)})
        return self._with({"op": "add_local_python_source", "modules": entries, "remote_path": "/root"})

    def run_function(self, raw_f: Any, *, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
                     force_build: bool = False) -> "Image":
        """Run a Python function inside the image as a build step (e.g. to download model weights)."""
        import base64
        import hashlib
        import inspect
        import sys

        import cloudpickle

        if not callable(raw_f):
            raise InvalidError(f"Image.run_function takes a function, got {raw_f!r}")
        raw_f = getattr(raw_f, "get_raw_f", lambda: raw_f)()
        if _in_container():
            return self._with({"op": "run_function", "name": getattr(raw_f, "__qualname__", "function"),
                               "source_sha256": "", "pickled_b64": ""})
        module = sys.modules.get(getattr(raw_f, "__module__", ""), None)
        # By value: the image has none of the caller's modules to import it from.
        by_value = module is not None and module.__name__ != "__main__"
        if by_value:
            cloudpickle.register_pickle_by_value(module)
        try:
            payload = cloudpickle.dumps((raw_f, tuple(args), dict(kwargs or {})))
        finally:
            if by_value:
                cloudpickle.unregister_pickle_by_value(module)
        try:
            source = inspect.getsource(raw_f)
        except (OSError, TypeError):
            source = payload.hex()
        key = hashlib.sha256(f"{source}\0{args!r}\0{sorted((kwargs or {}).items())!r}".encode()).hexdigest()
        return self._with({"op": "run_function", "name": getattr(raw_f, "__qualname__", "function"),
                           "source_sha256": key, "pickled_b64": base64.b64encode(payload).decode()}, force_build)

    @property
    def python_version(self) -> str:
        """The Python "major.minor" the image runs, or "" for the fabric's default."""
        return self._base.get("python_version", "")

    @property
    def env_vars(self) -> dict[str, str]:
        """Every environment variable the image's `env` steps set."""
        out: dict[str, str] = {}
        for step in self._steps:
            if step["op"] == "env":
                out.update(step["vars"])
        return out

    def recipe(self) -> dict[str, Any]:
        """The recipe as plain data."""
        return {"base": dict(self._base), "steps": [dict(step) for step in self._steps]}

    def recipe_json(self) -> str:
        """The recipe as canonical JSON (stored in FunctionSpec.image.recipe_json)."""
        import json

        return json.dumps(self.recipe(), sort_keys=True, separators=(",", ":"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and self.recipe() == other.recipe()

    def __hash__(self) -> int:
        return hash(self.recipe_json())

    def __repr__(self) -> str:
        return f"Image({self.recipe_json()})"


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidError(
            f"{what} name must be 1-64 letters, digits, '.', '_' or '-' starting with a letter or digit; got {name!r}"
        )
    return name


class _Record:
    """Small immutable value holder: equality, hash and repr from `_fields`."""

    _fields: tuple[str, ...] = ()

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._values() == self._values()

    def __hash__(self) -> int:
        return hash((type(self).__name__,) + tuple(
            tuple(sorted(v.items())) if isinstance(v, dict) else v for v in self._values()
        ))

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({args})"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Retries(_Record):
    """How often, and how far apart, a failed input is retried."""

    _fields = ("max_retries", "backoff_coefficient", "initial_delay", "max_delay")

    def __init__(self, max_retries: int, backoff_coefficient: float = 2.0, initial_delay: float = 1.0, max_delay: float = 60.0):
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or not 0 <= max_retries <= 100:
            raise InvalidError(f"Retries.max_retries must be an int from 0 to 100, got {max_retries!r}")
        for name, value in (("backoff_coefficient", backoff_coefficient), ("initial_delay", initial_delay), ("max_delay", max_delay)):
            if not _is_number(value):
                raise InvalidError(f"Retries.{name} must be a number, got {value!r}")
        if not 1.0 <= backoff_coefficient <= 10.0:
            raise InvalidError(f"Retries.backoff_coefficient must be from 1.0 to 10.0, got {backoff_coefficient!r}")
        if not 0.0 <= initial_delay <= 3600.0:
            raise InvalidError(f"Retries.initial_delay must be from 0 to 3600 seconds, got {initial_delay!r}")
        if not 0.0 <= max_delay <= 3600.0 or max_delay < initial_delay:
            raise InvalidError(
                f"Retries.max_delay must be from initial_delay ({initial_delay}) to 3600 seconds, got {max_delay!r}"
            )
        self.max_retries = max_retries
        self.backoff_coefficient = float(backoff_coefficient)
        self.initial_delay = float(initial_delay)
        self.max_delay = float(max_delay)




class Cron(_Record):
    """A cron schedule: `Cron("0 9 * * 1-5", timezone="Europe/Paris")` runs weekdays at 9:00."""

    _fields = ("cron_string", "timezone")

    def __init__(self, cron_string: str, timezone: str = "UTC"):
        fields = cron_string.split() if isinstance(cron_string, str) else []
        if len(fields) != 5:
            raise InvalidError(
                f"Cron needs a five-field expression 'minute hour day-of-month month day-of-week', got {cron_string!r}"
            )
        for field, (name, low, high, names) in zip(fields, _CRON_FIELDS):
            problem = _cron_field_problem(field, low, high, names)
            if problem:
                raise InvalidError(f"Cron {cron_string!r}: the {name} field {field!r} {problem}")
        if not isinstance(timezone, str) or not timezone:
            raise InvalidError(f"Cron timezone must be an IANA name like 'UTC', got {timezone!r}")
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidError(f"Cron timezone {timezone!r} is unknown; use an IANA name like 'Europe/Paris'") from None
        self.cron_string = " ".join(fields)
        self.timezone = timezone


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
)


def _cron_field_problem(field: str, low: int, high: int, names: tuple) -> str:
    """Why one cron field is invalid ("" when it is fine)."""

    def value(text: str) -> int | None:
        if text.isdigit():
            return int(text)
        lowered = text.lower()
        if lowered in names:
            return names.index(lowered) + (1 if names is _MONTHS else 0)
        return None

    for part in field.split(","):
        body, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            return f"has a bad step {step!r} (use a positive number, e.g. */5)"
        if body == "*":
            continue
        ends = body.split("-")
        if len(ends) > 2 or not all(ends):
            return f"has a bad range {body!r}"
        numbers = [value(end) for end in ends]
        if any(n is None for n in numbers):
            return f"has {body!r}, which is not a number" + (" or a name" if names else "")
        if any(not low <= n <= high for n in numbers):
            return f"is out of range: allowed values are {low}-{high}"
        if len(numbers) == 2 and numbers[0] > numbers[1]:
            return f"has a range that runs backwards: {body!r}"
    return ""


class Period:
    """A fixed-interval schedule: `Period(hours=1)` or `Period(seconds=30)`."""

    def __init__(self, *, days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0):
        for name, value in (("days", days), ("hours", hours), ("minutes", minutes), ("seconds", seconds)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InvalidError(f"Period {name} must be a non-negative number, got {value!r}")
        self.seconds = float(days) * 86400 + float(hours) * 3600 + float(minutes) * 60 + float(seconds)
        if self.seconds <= 0:
            raise InvalidError("Period needs a positive interval, e.g. Period(minutes=5)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Period) and other.seconds == self.seconds

    def __hash__(self) -> int:
        return hash(self.seconds)

    def __repr__(self) -> str:
        return f"Period(seconds={self.seconds:g})"


# Secret lives in its own module to keep this one small; re-exported here, where it always was.
from ._secret import Secret, attach_secrets  # noqa: E402,F401
# Volume lives in its own module (storage, mounts, commits); re-exported here, where it always was.
from ._volume import Volume  # noqa: E402,F401
