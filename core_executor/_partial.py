"""Markers (enter, exit, method, concurrent, batched, parameter) and reading them off a user class."""
from __future__ import annotations

from typing import Any, Callable

from .exception import InvalidError

__all__ = [
    "PartialFunction", "Parameter", "enter", "exit", "method", "concurrent", "batched", "parameter",
    "parameters_of", "marked", "method_names", "check_class", "instantiate",
]

_NO_DEFAULT = object()


def _is_sdk_object(obj: Any) -> bool:
    # Decorators applied in the wrong order receive an SDK Function/Cls instead of user code.
    return type(obj).__module__.startswith("core_executor.") and type(obj).__name__ in ("Function", "Cls")


class PartialFunction:
    """A user function marked by @enter/@exit/@method/@concurrent/@batched.

    Inside a class body it stays the attribute's value; reading it from an instance gives the
    plain bound method, so `self.other_method(...)` works in user code.
    """

    def __init__(self, raw_f: Callable, flags: frozenset[str], **params: Any):
        self.raw_f = raw_f
        self.flags = flags
        self.snap = bool(params.get("snap", False))
        self.max_concurrent_inputs = int(params.get("max_concurrent_inputs", 0) or 0)
        self.target_concurrent_inputs = int(params.get("target_concurrent_inputs", 0) or 0)
        self.batch_max_size = int(params.get("batch_max_size", 0) or 0)
        self.batch_wait_ms = int(params.get("batch_wait_ms", 0) or 0)
        self.web_config: dict | None = params.get("web_config")  # core_executor._web decorators
        self.__doc__ = getattr(raw_f, "__doc__", None)
        self.__name__ = getattr(raw_f, "__name__", "")
        self.__qualname__ = getattr(raw_f, "__qualname__", self.__name__)
        self.__module__ = getattr(raw_f, "__module__", None)
        self.__wrapped__ = raw_f

    def merged(self, flags: set[str], **params: Any) -> "PartialFunction":
        """A copy with more flags and parameters (stacked decorators)."""
        mine = {
            "snap": self.snap, "max_concurrent_inputs": self.max_concurrent_inputs,
            "target_concurrent_inputs": self.target_concurrent_inputs,
            "batch_max_size": self.batch_max_size, "batch_wait_ms": self.batch_wait_ms,
            "web_config": self.web_config,
        }
        mine.update({k: v for k, v in params.items() if v})
        return PartialFunction(self.raw_f, frozenset(self.flags | flags), **mine)

    @property
    def is_generator(self) -> bool:
        """True for generator (sync or async) functions."""
        import inspect

        return inspect.isgeneratorfunction(self.raw_f) or inspect.isasyncgenfunction(self.raw_f)

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return _LocalMethod(self.raw_f.__get__(obj, objtype), self.__name__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.raw_f(*args, **kwargs)

    def __repr__(self) -> str:
        return f"PartialFunction({self.__qualname__}, {sorted(self.flags)})"


class _LocalMethod:
    """A marked method read from a plain instance: callable, and a clear error for `.remote()`."""

    __slots__ = ("_bound", "_name")

    def __init__(self, bound: Callable, name: str):
        self._bound = bound
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._bound(*args, **kwargs)

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Call the method here, in this process."""
        return self._bound(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in ("remote", "remote_gen", "map", "starmap", "spawn", "for_each", "spawn_map"):
            owner = type(getattr(self._bound, "__self__", None)).__name__
            raise InvalidError(
                f"{owner}.{self._name}.{name}() needs a class registered on an App: decorate {owner} "
                f"with @app.cls(), then call {owner}().{self._name}.{name}(...)"
            )
        return getattr(self._bound, name)


def _mark(flag: str, f: Any, decorator: str, **params: Any) -> PartialFunction:
    if isinstance(f, PartialFunction):
        return f.merged({flag}, **params)
    if _is_sdk_object(f) or isinstance(f, (classmethod, staticmethod)):
        raise InvalidError(
            f"@fabric.{decorator}() goes below @app.function/@app.cls and on a plain method, not on "
            f"{type(f).__name__}"
        )
    if not callable(f):
        raise InvalidError(f"@fabric.{decorator}() decorates a function, not {type(f).__name__}")
    return PartialFunction(f, frozenset({flag}), **params)


def _no_bare_use(arg: Any, name: str) -> None:
    if arg is not None:
        raise InvalidError(f"use @fabric.{name}() with parentheses")


def enter(_warn_parentheses_missing: Any = None, *, snap: bool = False) -> Callable[[Callable], PartialFunction]:
    """Mark a method that runs once when a container starts, before it takes inputs.

    `snap=True` marks setup that a memory snapshot may capture (it runs before the others).
    An exception here fails the container's start (the inputs fail with ExecutionError).
    """
    _no_bare_use(_warn_parentheses_missing, "enter")
    return lambda f: _mark("enter", f, "enter", snap=snap)


def exit(_warn_parentheses_missing: Any = None) -> Callable[[Callable], PartialFunction]:  # noqa: A001
    """Mark a method that runs once when the container shuts down (scale-down, stop, SIGTERM)."""
    _no_bare_use(_warn_parentheses_missing, "exit")
    return lambda f: _mark("exit", f, "exit")


def method(_warn_parentheses_missing: Any = None, *, is_generator: bool | None = None) -> Callable[[Callable], PartialFunction]:
    """Mark a method callers run remotely: `Model().predict.remote(x)`."""
    _no_bare_use(_warn_parentheses_missing, "method")

    def decorate(f: Any) -> PartialFunction:
        marked = _mark("method", f, "method")
        if is_generator is not None and is_generator != marked.is_generator:
            kind = "is" if marked.is_generator else "is not"
            raise InvalidError(f"method {marked.__qualname__} {kind} a generator; drop is_generator={is_generator}")
        return marked

    return decorate


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidError(f"{name} must be an int >= 1, got {value!r}")
    return value


def concurrent(_warn_parentheses_missing: Any = None, *, max_inputs: int, target_inputs: int | None = None) -> Callable[[Any], Any]:
    """Let one container run up to `max_inputs` inputs at once (threads for sync code, tasks for async).

    `target_inputs` is what the autoscaler aims for per container (defaults to max_inputs).
    Goes below @app.function() or @app.cls().
    """
    _no_bare_use(_warn_parentheses_missing, "concurrent")
    max_inputs = _positive_int(max_inputs, "max_inputs")
    if target_inputs is not None:
        target_inputs = _positive_int(target_inputs, "target_inputs")
        if target_inputs > max_inputs:
            raise InvalidError(f"target_inputs ({target_inputs}) must not exceed max_inputs ({max_inputs})")
    params = {"max_concurrent_inputs": max_inputs, "target_concurrent_inputs": target_inputs or 0}

    def decorate(f: Any) -> Any:
        marked = _mark("concurrent", f, "concurrent", **params)
        if "batched" in marked.flags:
            raise InvalidError("a function is either @fabric.batched or @fabric.concurrent, not both")
        return marked

    return decorate


def batched(_warn_parentheses_missing: Any = None, *, max_batch_size: int, wait_ms: int) -> Callable[[Callable], PartialFunction]:
    """Hand the function lists of up to `max_batch_size` inputs, gathered for up to `wait_ms`.

    Write it over lists (`def embed(texts: list[str]) -> list[list[float]]`) and return one
    output per input, in order; callers still call it per item (`embed.remote("a")`).
    """
    _no_bare_use(_warn_parentheses_missing, "batched")
    max_batch_size = _positive_int(max_batch_size, "max_batch_size")
    if isinstance(wait_ms, bool) or not isinstance(wait_ms, int) or wait_ms < 0:
        raise InvalidError(f"wait_ms must be an int >= 0 (milliseconds), got {wait_ms!r}")

    def decorate(f: Any) -> PartialFunction:
        marked = _mark("batched", f, "batched", batch_max_size=max_batch_size, batch_wait_ms=wait_ms)
        if "concurrent" in marked.flags:
            raise InvalidError("a function is either @fabric.batched or @fabric.concurrent, not both")
        if marked.is_generator:
            raise InvalidError(f"@fabric.batched function {marked.__qualname__} cannot be a generator")
        import inspect

        params = list(inspect.signature(marked.raw_f).parameters.values())
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
            raise InvalidError(f"@fabric.batched function {marked.__qualname__} cannot take *args or **kwargs")
        if len([p for p in params if p.name != "self"]) == 0:
            raise InvalidError(f"@fabric.batched function {marked.__qualname__} needs at least one parameter (a list)")
        return marked

    return decorate


class Parameter:
    """A class attribute declared with `fabric.parameter()`: a constructor parameter."""

    def __init__(self, default: Any = _NO_DEFAULT, init: bool = True):
        self.default = default
        self.init = init
        self.name = ""

    @property
    def has_default(self) -> bool:
        """True when callers may leave the parameter out."""
        return self.default is not _NO_DEFAULT

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"parameter({'' if not self.has_default else repr(self.default)})"


def parameter(*, default: Any = _NO_DEFAULT, init: bool = True) -> Any:
    """Declare a constructor parameter of an @app.cls class: `size: int = fabric.parameter(default=1)`.

    `Model(size=2)` gets containers of its own, where `self.size == 2`.
    """
    return Parameter(default=default, init=init)


# ---- reading a user class ----


def _class_attrs(user_cls: type) -> dict[str, Any]:
    # Base classes first, so a subclass's definition of a name wins.
    attrs: dict[str, Any] = {}
    for klass in reversed(user_cls.__mro__):
        if klass is not object:
            attrs.update(vars(klass))
    return attrs


def parameters_of(user_cls: type) -> dict[str, Parameter]:
    """The class's `fabric.parameter()` attributes by name, in definition order."""
    params = {}
    for name, value in _class_attrs(user_cls).items():
        if isinstance(value, Parameter):
            value.name = value.name or name
            params[name] = value
    return params


def marked(user_cls: type, flag: str) -> dict[str, PartialFunction]:
    """The class's methods carrying `flag` ("enter", "exit", "method", "batched"), by name."""
    found = {n: v for n, v in _class_attrs(user_cls).items() if isinstance(v, PartialFunction) and flag in v.flags}
    if flag == "enter":  # snapshot-able setup runs first
        found = dict(sorted(found.items(), key=lambda item: not item[1].snap))
    return found


def method_names(user_cls: type) -> list[str]:
    """Names callers may run remotely: @method and @batched methods."""
    attrs = _class_attrs(user_cls).items()
    return [n for n, v in attrs if isinstance(v, PartialFunction) and v.flags & {"method", "batched"}]


def _has_custom_init(user_cls: type) -> bool:
    return user_cls.__init__ is not object.__init__


def check_class(user_cls: type) -> None:
    """Refuse a class @app.cls cannot serve, saying what to change."""
    name = user_cls.__name__
    params = parameters_of(user_cls)
    if params and _has_custom_init(user_cls):
        raise InvalidError(
            f"{name} declares fabric.parameter() attributes and its own __init__; drop __init__ and do setup "
            "in a method marked @fabric.enter()"
        )
    names = method_names(user_cls)
    if not names:
        raise InvalidError(f"{name} has no method callers can run; mark them with @fabric.method()")
    batched_methods = [n for n in names if "batched" in _class_attrs(user_cls)[n].flags]
    if batched_methods and len(names) > 1:
        raise InvalidError(
            f"{name} has a @fabric.batched method ({batched_methods[0]}) and other methods; a class with a "
            "batched method serves only that method"
        )
    import inspect

    for flag in ("enter", "exit"):
        for method_name, partial in marked(user_cls, flag).items():
            sig = inspect.signature(partial.raw_f)
            required = [p for p in list(sig.parameters.values())[1:] if p.default is p.empty
                        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            if required:
                raise InvalidError(f"@fabric.{flag}() method {name}.{method_name} must take no arguments besides self")
            if partial.is_generator:
                raise InvalidError(f"@fabric.{flag}() method {name}.{method_name} cannot be a generator")


def instantiate(user_cls: type, args: tuple, kwargs: dict) -> Any:
    """An instance of the user class with its parameters set (or its own __init__ called)."""
    params = parameters_of(user_cls)
    if not params and _has_custom_init(user_cls):
        return user_cls(*args, **kwargs)
    if args:
        raise InvalidError(f"{user_cls.__name__} takes its parameters by keyword, e.g. {user_cls.__name__}(x=1)")
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        known = ", ".join(params) or "none"
        raise InvalidError(
            f"{user_cls.__name__} has no parameter {unknown[0]!r} (its parameters: {known}); declare it in the class "
            f"as `{unknown[0]}: int = fabric.parameter()`"
        )
    obj = user_cls.__new__(user_cls)
    for name, param in params.items():
        if name in kwargs:
            value = kwargs[name]
        elif param.has_default:
            value = param.default
        else:
            raise InvalidError(f"{user_cls.__name__} needs its parameter {name!r}: {user_cls.__name__}({name}=...)")
        object.__setattr__(obj, name, value)
    return obj


def web_endpoint(*args: Any, **kwargs: Any) -> Any:
    """Modal's removed name for FastAPI endpoints: refused, pointing at `fastapi_endpoint`."""
    raise InvalidError(
        "@fabric.web_endpoint was renamed: use @fabric.fastapi_endpoint(...) (same arguments) below @app.function()"
    )
