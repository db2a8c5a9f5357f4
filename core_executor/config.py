"""Where the SDK finds its fabric: settings read from GPUFABRIC_* environment variables."""
from __future__ import annotations

import os

__all__ = ["Config", "config", "NOT_CONFIGURED_HINT"]

NOT_CONFIGURED_HINT = "set GPUFABRIC_URL and GPUFABRIC_TOKEN (printed by `gpufabric serve`)"

_DEFAULT_DATA_DIR = os.path.join("~", ".gpufabric", "embedded")


class Config:
    """A snapshot of the SDK's settings.

    url: `grpc://HOST:PORT` of a running fabric (GPUFABRIC_URL); empty means "start the
    embedded fabric" for `App.run()`.
    token: the bearer token for that fabric (GPUFABRIC_TOKEN).
    data_dir: where the embedded fabric keeps its state and log (GPUFABRIC_DATA_DIR).
    is_container: true inside a fabric container (GPUFABRIC_IS_CONTAINER=1), where apps and
    decorators only record and never start anything.
    """

    __slots__ = ("url", "token", "data_dir", "is_container")

    def __init__(self, url: str = "", token: str = "", data_dir: str = "", is_container: bool = False):
        self.url = url
        self.token = token
        self.data_dir = data_dir
        self.is_container = is_container

    def __repr__(self) -> str:
        return f"Config(url={self.url!r}, data_dir={self.data_dir!r}, is_container={self.is_container})"

    @classmethod
    def from_env(cls, environ: "os._Environ[str] | dict[str, str] | None" = None) -> "Config":
        """Read the settings from the environment (read afresh on each call)."""
        env = os.environ if environ is None else environ
        data_dir = env.get("GPUFABRIC_DATA_DIR") or _DEFAULT_DATA_DIR
        return cls(
            url=env.get("GPUFABRIC_URL", "").strip(),
            token=env.get("GPUFABRIC_TOKEN", "").strip(),
            data_dir=os.path.abspath(os.path.expanduser(data_dir)),
            is_container=env.get("GPUFABRIC_IS_CONTAINER", "") == "1",
        )

    @property
    def has_fabric(self) -> bool:
        """True when GPUFABRIC_URL points at a running fabric."""
        return bool(self.url)


def config() -> Config:
    """The current settings (environment read now)."""
    return Config.from_env()


def is_container() -> bool:
    """True inside a fabric container."""
    return os.environ.get("GPUFABRIC_IS_CONTAINER", "") == "1"
