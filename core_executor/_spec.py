"""Decorator arguments checked and turned into FunctionSpec and FunctionDefinition protos."""
from __future__ import annotations

import os
import re
import sys
from typing import Any, Callable, Mapping

from ._resources import Cron, Image, Period, Retries, Secret, Volume
from .exception import InvalidError

_GPU = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)(?::(\d+))?$")
KNOWN_CLOUDS = ("aws", "gcp", "oci", "local")


def parse_gpu(gpu: Any) -> list[tuple[str, int]]:
    """`"H100"`, `"H100:2"`, `["H100", "A100"]` or None -> [(type, count)] in priority order."""
    if gpu is None:
        return []
    items = [gpu] if isinstance(gpu, str) else gpu
    if not isinstance(items, (list, tuple)) or not items:
        raise InvalidError(
            f'gpu must be a string like "H100" or "H100:2", or a list of them in order of preference; got {gpu!r}'
        )
    out = []
    for item in items:
        match = _GPU.match(item.strip()) if isinstance(item, str) else None
        if match is None:
            raise InvalidError(f'gpu {item!r} is not a GPU spec; use a type and optional count like "A100-80GB:4"')
        kind, count = match.group(1), int(match.group(2) or 1)
        if count < 1:
            raise InvalidError(f"gpu {item!r} asks for {count} GPUs; ask for at least 1 (or leave gpu out)")
        out.append(("any" if kind.lower() == "any" else kind.upper(), count))
    return out


def _number(value: Any, name: str, *, minimum: float = 0.0, allow_zero: bool = False, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        kind = "an int" if integer else "a number"
        raise InvalidError(f"{name} must be {kind}, got {value!r}")
    if value < minimum or (value == minimum and not allow_zero):
        bound = f">= {minimum:g}" if allow_zero else f"> {minimum:g}"
        raise InvalidError(f"{name} must be {bound}, got {value!r}")
    return value


def _request(value: Any, name: str, *, integer: bool) -> Any:
    # Modal accepts (request, limit) tuples; the fabric reserves the request.
    if isinstance(value, tuple) and len(value) == 2:
        value = value[0]
    return _number(value, name, integer=integer)


def _string_list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in items):
        raise InvalidError(f"{name} must be a string or a list of strings, got {value!r}")
    return [v.strip() for v in items]


