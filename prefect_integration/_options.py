"""Per-call resources: `RemoteOptions` and the `remote_options()` context manager."""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

__all__ = ["RemoteOptions", "remote_options", "current_overrides", "DEFAULT_TIMEOUT_S"]

# Prefect tasks have no timeout unless they set `timeout_seconds`; the fabric's default (300 s)
# would cut long GPU tasks short, so the container gets a day unless told otherwise.
DEFAULT_TIMEOUT_S = 24 * 3600.0

_FIELDS = (
    "gpu", "image", "cpu", "memory", "timeout", "secrets", "volumes", "env", "min_containers",
    "max_containers", "buffer_containers", "scaledown_window", "region", "cloud", "nonpreemptible",
)  # fmt: skip


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    return value


class RemoteOptions:
    """The fabric resources a task's call asks for: the keyword arguments of `@app.function`.

    gpu ("A100", "H100:2", or a list in order of preference), image, cpu (cores), memory (MiB),
    timeout (seconds for one task run in its container, retries included), secrets, volumes
    ({"/path": Volume}), env, min/max/buffer_containers, scaledown_window (s), region, cloud,
    nonpreemptible. Unset fields (None) take the fabric's defaults.
    """

    __slots__ = _FIELDS

    def __init__(self, **options: Any):
        unknown = set(options) - set(_FIELDS)
        if unknown:
            raise TypeError(
                f"unknown remote option(s) {', '.join(sorted(unknown))}; known: {', '.join(_FIELDS)}"
            )
        for name in _FIELDS:
            setattr(self, name, options.get(name))

    def given(self) -> dict[str, Any]:
        """The options that were set (not None)."""
        return {name: getattr(self, name) for name in _FIELDS if getattr(self, name) is not None}

    def merged(self, overrides: dict[str, Any] | None) -> "RemoteOptions":
        """These options with `overrides` (set fields only) on top."""
        if not overrides:
            return self
        return RemoteOptions(**{**self.given(), **{k: v for k, v in overrides.items() if v is not None}})

    def key(self) -> tuple:
        """A hashable key: calls with equal keys share one fabric function (and its warm containers)."""
        return _freeze(self.given())

    def function_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `App.function(...)`."""
        given = self.given()
        kwargs = {k: v for k, v in given.items() if k not in ("secrets",)}
        if "secrets" in given:
            kwargs["secrets"] = list(given["secrets"])
        kwargs.setdefault("timeout", DEFAULT_TIMEOUT_S)
        return kwargs

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteOptions) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        return f"RemoteOptions({', '.join(f'{k}={v!r}' for k, v in self.given().items() if k != 'env')})"

    def __getstate__(self) -> dict[str, Any]:
        return self.given()

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in _FIELDS:
            setattr(self, name, state.get(name))


_overrides: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("gpu_fabric_remote_options", default={})


@contextlib.contextmanager
def remote_options(**options: Any) -> Iterator[dict[str, Any]]:
    """Resources for the tasks submitted inside the `with` block (like prefect-ray's `remote_options`).

        with remote_options(gpu="H100", timeout=3600):
            train.submit(data)

    Blocks nest: inner options win over outer ones, which win over the runner's own.
    """
    RemoteOptions(**options)  # unknown names fail here, at the `with`
    token = _overrides.set({**_overrides.get(), **{k: v for k, v in options.items() if v is not None}})
    try:
        yield dict(_overrides.get())
    finally:
        _overrides.reset(token)


def current_overrides() -> dict[str, Any]:
    """The options of the innermost `remote_options()` block (empty outside any)."""
    return dict(_overrides.get())
