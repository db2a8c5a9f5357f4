"""Classes on the fabric: Cls (a class registered with @app.cls) and Obj (an instance with parameters)."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable

from ._aio import blocking
from ._functions import Function
from ._partial import PartialFunction, check_class, instantiate, marked, method_names, parameters_of
from ._spec import FunctionOptions, build_options
from .exception import Error, InvalidError, SerializationError

if TYPE_CHECKING:
    from ._app import App
    from ._client import Client

__all__ = ["Cls", "Obj"]

# (class function id, pickled params, pickled options) -> the bound function id, per process.
_bound_ids: dict[tuple[str, bytes, bytes], str] = {}
_bound_lock = threading.Lock()


def class_spec(base: Any, user_cls: type | None, class_partial: PartialFunction | None) -> Any:
    """Fill a class's FunctionSpec: cls_name, method_names, generator/async flags, concurrency, batching."""
    import inspect

    if user_cls is None:
        return base
    base.cls_name = user_cls.__name__
    found = {**marked(user_cls, "method"), **marked(user_cls, "batched")}
    methods = {name: found[name] for name in method_names(user_cls)}
    base.method_names[:] = list(methods)
    base.is_generator = any(m.is_generator or m.web_config for m in methods.values())
    web = {name: m.web_config for name, m in methods.items() if m.web_config}
    if web:  # web endpoints on methods (core_executor._web)
        from ._web import web_config_json

        base.webhook_config_json = web_config_json(methods=web)
    base.is_async = any(inspect.iscoroutinefunction(m.raw_f) or inspect.isasyncgenfunction(m.raw_f) for m in methods.values())
    if class_partial is not None and class_partial.max_concurrent_inputs:
        base.max_concurrent_inputs = class_partial.max_concurrent_inputs
        base.target_concurrent_inputs = class_partial.target_concurrent_inputs
    for m in methods.values():
        if m.batch_max_size:
            base.batch_max_size, base.batch_wait_ms = m.batch_max_size, m.batch_wait_ms
        if m.max_concurrent_inputs and not base.max_concurrent_inputs:
            base.max_concurrent_inputs = m.max_concurrent_inputs
            base.target_concurrent_inputs = m.target_concurrent_inputs
    return base


