"""App: a named group of functions, run ephemerally (`with app.run():`) or deployed."""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any, Callable, Iterator

from . import _client
from ._functions import Function
from ._partial import PartialFunction
from ._resources import Image, Secret, Volume, attach_secrets
from ._spec import build_definition, build_options, take_deprecated
from .config import Config, is_container
from .exception import InvalidError, NotFoundError

__all__ = ["App", "LocalEntrypoint", "Stub"]

_APP_KIND_EPHEMERAL, _APP_KIND_DEPLOYED = 1, 2
DEFAULT_HEARTBEAT_TIMEOUT_S = 30.0


class LocalEntrypoint:
    """A function run on the caller's machine by `gpufabric run` (inside the running app)."""

    def __init__(self, raw_f: Callable, app: "App", name: str):
        self.raw_f = raw_f
        self.app = app
        self.name = name
        self.__doc__ = raw_f.__doc__
        self.__name__ = getattr(raw_f, "__name__", name)
        self.__wrapped__ = raw_f

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.raw_f(*args, **kwargs)

    def __repr__(self) -> str:
        return f"LocalEntrypoint({self.name})"


def _default_app_name() -> str:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv and sys.argv[0] else "")
    stem = os.path.splitext(os.path.basename(path))[0] if path else ""
    return stem if stem and not stem.startswith("<") and stem != "-c" else "app"