class FunctionOptions:
    """The checked arguments of `@app.function(...)`; `spec(name)` builds the proto."""

    def __init__(self, *, serialized: bool = False, nonpreemptible: bool = False):
        self.image: Image | None = None
        self.gpus: list[tuple[str, int]] = []
        self.cpu = 0.0
        self.memory_mb = 0
        self.timeout_s = 0.0
        self.startup_timeout_s = 0.0
        self.retries: Retries | None = None
        self.secrets: list[Secret] = []
        self.volumes: dict[str, Volume] = {}
        self.min_containers = 0
        self.max_containers = 0
        self.buffer_containers = 0
        self.scaledown_window_s = 0.0
        self.schedule: Cron | Period | None = None
        self.regions: list[str] = []
        self.clouds: list[str] = []
        self.nonpreemptible = nonpreemptible
        self.serialized = serialized
        self.env: dict[str, str] = {}
        self.max_concurrent_inputs = 0
        self.target_concurrent_inputs = 0
        self.batch_max_size = 0
        self.batch_wait_ms = 0
        self.web_config: dict | None = None  # set by a web endpoint decorator (core_executor._web)
        self.block_network = False  # block_network=True: containers without network (worker/_relay.py)
        self.enable_memory_snapshot = False  # warm starts forked from a prepared process (worker/_warm.py)

    def spec(self, name: str, raw_f: Callable | None = None) -> Any:
        """The FunctionSpec proto for a function called `name`."""
        from gpu_fabric.proto import common_pb2 as pb

        env = dict(self.image.env_vars) if self.image else {}
        env.update(self.env)
        spec = pb.FunctionSpec(
            name=name,
            cpu=float(self.cpu),
            memory_mb=int(self.memory_mb),
            gpus=[pb.GpuRequest(type=kind, count=count) for kind, count in self.gpus],
            timeout_s=float(self.timeout_s),
            startup_timeout_s=float(self.startup_timeout_s),
            min_containers=self.min_containers,
            max_containers=self.max_containers,
            buffer_containers=self.buffer_containers,
            scaledown_window_s=float(self.scaledown_window_s),
            max_concurrent_inputs=self.max_concurrent_inputs,
            target_concurrent_inputs=self.target_concurrent_inputs,
            batch_max_size=self.batch_max_size,
            batch_wait_ms=self.batch_wait_ms,
            volumes=[pb.VolumeMount(mount_path=p, volume_name=v.name, read_only=v.read_only) for p, v in self.volumes.items()],
            secret_names=[s.name for s in self.secrets if s.name],
            regions=self.regions,
            clouds=self.clouds,
            nonpreemptible=self.nonpreemptible,
            env=env,
            block_network=self.block_network,
            enable_memory_snapshot=self.enable_memory_snapshot,
        )
        if self.retries is not None:
            r = self.retries
            spec.retries.CopyFrom(
                pb.RetryPolicy(
                    max_retries=r.max_retries,
                    initial_delay_s=float(r.initial_delay),
                    backoff_coefficient=float(r.backoff_coefficient),
                    max_delay_s=float(r.max_delay),
                )
            )
        if self.image is not None:
            spec.image.CopyFrom(pb.ImageRef(recipe_json=self.image.recipe_json()))
            spec.python_version = self.image.python_version
        if isinstance(self.schedule, Cron):
            spec.schedule.CopyFrom(pb.Schedule(cron=self.schedule.cron_string, timezone=self.schedule.timezone))
        elif isinstance(self.schedule, Period):
            spec.schedule.CopyFrom(pb.Schedule(period_s=self.schedule.seconds))
        if self.web_config:  # a web endpoint: each request's response streams back as items
            from ._web import web_config_json

            spec.webhook_config_json, spec.is_generator = web_config_json(self.web_config), True
        if raw_f is not None:
            import inspect

            spec.is_generator = spec.is_generator or inspect.isgeneratorfunction(raw_f) or inspect.isasyncgenfunction(raw_f)
            spec.is_async = inspect.iscoroutinefunction(raw_f) or inspect.isasyncgenfunction(raw_f)
        return spec


