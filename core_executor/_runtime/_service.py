"""What a container serves: one function, or one instance of a class with its lifecycle methods."""
from __future__ import annotations

import inspect
import sys
import traceback
from typing import Any, Callable

__all__ = ["Service", "split_batch", "assemble_batch"]


class Service:
    """The user code behind a container: `resolve(method_name)` gives the callable for an input.

    For a class: `start` makes the one instance (with the bound parameters) and runs its
    @enter methods; `stop` runs its @exit methods, once, however the container ends.
    """

    def __init__(self, target: Any, definition: Any, spec: Any):
        self.spec = spec
        self.definition = definition
        self.user_cls = target if isinstance(target, type) else None
        self.fn: Callable[..., Any] | None = None if self.user_cls is not None else target
        self.instance: Any = None
        self._methods: dict[str, Callable[..., Any]] = {}
        self._is_async: dict[str, bool] = {}
        self._stopped = False
        self._snapped = False  # the snap=True @enter methods already ran (in a fork-server zygote)
        if spec.cls_name and self.user_cls is None:
            raise TypeError(f"{spec.cls_name} should be a class, but the container loaded {type(target).__name__}")

    @property
    def is_class(self) -> bool:
        """True when the container serves a class's methods."""
        return self.user_cls is not None

    @property
    def has_exit(self) -> bool:
        """True when there are @exit methods to run at shutdown."""
        from core_executor._partial import marked

        return self.user_cls is not None and bool(marked(self.user_cls, "exit"))

    def start(self, run_coro: Callable[[Any], Any], *, snap_only: bool = False) -> None:
        """Instantiate the class and run its @enter methods (an exception fails the container's start).

        `snap_only`: run only the snap=True ones (a fork-server zygote, before it forks); a later
        `start` on the forked copy runs the rest.
        """
        if self.user_cls is None:
            return
        from core_executor._partial import instantiate, marked, method_names
        from core_executor._serialization import deserialize

        if self.instance is None:
            args, kwargs = ((), {})
            if self.definition.pickled_cls_params:
                args, kwargs = deserialize(self.definition.pickled_cls_params)
            self.instance = instantiate(self.user_cls, tuple(args), dict(kwargs))
            found = {**marked(self.user_cls, "method"), **marked(self.user_cls, "batched")}
            self._methods = {name: found[name].raw_f.__get__(self.instance) for name in method_names(self.user_cls)}
        for partial in marked(self.user_cls, "enter").values():
            if (snap_only and not partial.snap) or (partial.snap and self._snapped):
                continue
            value = partial.raw_f.__get__(self.instance)()
            if inspect.isawaitable(value):
                run_coro(value)
        self._snapped = self._snapped or snap_only

    def resolve(self, method_name: str) -> Callable[..., Any]:
        """The callable an input runs; an unknown method raises (failing that input only)."""
        if self.fn is not None:
            return self.fn
        fn = self._methods.get(method_name)
        if fn is None:
            if not method_name and len(self._methods) == 1:
                return next(iter(self._methods.values()))
            from core_executor.exception import InvalidError

            known = ", ".join(self._methods) or "none"
            raise InvalidError(
                f"{self.user_cls.__name__} has no @fabric.method() {method_name!r} (its methods: {known}); "
                "redeploy the class if the caller's code is newer"
            )
        return fn

    def is_async(self, method_name: str, fn: Callable[..., Any]) -> bool:
        """True when the callable is `async def` (runs as a task on the container's event loop)."""
        known = self._is_async.get(method_name)
        if known is None:
            known = self._is_async[method_name] = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        return known

    def stop(self, run_coro: Callable[[Any], Any]) -> None:
        """Run the @exit methods once; their exceptions are printed, not raised."""
        if self._stopped or self.instance is None:
            return
        self._stopped = True
        from core_executor._partial import marked

        for name, partial in marked(self.user_cls, "exit").items():
            try:
                value = partial.raw_f.__get__(self.instance)()
                if inspect.isawaitable(value):
                    run_coro(value)
            except BaseException:  # noqa: BLE001 - one failing exit must not skip the others
                print(f"@exit method {self.user_cls.__name__}.{name} failed:", file=sys.stderr)
                traceback.print_exc()


def assemble_batch(fn: Callable[..., Any], calls: list[tuple[tuple, dict]]) -> tuple[list, dict]:
    """The arguments of one call of a @batched function: a list per parameter, one item per input.

    Raises TypeError naming the input whose arguments do not fit the function's signature.
    """
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    columns: dict[str, list] = {p.name: [] for p in params}
    for i, (args, kwargs) in enumerate(calls):
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"input {i} of the batch does not fit {fn.__name__}{sig}: {exc}") from None
        bound.apply_defaults()
        for name, value in bound.arguments.items():
            columns[name].append(value)
    positional = [columns[p.name] for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    keyword = {p.name: columns[p.name] for p in params if p.kind == p.KEYWORD_ONLY}
    return positional, keyword


def split_batch(value: Any, size: int, name: str) -> list[Any]:
    """The per-input outputs of a @batched call; raises when it is not a list of `size` items."""
    from core_executor.exception import InvalidError

    if not isinstance(value, (list, tuple)):
        raise InvalidError(
            f"@fabric.batched function {name} must return a list with one output per input, got {type(value).__name__}"
        )
    if len(value) != size:
        raise InvalidError(
            f"@fabric.batched function {name} returned {len(value)} outputs for a batch of {size} inputs; "
            "return exactly one output per input, in order"
        )
    return list(value)