class _SharedEmbedded:
    """One embedded fabric per process, shared by apps running at the same time (one data dir)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fabric: Any = None
        self._client: Any = None
        self._fabric_pid = 0
        self._users = 0

    def acquire(self, data_dir: str) -> "_client.Client":
        with self._lock:
            if self._fabric is None or not self._fabric.running or self._fabric_pid != os.getpid():
                from ._embedded import EmbeddedFabric

                self._fabric = EmbeddedFabric(data_dir).start()
                self._fabric_pid = os.getpid()
                self._client = _client.get_client(self._fabric.url, self._fabric.token)
                self._users = 0
            self._users += 1
            return self._client

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users > 0 or self._fabric is None:
                return
            fabric, client, self._fabric, self._client = self._fabric, self._client, None, None
        _client.forget_client(client)
        fabric.stop()


_embedded = _SharedEmbedded()


def _app_from_ref(name: str | None, app_id: str) -> "App":
    app = App(name)
    app._app_id = app_id
    return app


class _Heartbeat:
    """Keeps an ephemeral app alive: AppHeartbeat every heartbeat_timeout_s / 3."""

    def __init__(self, client: "_client.Client", app_id: str, interval_s: float):
        self._client = client
        self._app_id = app_id
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"gpufabric-heartbeat-{app_id}", daemon=True)

    def start(self) -> "_Heartbeat":
        self._thread.start()
        return self

    def _run(self) -> None:
        req = self._client.pb.AppHeartbeatRequest(app_id=self._app_id)
        while not self._stop.wait(self._interval_s):
            try:
                self._client.call("AppHeartbeat", req, timeout=max(5.0, self._interval_s))
            except NotFoundError:
                print(f"[fabric] app {self._app_id} was stopped by the fabric", file=sys.stderr)
                return
            except Exception:  # noqa: BLE001 - keep trying; the fabric stops the app if we can't
                continue

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)


class App:
    """A group of functions that run together: `app = App("example")`, then `@app.function()`.

    `image`, `secrets` and `volumes` given here are the defaults of every function of the app.
    """

    def __init__(self, name: str | None = None, *, image: Image | None = None, secrets: list[Secret] | tuple = (),
                 volumes: dict[str, Volume] | None = None, description: str | None = None):
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise InvalidError(f"App name must be a non-empty string, got {name!r}")
        self.name = name
        self.description = description or ""
        self._image = image
        self._secrets = list(secrets)
        self._volumes = dict(volumes or {})
        build_options(image=image, secrets=self._secrets, volumes=self._volumes)  # fail early on bad defaults
        self._functions: dict[str, Function] = {}
        self._classes: dict[str, Any] = {}  # name -> Cls
        self._entrypoints: dict[str, LocalEntrypoint] = {}
        self._app_id = ""
        self._running = False

    @property
    def app_id(self) -> str:
        """The fabric's id of the running or deployed app ("" otherwise)."""
        return self._app_id

    @property
    def registered_functions(self) -> dict[str, Function]:
        """The app's functions by name."""
        return dict(self._functions)

    @property
    def registered_classes(self) -> dict[str, Any]:
        """The app's classes (Cls) by name."""
        return dict(self._classes)

    def _service_functions(self) -> dict[str, Function]:
        # What the fabric runs: functions, and one function per class.
        out = dict(self._functions)
        out.update({tag: cls._class_function for tag, cls in self._classes.items()})
        return out

    @property
    def registered_entrypoints(self) -> dict[str, LocalEntrypoint]:
        """The app's local entrypoints by name."""
        return dict(self._entrypoints)

    def __reduce__(self):
        return (_app_from_ref, (self.name, self._app_id))

    def __repr__(self) -> str:
        return f"App({self.name!r})"

    # ---- decorators ----

    def _options(self, image: Any, secrets: Any, volumes: Any, deprecated: dict[str, Any], **kwargs: Any) -> Any:
        take_deprecated(kwargs, deprecated, stacklevel=4)
        return build_options(
            image=image if image is not None else self._image,
            secrets=list(self._secrets) + list(secrets or ()),
            volumes={**self._volumes, **(volumes or {})},
            **kwargs,
        )

    def function(self, _warn_parentheses_missing: Any = None, *, image: Image | None = None, gpu: Any = None,
                 cpu: Any = None, memory: Any = None, timeout: Any = None, startup_timeout: Any = None,
                 retries: Any = None, secrets: Any = (), volumes: Any = None, min_containers: Any = 0,
                 max_containers: Any = None, buffer_containers: Any = 0, scaledown_window: Any = None,
                 schedule: Any = None, region: Any = None, cloud: Any = None, nonpreemptible: bool = False,
                 serialized: bool = False, name: str | None = None, env: dict[str, str] | None = None,
                 max_concurrent_inputs: Any = None, keep_warm: Any = None, concurrency_limit: Any = None,
                 container_idle_timeout: Any = None, allow_concurrent_inputs: Any = None,
                 block_network: bool = False, enable_memory_snapshot: bool = False) -> Any:
        """Register a function to run in the fabric's containers.

        gpu: "H100", "H100:2", or a list in order of preference (["H100", "A100"]).
        cpu (cores), memory (MiB), timeout (seconds per input), startup_timeout (seconds to start
        a container), retries (int or Retries), secrets, volumes ({"/path": Volume}),
        min/max/buffer_containers, scaledown_window (s), schedule (Cron or Period), region, cloud,
        nonpreemptible, serialized (ship the code pickled by value instead of importing its file
        in the container), block_network (its containers get no network; they still reach the
        fabric), enable_memory_snapshot (new containers are forked from a process that already
        imported the code: docs/volumes.md, "Warm starts").
        Put @fabric.concurrent(...) or @fabric.batched(...) below it.
        Modal's old names (keep_warm, concurrency_limit, container_idle_timeout,
        allow_concurrent_inputs) still work, with a DeprecationWarning naming the new one.
        """
        if isinstance(_warn_parentheses_missing, (Function, LocalEntrypoint)):
            raise InvalidError("a function can be registered only once; remove the second decorator")
        if _warn_parentheses_missing is not None and not callable(_warn_parentheses_missing):
            raise InvalidError("@app.function takes keyword arguments only, e.g. @app.function(gpu='H100')")
        options = self._options(
            image, secrets, volumes,
            dict(keep_warm=keep_warm, concurrency_limit=concurrency_limit, container_idle_timeout=container_idle_timeout,
                 allow_concurrent_inputs=allow_concurrent_inputs),
            gpu=gpu, cpu=cpu, memory=memory, timeout=timeout, startup_timeout=startup_timeout, retries=retries,
            min_containers=min_containers, max_containers=max_containers, buffer_containers=buffer_containers,
            scaledown_window=scaledown_window, schedule=schedule, region=region, cloud=cloud,
            nonpreemptible=nonpreemptible, serialized=serialized, env=env,
            max_concurrent_inputs=max_concurrent_inputs, block_network=block_network,
            enable_memory_snapshot=enable_memory_snapshot,
        )  # fmt: skip

        def decorate(raw_f: Callable) -> Function:
            if isinstance(raw_f, (Function, LocalEntrypoint)):
                raise InvalidError("a function can be registered only once; remove the second decorator")
            if isinstance(raw_f, PartialFunction):
                raw_f = self._apply_partial(raw_f, options)
            if isinstance(raw_f, type):
                raise InvalidError(f"@app.function decorates a function; register the class {raw_f.__name__} with @app.cls()")
            if not callable(raw_f):
                raise InvalidError(f"@app.function decorates a function, not {type(raw_f).__name__}")
            tag = name or getattr(raw_f, "__qualname__", None) or getattr(raw_f, "__name__", "")
            if "<locals>" in tag:
                tag = raw_f.__name__
            if not tag or tag == "<lambda>":
                raise InvalidError("give a lambda a name: @app.function(name='...')")
            self._check_free(tag)
            fn = Function(raw_f, tag, self, options)
            self._functions[tag] = fn
            return fn

        if _warn_parentheses_missing is not None:
            return decorate(_warn_parentheses_missing)
        return decorate

    @staticmethod
    def _apply_partial(partial: PartialFunction, options: Any) -> Callable:
        allowed = {"concurrent", "batched"} | ({"web", "method"} if partial.web_config else set())  # web: core_executor._web
        options.web_config = partial.web_config
        if partial.flags - allowed:
            flag = sorted(partial.flags - allowed)[0]
            raise InvalidError(f"@fabric.{flag}() marks a method of an @app.cls class, not a function")
        if partial.max_concurrent_inputs:
            if options.max_concurrent_inputs:
                raise InvalidError("give the concurrency once: @fabric.concurrent(max_inputs=...) or max_concurrent_inputs=")
            options.max_concurrent_inputs = partial.max_concurrent_inputs
            options.target_concurrent_inputs = partial.target_concurrent_inputs
        if partial.batch_max_size:
            if options.max_concurrent_inputs:
                raise InvalidError("a function is either @fabric.batched or concurrent, not both")
            options.batch_max_size, options.batch_wait_ms = partial.batch_max_size, partial.batch_wait_ms
        return partial.raw_f

    def _check_free(self, tag: str) -> None:
        if tag in self._classes:
            raise InvalidError(f"the app already has a class named {tag!r}; give one of them another name")

    def cls(self, _warn_parentheses_missing: Any = None, *, image: Image | None = None, gpu: Any = None,
            cpu: Any = None, memory: Any = None, timeout: Any = None, startup_timeout: Any = None,
            retries: Any = None, secrets: Any = (), volumes: Any = None, min_containers: Any = 0,
            max_containers: Any = None, buffer_containers: Any = 0, scaledown_window: Any = None,
            region: Any = None, cloud: Any = None, nonpreemptible: bool = False, serialized: bool = False,
            name: str | None = None, env: dict[str, str] | None = None, max_concurrent_inputs: Any = None,
            enable_memory_snapshot: bool = False, keep_warm: Any = None, concurrency_limit: Any = None,
            container_idle_timeout: Any = None, allow_concurrent_inputs: Any = None,
            block_network: bool = False) -> Any:
        """Register a class whose @fabric.method()s run in the fabric's containers.

        Takes the options of @app.function. A container makes one instance (with the caller's
        `fabric.parameter()` values), runs its @fabric.enter() methods once, serves method calls,
        and runs its @fabric.exit() methods when it shuts down.
        """
        if _warn_parentheses_missing is not None:
            raise InvalidError("use @app.cls() with parentheses")
        options = self._options(
            image, secrets, volumes,
            dict(keep_warm=keep_warm, concurrency_limit=concurrency_limit, container_idle_timeout=container_idle_timeout,
                 allow_concurrent_inputs=allow_concurrent_inputs),
            gpu=gpu, cpu=cpu, memory=memory, timeout=timeout, startup_timeout=startup_timeout, retries=retries,
            min_containers=min_containers, max_containers=max_containers, buffer_containers=buffer_containers,
            scaledown_window=scaledown_window, region=region, cloud=cloud, nonpreemptible=nonpreemptible,
            serialized=serialized, env=env, max_concurrent_inputs=max_concurrent_inputs,
            block_network=block_network, enable_memory_snapshot=enable_memory_snapshot,
        )  # fmt: skip

        def decorate(user_cls: Any) -> Any:
            from ._cls import make_cls
            from ._partial import PartialFunction, marked

            # @enter(snap=True) asks for what enable_memory_snapshot gives: setup done once, before the fork.
            raw = user_cls.raw_f if isinstance(user_cls, PartialFunction) else user_cls
            if isinstance(raw, type) and any(p.snap for p in marked(raw, "enter").values()):
                options.enable_memory_snapshot = True

            cls = make_cls(user_cls, self, options, name)
            tag = cls._class_function.tag
            if tag in self._functions:
                raise InvalidError(f"the app already has a function named {tag!r}; give the class another name")
            self._classes[tag] = cls
            return cls

        return decorate

    def local_entrypoint(self, _warn_parentheses_missing: Any = None, *, name: str | None = None) -> Any:
        """Register a function that `gpufabric run FILE` calls on this machine, inside the running app."""

        def decorate(raw_f: Callable) -> LocalEntrypoint:
            if not callable(raw_f) or isinstance(raw_f, (Function, LocalEntrypoint)):
                raise InvalidError("@app.local_entrypoint decorates a plain function")
            tag = name or raw_f.__name__
            entry = LocalEntrypoint(raw_f, self, tag)
            self._entrypoints[tag] = entry
            return entry

        if _warn_parentheses_missing is not None:
            return decorate(_warn_parentheses_missing)
        return decorate

    # ---- lifecycle ----

    def _definitions(self) -> list[tuple[Function, Any, Any]]:
        # Built before anything is created so a bad function fails the run up front.
        return [
            (fn, fn.spec, build_definition(fn.get_raw_f(), serialized=fn._options.serialized))
            for fn in self._service_functions().values()
        ]

    def _create_functions(self, client: "_client.Client", app_id: str, definitions: list, printer: Any) -> None:
        for fn, spec, definition in definitions:
            # Secret.from_dict values become the app's encrypted secrets, referenced by name (never spec.env).
            spec = attach_secrets(client, app_id, spec, getattr(getattr(fn, "_options", None), "secrets", ()))
            req = client.pb.FunctionCreateRequest(app_id=app_id, spec=spec, definition=definition)
            resp = client.call("FunctionCreate", req, timeout=60.0, idempotent=False)
            fn._bind(client, resp.function_id, app_id, container_python_version=resp.container_python_version,
                     printer=printer)

    @contextlib.contextmanager
    def run(self, *, client: "_client.Client | None" = None, show_logs: bool = True,
            detach: bool = False) -> Iterator["App"]:
        """Run the app ephemerally for the duration of the `with` block.

        Uses the fabric at GPUFABRIC_URL, or starts an embedded one on this machine when none is
        configured. Functions' prints are streamed to this terminal as `[name] line`. When the
        block ends the app stops, and with it every input still queued or running.

        `detach=True` (as `modal run --detach`): the app outlives this process instead, until its
        inputs, spawned ones included, are done; `gpufabric app stop` stops it sooner. It needs a
        long-lived fabric (GPUFABRIC_URL): an embedded one ends with this process.
        """
        if is_container():
            yield self  # the container runtime already runs the app; never start another
            return
        if self._running:
            raise InvalidError(f"app {self.name or ''!r} is already running; nest calls inside the one `with app.run():`")
        definitions = self._definitions()
        embedded = False
        printer = None
        heartbeat = None
        app_id = ""
        self._running = True
        try:
            if client is None:
                cfg = Config.from_env()
                if cfg.url:
                    client = _client.get_client(cfg.url, cfg.token)
                elif detach:
                    raise InvalidError("app.run(detach=True) needs a long-lived fabric to outlive this process: "
                                       "start one with `gpufabric serve` and set GPUFABRIC_URL (an embedded "
                                       "fabric stops with this process)")
                else:
                    client = _embedded.acquire(cfg.data_dir)
                    embedded = True
            client.hello()
            req = client.pb.AppCreateRequest(name=self.name or _default_app_name(), kind=_APP_KIND_EPHEMERAL,
                                             description=self.description, detach=detach)
            # An ephemeral app created twice by a retry dies of missing heartbeats.
            resp = client.call("AppCreate", req, timeout=30.0)
            app_id = self._app_id = resp.app_id
            heartbeat = _Heartbeat(client, app_id, (resp.heartbeat_timeout_s or DEFAULT_HEARTBEAT_TIMEOUT_S) / 3).start()
            if show_logs:
                from ._logs import LogPrinter

                printer = LogPrinter(client, app_id).start()
            self._create_functions(client, app_id, definitions, printer)
            yield self
        finally:
            self._running = False
            if heartbeat is not None:
                heartbeat.stop()
            if app_id and detach:
                print(f"[fabric] app {app_id} is detached: it runs until its inputs are done "
                      f"(`gpufabric app stop {app_id}` stops it sooner)", file=sys.stderr)
            elif app_id and client is not None:
                try:
                    client.call("AppStop", client.pb.AppStopRequest(app_id=app_id), timeout=10.0)
                except Exception as exc:  # noqa: BLE001 - the app still stops when heartbeats end
                    print(f"[fabric] could not stop app {app_id}: {exc}", file=sys.stderr)
            if printer is not None:
                printer.stop()
            for fn in self._service_functions().values():
                fn._unbind()
            self._app_id = ""
            if embedded:
                _embedded.release()

    def deploy(self, *, name: str | None = None, client: "_client.Client | None" = None) -> "App":
        """Deploy the app to the fabric at GPUFABRIC_URL; it runs until `gpufabric app stop`.

        Its functions can then be called from anywhere with `Function.from_name(app_name, name)`.
        """
        if is_container():
            return self
        name = name or self.name
        if not name:
            raise InvalidError('a deployed app needs a name: App("my-app") or app.deploy(name="my-app")')
        self.name = name
        definitions = self._definitions()
        client = client or _client.get_client()
        req = client.pb.AppCreateRequest(name=name, kind=_APP_KIND_DEPLOYED, description=self.description)
        resp = client.call("AppCreate", req, timeout=30.0, idempotent=False)
        self._app_id = resp.app_id
        for fn in self._service_functions().values():
            fn._app_name = name
        self._create_functions(client, resp.app_id, definitions, printer=None)
        return self


def Stub(name: str | None = None, **kwargs: Any) -> App:  # noqa: N802 - Modal's old class name
    """Deprecated Modal name of App: returns an App, with a DeprecationWarning."""
    import warnings

    warnings.warn("fabric.Stub is deprecated; use fabric.App", DeprecationWarning, stacklevel=2)
    return App(name, **kwargs)
