"""Secret: environment variables for containers, stored encrypted by the fabric, never in a spec."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from ._resources import _check_name, _Record
from .exception import InvalidError

__all__ = ["Secret", "attach_secrets"]


class Secret(_Record):
    """Environment variables injected into containers, and only there: a secret stored in the
    fabric (`Secret.from_name`, made with `gpufabric secret create NAME KEY=VALUE`), or literal
    values (`Secret.from_dict`) that the fabric stores encrypted for the app, never in its spec."""

    _fields = ("name", "values")

    def __init__(self, name: str = "", values: Mapping[str, str] | None = None, required_keys: Sequence[str] = ()):
        self.name = name
        self.values = dict(values or {})
        self.required_keys = tuple(required_keys)

    @classmethod
    def from_name(cls, name: str, *, environment_name: str | None = None, required_keys: Sequence[str] = ()) -> "Secret":
        """Refer to a secret stored in the fabric by name.

        Creating a function that uses it fails when it does not exist, or lacks one of
        `required_keys`. `environment_name` is accepted for Modal compatibility.
        """
        if isinstance(required_keys, str) or not all(isinstance(k, str) for k in required_keys):
            raise InvalidError(f"required_keys must be a list of str, got {required_keys!r}")
        return cls(name=_check_name(name, "Secret"), required_keys=required_keys)

    @classmethod
    def from_dict(cls, env_dict: Mapping[str, str | None]) -> "Secret":
        """Literal environment variables (entries whose value is None are left out).

        The values go to the fabric encrypted, as a secret of the app; they are not put in the
        function's spec, its logs or anything a read API returns.
        """
        if not isinstance(env_dict, Mapping):
            raise InvalidError("Secret.from_dict takes a dict of str to str")
        values = {}
        for key, value in env_dict.items():
            if value is None:
                continue
            if not isinstance(key, str) or not isinstance(value, str):
                raise InvalidError(f"Secret.from_dict values must be str, got {key!r}: {type(value).__name__}")
            values[key] = value
        return cls(values=values)

    @classmethod
    def from_local_environ(cls, env_keys: Sequence[str]) -> "Secret":
        """The named variables of this process's environment, as literal values."""
        import os

        missing = [k for k in env_keys if k not in os.environ]
        if missing:
            raise InvalidError(f"Secret.from_local_environ: not set in this environment: {', '.join(missing)}")
        return cls.from_dict({k: os.environ[k] for k in env_keys})

    def __repr__(self) -> str:
        # Never the values: reprs end up in logs and tracebacks.
        if self.name:
            return f"Secret.from_name({self.name!r})"
        return f"Secret.from_dict(<{len(self.values)} values: {', '.join(sorted(self.values))}>)"


def attach_secrets(client: Any, app_id: str, spec: Any, secrets: Sequence[Secret]) -> Any:
    """The spec to create, with every secret by name: `from_dict` values are registered with the
    fabric as the app's anonymous secrets first (SecretCreate), in the user's order (later wins)."""
    secrets = [s for s in secrets if s.name or s.values]
    if not any(not s.name or s.required_keys for s in secrets):
        return spec
    from gpu_fabric.proto import objects_pb2

    from ._object_base import call

    names = []
    for secret in secrets:
        if secret.name:
            names.append(secret.name)
            continue
        req = objects_pb2.SecretCreateRequest(app_id=app_id, env=secret.values)
        names.append(call(client, "SecretCreate", req).name)
    required = {s.name: s.required_keys for s in secrets if s.name and s.required_keys}
    if required:
        listed = {info.name: set(info.keys) for info in call(client, "SecretList", objects_pb2.SecretListRequest()).secrets}
        for name, keys in required.items():
            missing = [k for k in keys if name in listed and k not in listed[name]]
            if missing:
                raise InvalidError(
                    f"secret {name!r} lacks the required keys {', '.join(missing)}; add them with "
                    f"`gpufabric secret create {name} KEY=VALUE ... --force`"
                )
    out = type(spec)()
    out.CopyFrom(spec)
    del out.secret_names[:]
    out.secret_names.extend(names)
    return out
