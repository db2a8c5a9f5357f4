"""The environment a container takes from its ContainerHello: the function's secrets."""
from __future__ import annotations

import os
from typing import Any, MutableMapping

# Set by the worker agent for this container; a secret must not repoint or unpin it.
_FABRIC_OWNED_PREFIX = "GPUFABRIC_"
_FABRIC_OWNED = frozenset({"CUDA_VISIBLE_DEVICES"})


def apply_secret_env(hello: Any, environ: MutableMapping[str, str] = os.environ) -> None:
    """Set the secrets' variables (ContainerHelloResponse.secret_env) before the user's code is imported."""
    for key, value in getattr(hello, "secret_env", {}).items():
        if key.startswith(_FABRIC_OWNED_PREFIX) or key in _FABRIC_OWNED:
            continue
        environ[key] = value