class _ClassFunction(Function):
    """The fabric function that serves a class: one spec, one definition, inputs name the method."""

    def __init__(self, user_cls: type, tag: str, app: "App", options: FunctionOptions, class_partial: PartialFunction | None):
        super().__init__(user_cls, tag, app, options)
        self._class_partial = class_partial

    @property
    def spec(self) -> Any:
        """The class's FunctionSpec proto."""
        if self._spec is None:
            self._spec = class_spec(self._options.spec(self._tag, None), self._raw_f, self._class_partial)
        return self._spec

    def remote(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        raise InvalidError(f"{self._tag} is a class; call a method: {self._tag}().method_name.remote(...)")


def _same(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. arrays, whose == is not a bool
        return False


def _check_picklable(cls_name: str, args: tuple, kwargs: dict) -> bytes:
    from . import _serialization as ser

    for label, value in [(f"positional argument {i}", v) for i, v in enumerate(args)] + [
        (f"parameter {k!r}", v) for k, v in kwargs.items()
    ]:
        try:
            ser.serialize(value)
        except Exception as exc:  # noqa: BLE001
            raise SerializationError(
                f"{label} of {cls_name} ({type(value).__name__}) cannot be pickled: {exc}; pass a value that "
                "pickles (str, int, float, bytes, or a picklable object) and build the rest in @fabric.enter()"
            ) from None
    return ser.serialize((tuple(args), dict(sorted(kwargs.items()))))


class Cls:
    """A class registered with `@app.cls(...)`: `Model(x=1).predict.remote(...)` runs in its containers.

    Each distinct set of parameters (and each `with_options` variant) gets containers of its own.
    """

    def __init__(self, user_cls: type | None, class_function: Function, *, options_spec: Any = None,
                 options_secrets: Any = ()):
        self._user_cls = user_cls
        self._class_function = class_function
        self._options_spec = options_spec
        # Secret objects from with_options: from_dict ones are registered when the class is bound.
        self._options_secrets = list(options_secrets)
        self._options_bytes = options_spec.SerializeToString(deterministic=True) if options_spec is not None else b""
        if user_cls is not None:
            self.__doc__ = user_cls.__doc__
            self.__name__ = user_cls.__name__
            self.__qualname__ = user_cls.__qualname__
            self.__module__ = user_cls.__module__

    @classmethod
    def from_name(cls, app_name: str, name: str) -> "Cls":
        """A class of a deployed app, looked up on first use: `Cls.from_name("app", "Model")(x=1)`."""
        if not app_name or not name:
            raise InvalidError("Cls.from_name needs the deployed app's name and the class's name")
        return cls(None, Function.from_name(app_name, name))

    @classmethod
    def lookup(cls, app_name: str, name: str) -> "Cls":
        """Deprecated Modal name of `Cls.from_name`."""
        import warnings

        warnings.warn("Cls.lookup is deprecated; use Cls.from_name(app_name, name)", DeprecationWarning, stacklevel=2)
        return cls.from_name(app_name, name).hydrate()

    @property
    def object_id(self) -> str:
        """The fabric's id of the class's function ("" until the app runs)."""
        return self._class_function.object_id

    @blocking
    def hydrate(self) -> "Cls":
        """Resolve the class's id now (a lookup for `from_name` references)."""
        self._class_function.hydrate._fn(self._class_function)
        return self

    def _get_user_cls(self) -> type:
        if self._user_cls is None:
            raise InvalidError(f"{self._class_function.tag!r} is a reference to a deployed class; it has no local code")
        return self._user_cls

    def _method_names(self) -> list[str] | None:
        if self._user_cls is not None:
            return method_names(self._user_cls)
        spec = self._class_function._looked_up_spec
        return list(spec.method_names) if spec is not None else None

    def with_options(self, *, gpu: Any = None, cpu: Any = None, memory: Any = None, secrets: Any = (),
                     volumes: Any = None, retries: Any = None, timeout: Any = None, min_containers: Any = None,
                     max_containers: Any = None, buffer_containers: Any = None, scaledown_window: Any = None,
                     region: Any = None, cloud: Any = None, env: dict[str, str] | None = None) -> "Cls":
        """The same class with other resources: `Model.with_options(gpu="A100")(x=1)`.

        Options given here replace the class's; its instances run in containers of their own.
        """
        opts = build_options(gpu=gpu, cpu=cpu, memory=memory, secrets=list(secrets or ()), volumes=volumes,
                             retries=retries, timeout=timeout, min_containers=min_containers or 0,
                             max_containers=max_containers, buffer_containers=buffer_containers or 0,
                             scaledown_window=scaledown_window, region=region, cloud=cloud, env=env)
        return self._with_spec(opts.spec(""), secrets=list(secrets or ()))

    def with_concurrency(self, *, max_inputs: int, target_inputs: int | None = None) -> "Cls":
        """The same class running up to `max_inputs` inputs per container at once."""
        from ._partial import concurrent

        marker = concurrent(max_inputs=max_inputs, target_inputs=target_inputs)(lambda: None)
        return self._with_spec(self._spec_pb()(max_concurrent_inputs=marker.max_concurrent_inputs,
                                               target_concurrent_inputs=marker.target_concurrent_inputs))

    def with_batching(self, *, max_batch_size: int, wait_ms: int) -> "Cls":
        """The same class with its batched method's batch size and wait changed."""
        from ._partial import batched

        marker = batched(max_batch_size=max_batch_size, wait_ms=wait_ms)(lambda x: x)
        return self._with_spec(self._spec_pb()(batch_max_size=marker.batch_max_size, batch_wait_ms=marker.batch_wait_ms))

    @staticmethod
    def _spec_pb() -> Callable[..., Any]:
        from gpu_fabric.proto import common_pb2

        return common_pb2.FunctionSpec

    def _with_spec(self, overrides: Any, secrets: Any = ()) -> "Cls":
        if self._options_spec is not None:
            merged = self._spec_pb()()
            merged.CopyFrom(self._options_spec)
            merged.MergeFrom(overrides)
            overrides = merged
        return Cls(self._user_cls, self._class_function, options_spec=overrides,
                   options_secrets=[*self._options_secrets, *secrets])

    def __call__(self, *args: Any, **kwargs: Any) -> "Obj":
        return Obj(self, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # also while unpickling, before __dict__ is filled
            raise AttributeError(name)
        if name in (self._method_names() or ()):
            raise AttributeError(f"{name} is a method of {self._class_function.tag}; call it on an instance: "
                                 f"{self._class_function.tag}().{name}.remote(...)")
        raise AttributeError(f"{self._class_function.tag!r} class has no attribute {name!r}")

    def __reduce__(self):
        return (Cls, (None, self._class_function), {"_options_spec_bytes": self._options_bytes})

    def __setstate__(self, state: dict) -> None:
        data = state.get("_options_spec_bytes", b"")
        self._options_spec = self._spec_pb().FromString(data) if data else None
        self._options_bytes = data
        live = getattr(self._class_function, "_cls", None)
        self._user_cls = live._user_cls if live is not None else None

    def __repr__(self) -> str:
        return f"Cls({self._class_function.tag})"


class Obj:
    """An instance of a registered class with its parameters: its methods run remotely."""

    def __init__(self, cls: Cls, args: tuple, kwargs: dict):
        self._cls = cls
        self._args, self._kwargs = tuple(args), dict(kwargs)
        self._local: Any = None
        self._methods: dict[str, _MethodHandle] = {}
        user_cls = cls._user_cls
        name = cls._class_function.tag
        if user_cls is not None:
            params = parameters_of(user_cls)
            if params or user_cls.__init__ is object.__init__:
                instantiate(user_cls, args, kwargs)  # checks names and required values here, not remotely
                self._kwargs = {n: kwargs[n] if n in kwargs else p.default for n, p in params.items()}
                self._default = all(_same(kwargs[n], params[n].default) if params[n].has_default else False for n in kwargs)
            else:
                self._default = not args and not kwargs
        else:
            self._default = not args and not kwargs
        # An unpicklable parameter fails here, naming it, before anything is sent.
        self._pickled = _check_picklable(name, self._args, self._kwargs)

    def __getattr__(self, name: str) -> "_MethodHandle":
        if name.startswith("_"):
            raise AttributeError(name)
        handle = self._methods.get(name)
        if handle is not None:
            return handle
        cls = self._cls
        names = cls._method_names()
        if names is None:  # a from_name class not looked up yet
            cls.hydrate._fn(cls)
            names = cls._method_names() or []
        tag = cls._class_function.tag
        if name not in names:
            if cls._user_cls is not None and hasattr(cls._user_cls, name):
                raise AttributeError(f"{tag}.{name} is not a @fabric.method(); decorate it to call it remotely")
            raise AttributeError(f"{tag} has no method {name!r}; its methods: {', '.join(names) or 'none'}")
        raw = None
        if cls._user_cls is not None:
            raw = (marked(cls._user_cls, "method").get(name) or marked(cls._user_cls, "batched").get(name)).raw_f
        handle = self._methods[name] = _MethodHandle(self, name, raw)
        return handle

    def _target(self) -> tuple["Client", str, str, str, Any]:
        """(client, function id, app id, container Python, log printer) the inputs go to."""
        cf = self._cls._class_function
        client = cf._ready()
        base = cf._function_id
        if self._default and self._cls._options_spec is None:
            return client, base, cf._app_id, cf._python_version, cf._printer
        key = (base, self._pickled, self._cls._options_bytes)
        function_id = _bound_ids.get(key)
        if function_id is None:
            with _bound_lock:
                function_id = _bound_ids.get(key) or self._bind_params(client, base, key)
                _bound_ids[key] = function_id
        return client, function_id, cf._app_id, cf._python_version, cf._printer

    def _bind_params(self, client: "Client", base: str, key: tuple) -> str:
        pb = client.pb
        req = pb.FunctionBindParamsRequest(function_id=base, pickled_params=key[1],
                                           has_options=self._cls._options_spec is not None)
        if self._cls._options_spec is not None:
            from ._secret import attach_secrets

            cf = self._cls._class_function
            req.options.CopyFrom(attach_secrets(client, cf._app_id, self._cls._options_spec, self._cls._options_secrets))
        try:
            return client.call("FunctionBindParams", req, timeout=60.0).function_id
        except Error as exc:
            cause = exc.__cause__
            code = getattr(cause, "code", lambda: None)()
            if code is not None and getattr(code, "name", "") == "UNIMPLEMENTED":
                raise Error(
                    f"the fabric at {client.url} cannot bind class parameters or with_options yet "
                    "(FunctionBindParams is unimplemented); upgrade the control plane, or use the class's defaults"
                ) from None
            raise

    def _local_instance(self) -> Any:
        if self._local is None:
            import inspect

            user_cls = self._cls._get_user_cls()
            obj = instantiate(user_cls, self._args, self._kwargs)
            for partial in marked(user_cls, "enter").values():
                value = partial.raw_f.__get__(obj)()
                if inspect.iscoroutine(value):
                    import asyncio

                    asyncio.run(value)
            self._local = obj
        return self._local

    def __reduce__(self):
        return (_obj_from_ref, (self._cls, self._args, self._kwargs))

    def __repr__(self) -> str:
        return f"{self._cls._class_function.tag}({', '.join(f'{k}={v!r}' for k, v in self._kwargs.items())})"


def _obj_from_ref(cls: Cls, args: tuple, kwargs: dict) -> Obj:
    return Obj(cls, args, kwargs)


class _MethodHandle(Function):
    """`Model(x=1).predict`: remote/map/spawn/remote_gen on the instance's function, naming the method."""

    def __init__(self, obj: Obj, name: str, raw_f: Callable | None):
        cf = obj._cls._class_function
        super().__init__(raw_f, f"{cf.tag}.{name}", cf.app, None)
        self._obj = obj
        self._method_name = name
        self._register = False  # the class's function answers unpickling by id, not a method

    def _ready(self) -> "Client":
        client, function_id, app_id, python_version, printer = self._obj._target()
        if function_id != self._function_id or client is not self._client:
            self._bind(client, function_id, app_id, container_python_version=python_version, printer=printer)
        if not self._version_ok:
            from . import _serialization

            _serialization.check_python_version(self._python_version, what=f"class {self._obj._cls._class_function.tag!r}")
        return client

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Run the method here, on a local instance (its @enter methods run once first)."""
        return getattr(self._obj._local_instance(), self._method_name)(*args, **kwargs)

    def __reduce__(self):
        return (getattr, (self._obj, self._method_name))

    def __repr__(self) -> str:
        return f"Method({self._tag})"


def make_cls(user_cls: Any, app: "App", options: FunctionOptions, tag: str | None) -> Cls:
    """Build the Cls for `@app.cls(...)` on `user_cls` (possibly wrapped by @fabric.concurrent)."""
    import inspect

    class_partial = None
    if isinstance(user_cls, PartialFunction):
        class_partial, user_cls = user_cls, user_cls.raw_f
        if class_partial.flags - {"concurrent"}:
            raise InvalidError("only @fabric.concurrent goes on a class; put the other decorators on its methods")
    if isinstance(user_cls, Cls):
        raise InvalidError("a class can be registered only once; remove the second @app.cls")
    if not inspect.isclass(user_cls):
        raise InvalidError(f"@app.cls decorates a class, not {type(user_cls).__name__}; use @app.function for functions")
    check_class(user_cls)
    name = tag or user_cls.__name__
    class_function = _ClassFunction(user_cls, name, app, options, class_partial)
    cls = Cls(user_cls, class_function)
    class_function._cls = cls
    return cls