def build_options(
    *,
    image: Any = None,
    gpu: Any = None,
    cpu: Any = None,
    memory: Any = None,
    timeout: Any = None,
    startup_timeout: Any = None,
    retries: Any = None,
    secrets: Any = (),
    volumes: Any = None,
    min_containers: Any = 0,
    max_containers: Any = None,
    buffer_containers: Any = 0,
    scaledown_window: Any = None,
    schedule: Any = None,
    region: Any = None,
    cloud: Any = None,
    nonpreemptible: bool = False,
    serialized: bool = False,
    env: Mapping[str, str] | None = None,
    max_concurrent_inputs: Any = None,
    target_concurrent_inputs: Any = None,
    block_network: bool = False,
    enable_memory_snapshot: bool = False,
) -> FunctionOptions:
    """Check every decorator argument and return the options; a bad one raises InvalidError."""
    opts = FunctionOptions(serialized=bool(serialized), nonpreemptible=bool(nonpreemptible))
    if not isinstance(block_network, bool):
        raise InvalidError(f"block_network must be True or False, got {block_network!r}")
    opts.block_network = block_network
    opts.enable_memory_snapshot = bool(enable_memory_snapshot)
    if image is not None and not isinstance(image, Image):
        raise InvalidError(f"image must be a fabric.Image (e.g. Image.debian_slim()), got {type(image).__name__}")
    opts.image = image
    opts.gpus = parse_gpu(gpu)
    if cpu is not None:
        opts.cpu = float(_request(cpu, "cpu", integer=False))
    if memory is not None:
        opts.memory_mb = int(_request(memory, "memory (MiB)", integer=True))
    if timeout is not None:
        opts.timeout_s = float(_number(timeout, "timeout (seconds)"))
    if startup_timeout is not None:
        opts.startup_timeout_s = float(_number(startup_timeout, "startup_timeout (seconds)"))
    if retries is not None:
        if isinstance(retries, Retries):
            opts.retries = retries
        elif isinstance(retries, int) and not isinstance(retries, bool):
            # Modal: an int means that many retries with a fixed 1 s delay.
            opts.retries = Retries(max_retries=retries, backoff_coefficient=1.0, initial_delay=1.0)
        else:
            raise InvalidError(f"retries must be an int or fabric.Retries(max_retries=...), got {retries!r}")
    secret_list = list(secrets) if isinstance(secrets, (list, tuple)) else None
    if secret_list is None or not all(isinstance(s, Secret) for s in secret_list):
        raise InvalidError("secrets must be a list of fabric.Secret, e.g. [Secret.from_name('hf-token')]")
    opts.secrets = secret_list
    opts.volumes = _check_volumes(volumes)
    opts.min_containers = _number(min_containers or 0, "min_containers", allow_zero=True, integer=True)
    opts.buffer_containers = _number(buffer_containers or 0, "buffer_containers", allow_zero=True, integer=True)
    if max_containers is not None:
        opts.max_containers = _number(max_containers, "max_containers", integer=True)
        if opts.min_containers > opts.max_containers:
            raise InvalidError(
                f"min_containers ({opts.min_containers}) is above max_containers ({opts.max_containers}); lower it or raise max_containers"
            )
    if scaledown_window is not None:
        opts.scaledown_window_s = float(_number(scaledown_window, "scaledown_window (seconds)"))
    if schedule is not None and not isinstance(schedule, (Cron, Period)):
        raise InvalidError("schedule must be fabric.Cron('0 * * * *') or fabric.Period(hours=1)")
    opts.schedule = schedule
    opts.regions = _string_list(region, "region")
    opts.clouds = [c.lower() for c in _string_list(cloud, "cloud")]
    for c in opts.clouds:
        if c not in KNOWN_CLOUDS:
            raise InvalidError(f"cloud {c!r} is unknown; use one of {', '.join(KNOWN_CLOUDS)}")
    if env is not None:
        if not isinstance(env, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise InvalidError("env must be a dict of str to str")
        opts.env = dict(env)
    if max_concurrent_inputs is not None:
        opts.max_concurrent_inputs = _number(max_concurrent_inputs, "max_concurrent_inputs", integer=True)
    if target_concurrent_inputs is not None:
        opts.target_concurrent_inputs = _number(target_concurrent_inputs, "target_concurrent_inputs", integer=True)
    return opts


# Modal's old decorator arguments and the ones that replaced them.
DEPRECATED_OPTIONS = {
    "keep_warm": "min_containers",
    "concurrency_limit": "max_containers",
    "container_idle_timeout": "scaledown_window",
    "allow_concurrent_inputs": "max_concurrent_inputs",
}


def take_deprecated(options: dict[str, Any], deprecated: dict[str, Any], *, stacklevel: int = 3) -> None:
    """Move Modal's deprecated option names in `deprecated` onto their new names in `options`.

    Warns (DeprecationWarning) naming the new one; giving both the old and the new is an error.
    """
    import warnings

    for old, value in deprecated.items():
        if value is None:
            continue
        new = DEPRECATED_OPTIONS[old]
        hint = "@fabric.concurrent(max_inputs=...)" if old == "allow_concurrent_inputs" else f"{new}="
        if options.get(new) not in (None, 0):
            raise InvalidError(f"{old}= is the deprecated name of {new}=; give only {new}=")
        warnings.warn(f"{old}= is deprecated; use {hint} instead", DeprecationWarning, stacklevel=stacklevel)
        options[new] = value


def _check_volumes(volumes: Any) -> dict[str, Volume]:
    if volumes is None:
        return {}
    if not isinstance(volumes, Mapping):
        raise InvalidError("volumes must be a dict of mount path to Volume, e.g. {'/data': Volume.from_name('data')}")
    out: dict[str, Volume] = {}
    for path, vol in volumes.items():
        if not isinstance(vol, Volume):
            raise InvalidError(f"volumes[{path!r}] must be a fabric.Volume, got {type(vol).__name__}")
        if not isinstance(path, str) or not path.startswith("/") or os.path.normpath(path) == "/":
            raise InvalidError(f"volume mount path {path!r} must be an absolute path other than '/', e.g. '/data'")
        norm = os.path.normpath(path)
        if norm in out:
            raise InvalidError(f"two volumes are mounted at {norm}")
        out[norm] = vol
    return out


# ---- definitions: how the function's code reaches a container ----


def module_name_of(module: Any) -> str:
    """The name a container imports the module under (`__main__` becomes the file's stem)."""
    name = module.__name__
    if name == "__main__":
        path = getattr(module, "__file__", None)
        if path:
            return os.path.splitext(os.path.basename(path))[0]
    return name


def _import_root(path: str, module_name: str) -> str:
    # "pkg.sub.mod" in /x/pkg/sub/mod.py -> /x; a package __init__ counts as its directory.
    root = os.path.dirname(path)
    depth = module_name.count(".")
    if os.path.basename(path) == "__init__.py":
        depth += 1
    for _ in range(depth):
        root = os.path.dirname(root)
    return root


def is_file_definable(raw_f: Callable) -> bool:
    """True when the function can be imported in a container from its file (top-level, in a file)."""
    qualname = getattr(raw_f, "__qualname__", "")
    if "<locals>" in qualname or "<lambda>" in qualname:
        return False
    module = sys.modules.get(getattr(raw_f, "__module__", None) or "")
    path = getattr(module, "__file__", None)
    return bool(path) and path.endswith(".py") and os.path.exists(path)


def build_definition(raw_f: Callable, *, serialized: bool) -> Any:
    """The FunctionDefinition proto: KIND_FILE for top-level functions, else KIND_SERIALIZED."""
    from gpu_fabric.proto import common_pb2 as pb

    from . import _serialization

    version = _serialization.python_version()
    if not serialized and is_file_definable(raw_f):
        module = sys.modules[raw_f.__module__]
        path = os.path.abspath(module.__file__)
        module_name = module_name_of(module)
        with open(path, encoding="utf-8") as fh:
            source_text = fh.read()
        return pb.FunctionDefinition(
            kind=pb.FunctionDefinition.KIND_FILE,
            module_name=module_name,
            qualname=raw_f.__qualname__,
            source_path=path,
            source_text=source_text,
            sys_path=[_import_root(path, module_name)],
            python_version=version,
        )
    return pb.FunctionDefinition(
        kind=pb.FunctionDefinition.KIND_SERIALIZED,
        module_name=getattr(raw_f, "__module__", "") or "",
        qualname=getattr(raw_f, "__qualname__", "") or "",
        pickled_function=_pickle_by_value(raw_f),
        python_version=version,
    )


def _pickle_by_value(raw_f: Callable) -> bytes:
    import cloudpickle

    from . import _serialization
    from .exception import SerializationError

    module = sys.modules.get(getattr(raw_f, "__module__", None) or "")
    # A function of an importable module pickles by reference; the container may not have the
    # module, so ship its code by value.
    by_value = module is not None and module.__name__ not in ("__main__", "builtins")
    registered = False
    try:
        if by_value:
            try:
                cloudpickle.register_pickle_by_value(module)
                registered = True
            except ValueError:
                pass
        return _serialization.serialize(raw_f)
    except Exception as exc:
        raise SerializationError(
            f"function {getattr(raw_f, '__qualname__', raw_f)!r} cannot be pickled for serialized=True: {exc}; "
            "define it at module top level in a file instead"
        ) from exc
    finally:
        if registered:
            cloudpickle.unregister_pickle_by_value(module)
